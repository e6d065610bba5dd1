"""A child process's peak resident memory, measured without its parent's.

Linux folds the address space that a process leaves at ``exec`` into that process's
``ru_maxrss``. A child started by ``posix_spawn`` (or ``subprocess``) leaves its parent's address
space (shared, or a copy), so the figure ``wait4`` returns is at least the parent's resident size:
a benchmark that has imported torch and read a corpus would see its own 1 GiB in every child's
peak. The children are therefore started from this small script, which imports nothing but the
standard library, so that only its own size (some 10 MB) can leak into the figure, as with
``/usr/bin/time -v``.

    python benchmarks/peak_memory.py RESULT_JSON COMMAND [ARGUMENTS...]

runs COMMAND with this process's standard streams and environment, writes
``{"exit_code": ..., "peak_rss_bytes": ...}`` to RESULT_JSON and exits with COMMAND's status.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# ru_maxrss is in KiB on Linux and in bytes on macOS.
RSS_UNIT = 1 if sys.platform == "darwin" else 1024


@dataclass(frozen=True)
class MeasuredRun:
    exit_code: int
    seconds: float  # wall time of the child, the launcher's start included
    peak_rss_bytes: int  # the child's maximum resident set size


def run_measured(command: list[str], output: Path | None = None) -> MeasuredRun:
    """Run ``command`` through this script; its stdout and stderr go to ``output`` when given,
    else to ours."""
    with tempfile.TemporaryDirectory() as scratch:
        result = Path(scratch) / "result.json"
        actions = []
        if output is not None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            actions = [(os.POSIX_SPAWN_OPEN, 1, str(output), flags, 0o644), (os.POSIX_SPAWN_DUP2, 1, 2)]
        launcher = [sys.executable, str(Path(__file__).resolve()), str(result), *command]
        started = time.perf_counter()
        pid = os.posix_spawn(sys.executable, launcher, os.environ, file_actions=actions)
        _, status = os.waitpid(pid, 0)
        seconds = time.perf_counter() - started
        if not result.exists():
            raise RuntimeError(f"the launcher of `{' '.join(command)}` ended with status {status} and no result")
        figures = json.loads(result.read_text(encoding="utf-8"))
    return MeasuredRun(figures["exit_code"], seconds, figures["peak_rss_bytes"])


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    result, command = Path(argv[0]), argv[1:]
    executable = shutil.which(command[0]) or command[0]
    pid = os.posix_spawn(executable, command, os.environ)
    _, status, usage = os.wait4(pid, 0)
    exit_code = os.waitstatus_to_exitcode(status)
    figures = {"exit_code": exit_code, "peak_rss_bytes": usage.ru_maxrss * RSS_UNIT}
    result.write_text(json.dumps(figures), encoding="utf-8")
    return exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
