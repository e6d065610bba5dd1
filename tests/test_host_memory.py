"""Tests for seq2seq.training.host_memory: large freed blocks go back to the system; neither
Triton nor torch._dynamo without a CUDA device."""

from __future__ import annotations

import platform
import subprocess
import sys
import types

import pytest
import torch

from seq2seq.training.host_memory import fix_mmap_threshold, keep_dynamo_out_without_cuda, keep_triton_out_without_cuda

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


# On a machine without CUDA, trains a small layer for three steps with the trainer's AdamW
# optimizer (step_optimizer, zero_grad, and a state_dict loaded into a second optimizer before
# the last step); prints whether Triton and torch._dynamo ended up imported. Then the same steps
# through torch's own optimizer.step(), which imports torch._dynamo; prints whether the weights
# of both runs are equal.
OPTIMIZER_STEPS_WITHOUT_CUDA = """
import sys, torch
torch.cuda.is_available = lambda: False
from seq2seq.config import TrainConfig
from seq2seq.training.host_memory import step_optimizer
from seq2seq.training.trainer import build_optimizer
def train(step):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    config = TrainConfig(optimizer="adamw", lr=1e-2, weight_decay=0.1)
    optimizer = build_optimizer(model, config)
    for position in range(3):
        if position == 2:
            saved = optimizer.state_dict()
            optimizer = build_optimizer(model, config)
            optimizer.load_state_dict(saved)
        model(torch.arange(8.0).view(2, 4) / (position + 1)).pow(2).sum().backward()
        step(optimizer)
        optimizer.zero_grad(set_to_none=True)
    return [parameter.detach().clone() for parameter in model.parameters()]
ours = train(step_optimizer)
print(sys.modules.get("triton") is not None, "torch._dynamo" in sys.modules)
torchs = train(lambda optimizer: optimizer.step())
print("torch._dynamo" in sys.modules, all(torch.equal(a, b) for a, b in zip(ours, torchs)))
"""


def test_without_cuda_the_optimizer_runs_without_triton_and_dynamo() -> None:
    result = subprocess.run(
        [sys.executable, "-c", OPTIMIZER_STEPS_WITHOUT_CUDA], capture_output=True, text=True, check=True
    )
    ours, torchs = result.stdout.strip().splitlines()[-2:]
    assert ours == "False False"  # neither Triton nor torch._dynamo imported
    assert torchs == "True True"  # torch's own step imports torch._dynamo, and the weights are equal


def test_with_cuda_dynamo_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not keep_dynamo_out_without_cuda()


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
