"""Keeping the training process's resident memory down: glibc's mmap threshold, and no Triton
where there is no GPU for it.

glibc's malloc serves a large block from its own memory map, returned to the system when freed,
but it raises that threshold (up to 32 MiB) each time such a block is freed, so that from then
on blocks of a few MiB come from the heap. A training step allocates and frees many of those
(per-step activations, gradients, the chunks of the output layer's loss); in the heap their
freed space is fragmented and rarely goes back to the system, and the process's resident size
creeps up step after step. Fixing the threshold keeps blocks above it in memory maps: 250 steps
of the translation comparison model (``recipes/translate.py train`` under ``/usr/bin/time``)
peaked at 0.97 GiB with it and 1.00 GiB without. Only glibc (Linux) has these settings;
elsewhere, and when the user set ``MALLOC_MMAP_THRESHOLD_`` in the environment, nothing is
changed.

torch's optimizers import ``torch._dynamo`` when they are built (for their ``torch.compile``
support), and ``torch._dynamo`` imports Triton when it is installed, as it is beside every
CUDA build of torch on Linux: 75 MB of resident memory for a GPU kernel compiler (the same runs
peaked at 0.97 GiB without it and 1.04 GiB with it). On a machine without a CUDA device it has
nothing to compile for, so Triton is marked absent there and torch behaves as its CPU-only
build, which ships without it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys

import torch

log = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 4 << 20  # blocks of 4 MiB and more get their own memory map
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h


def fix_mmap_threshold(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold for the rest of the process; True when it was set."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    libc = ctypes.CDLL(None)
    if libc.mallopt(_M_MMAP_THRESHOLD, threshold_bytes) != 1:
        log.warning("could not set malloc's mmap threshold; training memory may grow from fragmentation")
        return False
    return True


def keep_triton_out_without_cuda() -> bool:
    """Mark Triton absent for the rest of the process when no CUDA device is present and it
    is not imported yet; True when it was marked."""
    if torch.cuda.is_available() or "triton" in sys.modules:
        return False
    # `import triton` now raises ImportError, as without the package. None in sys.modules is how
    # Python marks a module absent; typeshed types the values as ModuleType only.
    sys.modules["triton"] = None  # type: ignore[assignment]
    return True
