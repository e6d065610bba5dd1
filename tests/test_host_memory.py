"""Tests for seq2seq.training.host_memory: large freed blocks go back to the system; no Triton
without a CUDA device."""

from __future__ import annotations

import platform
import subprocess
import sys
import types

import pytest
import torch

from seq2seq.training.host_memory import fix_mmap_threshold, keep_triton_out_without_cuda

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


# On a machine without CUDA, builds the trainer's Adam optimizer and takes a step; prints whether
# Triton and torch._dynamo ended up imported, and the weights.
OPTIMIZER_STEP_WITHOUT_CUDA = """
import sys, torch
torch.cuda.is_available = lambda: False
from seq2seq.config import TrainConfig
from seq2seq.training.trainer import build_optimizer
model = torch.nn.Linear(3, 1, bias=False)
torch.nn.init.ones_(model.weight)
optimizer = build_optimizer(model, TrainConfig(optimizer="adam", lr=1e-3, weight_decay=0.0))
weight = model.weight
weight.sum().backward()
optimizer.step()
print(sys.modules.get("triton") is not None, "torch._dynamo" in sys.modules, weight.detach().flatten().tolist())
"""


def test_without_cuda_the_optimizer_runs_and_triton_stays_out() -> None:
    result = subprocess.run(
        [sys.executable, "-c", OPTIMIZER_STEP_WITHOUT_CUDA], capture_output=True, text=True, check=True
    )
    triton_imported, dynamo_imported, weights = result.stdout.strip().splitlines()[-1].split(" ", 2)
    assert triton_imported == "False" and dynamo_imported == "True"
    assert weights == "[0.9990000128746033, 0.9990000128746033, 0.9990000128746033]"


def test_with_cuda_triton_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delitem(sys.modules, "triton", raising=False)
    assert not keep_triton_out_without_cuda()
    assert "triton" not in sys.modules


def test_an_imported_triton_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    imported = types.ModuleType("triton")
    monkeypatch.setitem(sys.modules, "triton", imported)
    assert not keep_triton_out_without_cuda()
    assert sys.modules["triton"] is imported
