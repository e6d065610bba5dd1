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

Without Triton, ``torch._dynamo`` itself (with SymPy, which it loads) still takes about 70 MB:
100 steps of the same model peaked at 0.95 GiB without it and 1.01 GiB with it. The optimizers
import it only to keep ``torch.compile`` from tracing their methods, and we never compile them.
Their ``step`` imports it in a wrapper that turns gradients off; the other methods through
``torch._disable_dynamo``, whose wrapper imports it once and caches, on the method it wraps, the
function to call. On a machine without a CUDA device that cache is filled beforehand with the
method itself, and ``step_optimizer`` calls the step method with gradients off, as the
wrapper would: the same arithmetic without the compiler's import (torch's optimizer step hooks,
which the trainer does not use, are not run). Where torch's wrappers differ
from what this expects, nothing is changed and the compiler is imported as before. The filled
cache lasts for the process: a program that trains through the API on such a machine and
later compiles an optimizer's methods itself has them traced by the compiler, not skipped.
"""

from __future__ import annotations

import ctypes
import inspect
import logging
import os
import platform
import sys

import torch
from torch.optim import Optimizer

log = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 4 << 20  # blocks of 4 MiB and more get their own memory map
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h

# The Optimizer methods wrapped by torch._disable_dynamo, and the attribute where that wrapper
# caches, on the method it wraps, the function it calls (torch/_compile.py).
_DYNAMO_WRAPPED_METHODS = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")
_DYNAMO_DISABLE_CACHE = "__dynamo_disable"


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


def keep_dynamo_out_without_cuda() -> bool:
    """Let torch.optim's optimizers build, save and load themselves without importing
    torch._dynamo, when no CUDA device is present and it is not imported yet; True when done.
    Their steps then go through ``step_optimizer``."""
    if torch.cuda.is_available() or "torch._dynamo" in sys.modules:
        return False
    methods = [getattr(getattr(Optimizer, name), "__wrapped__", None) for name in _DYNAMO_WRAPPED_METHODS]
    if any(method is None for method in methods):
        return False
    for method in methods:
        setattr(method, _DYNAMO_DISABLE_CACHE, method)
    return True


def step_optimizer(optimizer: Optimizer) -> None:
    """``optimizer.step()``; while torch._dynamo is not imported, the step method itself with
    gradients off, which is what torch's wrapper around it runs besides importing the compiler."""
    if "torch._dynamo" in sys.modules:
        optimizer.step()
        return
    step = inspect.unwrap(type(optimizer).step)  # through the profiling and no-grad wrappers
    with torch.set_grad_enabled(bool(optimizer.defaults.get("differentiable", False))):
        step(optimizer)
