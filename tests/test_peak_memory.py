"""Tests for benchmarks/peak_memory.py: a child's peak memory without its parent's in it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from benchmarks.peak_memory import RSS_UNIT, run_measured

MIB = 2**20


def allocate_in_child(mib: int) -> list[str]:
    """A Python child that touches ``mib`` MiB and exits."""
    return [sys.executable, "-c", f"b = bytearray({mib} << 20)\nfor i in range(0, len(b), 4096): b[i] = 1"]


@pytest.fixture(scope="module")
def large_parent() -> bytearray:
    """400 MiB resident in this (the parent) process while its children run."""
    block = bytearray(400 * MIB)
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    return block


@pytest.mark.skipif(sys.platform != "linux", reason="the parent's size leaks into ru_maxrss on Linux")
def test_a_child_spawned_directly_reports_at_least_the_parents_size(large_parent: bytearray) -> None:
    pid = os.posix_spawn(sys.executable, [sys.executable, "-c", "pass"], os.environ)
    _, _, usage = os.wait4(pid, 0)
    assert usage.ru_maxrss * RSS_UNIT >= len(large_parent)  # why the launcher exists


def test_the_launcher_reports_the_childs_own_small_peak(large_parent: bytearray) -> None:
    run = run_measured([sys.executable, "-c", "pass"])
    assert run.exit_code == 0
    assert 1 * MIB < run.peak_rss_bytes < 100 * MIB < len(large_parent)


def test_the_launcher_reports_what_the_child_allocated(large_parent: bytearray) -> None:
    run = run_measured(allocate_in_child(200))
    assert run.exit_code == 0
    assert 200 * MIB < run.peak_rss_bytes < 300 * MIB


def test_exit_status_and_output_of_the_child_come_back(tmp_path: Path) -> None:
    output = tmp_path / "child.log"
    run = run_measured(
        [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"], output
    )
    assert run.exit_code == 3 and run.seconds > 0
    assert output.read_text().split() == ["out", "err"]
