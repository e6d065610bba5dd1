"""Tests for seq2seq.training.host_memory: large freed blocks go back to the system."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from seq2seq.training.host_memory import fix_mmap_threshold

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Frees a 16 MiB tensor once to warm up (torch's thread pool starts; by default glibc raises its
# threshold past the block, so later ones come from the heap), then three more, and prints how
# much more than after the warm-up stayed resident, in MiB.
RESIDENT_AFTER_FREE = """
import sys, torch
from seq2seq.training.host_memory import fix_mmap_threshold
def resident_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
warm_up = torch.ones(4 << 20)  # 16 MiB
del warm_up
before = resident_mib()
for _ in range(3):
    block = torch.ones(4 << 20)  # 16 MiB
    del block
print(resident_mib() - before)
"""


def resident_after_free(mode: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", RESIDENT_AFTER_FREE, mode], capture_output=True, text=True, check=True, env=None
    )
    return float(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="the setting exists in glibc only")
def test_freed_large_blocks_leave_the_process_once_the_threshold_is_fixed() -> None:
    assert resident_after_free("default") > 12
    assert resident_after_free("fixed") < 4


@pytest.mark.skipif(not GLIBC, reason="the setting exists in glibc only")
def test_a_threshold_chosen_in_the_environment_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert not fix_mmap_threshold()
