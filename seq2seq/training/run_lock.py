"""One training at a time per run directory: an exclusive lock held for the whole run.

The lock is ``fcntl.flock`` on ``<run_dir>/.train.lock``, taken by the main process (rank 0
under torchrun) and held until it ends. The operating system releases it when the process
dies, however it dies (even ``kill -9``), so it is never stale. The file holds the holder's
PID and host, which a refused run names. The other ranks of a torchrun job learn from the
main process whether the lock was taken, so that all of them stop alike.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from seq2seq.training.runtime import Runtime, gather_objects

LOCK_FILE = ".train.lock"


class RunDirectoryBusy(RuntimeError):
    """Another training holds the run directory's lock."""


@contextmanager
def hold_run_lock(run_dir: Path, runtime: Runtime) -> Iterator[None]:
    """Hold ``run_dir``'s lock (on the main process) for the body; RunDirectoryBusy on every
    process when another training holds it."""
    descriptor, refusal = None, None
    if runtime.is_main:
        try:
            descriptor = acquire_run_lock(run_dir)
        except RunDirectoryBusy as error:
            refusal = str(error)
    refusal = gather_objects(refusal, runtime)[0]
    if refusal is not None:
        raise RunDirectoryBusy(refusal)
    try:
        yield
    finally:
        if descriptor is not None:
            os.close(descriptor)  # closing the last descriptor releases the lock


def acquire_run_lock(run_dir: Path) -> int:
    """Lock ``run_dir`` (made if missing) for this process; returns the lock file's descriptor,
    which holds the lock until it is closed or the process ends."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: held by another process
        os.close(descriptor)
        raise RunDirectoryBusy(
            f"{run_dir} is in use by another training ({holder(path)}); wait for it to end or stop it, "
            "or pick another --run-dir"
        ) from None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()} {socket.gethostname()}\n".encode())
    return descriptor


def holder(path: Path) -> str:
    """Who holds the lock, as its file says: "PID 1234 on host NAME"."""
    try:
        pid, _, host = path.read_text(encoding="utf-8").strip().partition(" ")
    except (OSError, UnicodeDecodeError):
        pid, host = "", ""
    if not pid:
        return "a process that is still starting"
    return f"PID {pid} on host {host}" if host else f"PID {pid}"
