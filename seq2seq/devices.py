"""Choosing the device a model runs on, and the number format it trains in."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

from seq2seq.config import ConfigError

log = logging.getLogger(__name__)

#: CPU flags (Linux /proc/cpuinfo) of matrix units that multiply bf16 fast.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then the CPU; an unknown or unavailable choice is a
    ValueError that says what to use instead."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for, but CUDA is not available here; use cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} was asked for, but Apple MPS is not available here; use cpu or auto")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r} is not supported: use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def has_bf16_units(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices faster than fp32: a CUDA GPU with bf16
    support, or a CPU with AMX or AVX512-BF16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """The format training runs in: "bf16" (autocast, fp32 weights and optimizer state) or
    "fp32". "auto" picks bf16 where ``device`` has bf16 units. "bf16" on a CPU without them is
    refused (slower than fp32 there, and oneDNN's bf16 LSTM training kernels need the units);
    on a GPU without them it runs, with a warning."""
    if precision == "auto":
        return "bf16" if has_bf16_units(device) else "fp32"
    if precision == "bf16" and not has_bf16_units(device):
        if device.type == "cpu":
            raise ConfigError(
                f"train.precision=bf16 needs a CPU with bf16 matrix units (flag {' or '.join(BF16_CPU_FLAGS)}), and "
                "this one has neither: use train.precision=auto (bf16 where the units exist) or fp32"
            )
        log.warning("train.precision=bf16 on %s, which has no bf16 support: it runs slower than fp32", device)
    return precision
