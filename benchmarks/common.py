"""What the benchmark scripts share: 2 pinned CPU threads, progress output, the ``RESULT`` line,
the fp32 matmul peak of the machine, a check for a trained run, the ``seq2seq`` command line of
their child processes and the exit status of a run.

Import this module before torch: it sets ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS``, which the
thread pools read when torch is first imported (child processes inherit them too).

The benchmarks are modules of the ``benchmarks`` folder, run from the project root with the
package installed: ``python -m benchmarks.translate`` (likewise ``textgen`` and ``caption``).
"""

from __future__ import annotations

import os

THREADS = 2
os.environ["OMP_NUM_THREADS"] = str(THREADS)
os.environ["MKL_NUM_THREADS"] = str(THREADS)

import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from seq2seq.checkpoint import CheckpointError, resolve_checkpoint  # noqa: E402
from seq2seq.devices import cpu_flags  # noqa: E402

GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # weight matrices per recurrent layer

Figures = dict[str, float | int | None]


def say(message: str) -> None:
    """Progress on stdout, shown at once even when piped."""
    print(message, flush=True)


def result_line(name: str, figures: Figures) -> str:
    """``RESULT <name>: key=value ...``; figures that were not measured show as n/a."""

    def shown(value: float | int | None) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, int) or abs(value) >= 1000:
            return f"{value:.0f}"
        return f"{value:.4g}"

    return f"RESULT {name}: " + " ".join(f"{key}={shown(value)}" for key, value in figures.items())


def seq2seq_command(task: str, verb: str, arguments: list[str]) -> list[str]:
    """The command line of a child process that runs ``seq2seq TASK VERB ARGUMENTS...`` with
    this interpreter (``python -m seq2seq``, the installed package)."""
    return [sys.executable, "-m", "seq2seq", task, verb, *arguments]


def has_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a checkpoint to score (whatever metric ranks its checkpoints)."""
    try:
        resolve_checkpoint(run_dir, prefer="latest")
    except CheckpointError:
        return False
    return True


def matmul_gflops(rows: int, inner: int, columns: int, min_seconds: float = 1.0, trials: int = 5) -> float:
    """Best fp32 GFLOP/s of (rows, inner) x (inner, columns) over a few timed trials."""
    left, right = torch.randn(rows, inner), torch.randn(inner, columns)
    flops = 2.0 * rows * inner * columns
    torch.mm(left, right)  # warm-up
    started, repeats = time.perf_counter(), 0
    while time.perf_counter() - started < min_seconds / trials or repeats < 2:  # repeats filling one trial
        torch.mm(left, right)
        repeats += 1
    best = 0.0
    for _ in range(trials):
        started = time.perf_counter()
        for _ in range(repeats):
            torch.mm(left, right)
        best = max(best, flops * repeats / (time.perf_counter() - started) / 1e9)
    return best


@dataclass
class MatmulPeak:
    square: float  # GFLOP/s of 2048 x 2048 x 2048
    recurrent_step: float  # GFLOP/s of one batch's recurrent product, (B, H) x (H, gates * H)


def matmul_peak(batch_size: int, hidden_size: int, cell: str) -> MatmulPeak:
    """The fp32 matmul peak: a 2048^3 product, and the (B, H) x (H, gates * H) product of a
    recurrent step of ``cell`` over a batch of ``batch_size``."""
    square = matmul_gflops(2048, 2048, 2048)
    return MatmulPeak(square, matmul_gflops(batch_size, hidden_size, GATES[cell] * hidden_size))


#: The CPU flags that decide which matrix units a benchmark's figures could use.
MATRIX_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_summary() -> str:
    """The CPU's model name and which of MATRIX_FLAGS it has (Linux; "unknown CPU" elsewhere)."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    present = [flag for flag in MATRIX_FLAGS if flag in flags]
    return f"{model}, {os.cpu_count()} cores, flags: {' '.join(present) or 'none of ' + ' '.join(MATRIX_FLAGS)}"
