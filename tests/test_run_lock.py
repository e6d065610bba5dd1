"""The run directory's lock: exclusive, naming its holder, released when its holder ends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seq2seq.training.run_lock import LOCK_FILE, RunDirectoryBusy, acquire_run_lock, hold_run_lock
from seq2seq.training.runtime import Runtime

CPU = Runtime(torch.device("cpu"))


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    run_dir = tmp_path / "new" / "run"
    with hold_run_lock(run_dir, CPU):
        assert (run_dir / LOCK_FILE).read_text().startswith(f"{os.getpid()} ")
        with pytest.raises(RunDirectoryBusy, match=f"in use by another training \\(PID {os.getpid()} on host"):
            acquire_run_lock(run_dir)
    os.close(acquire_run_lock(run_dir))  # released at the end of the block


def test_a_lock_held_by_another_process_is_refused_until_that_process_ends(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from seq2seq.training.run_lock import acquire_run_lock as a; from pathlib import "
         f"Path; a(Path({str(tmp_path)!r})); print('held', flush=True); input()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(RunDirectoryBusy, match=f"PID {holder.pid} "):
            acquire_run_lock(tmp_path)
    finally:
        holder.kill()  # no clean-up of its own: the operating system releases the lock
        holder.wait()
    os.close(acquire_run_lock(tmp_path))
