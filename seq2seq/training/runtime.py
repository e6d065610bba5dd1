"""Where training runs: device choice, seeding, threads and the distributed process group.

``torchrun --nproc_per_node N`` sets RANK, WORLD_SIZE and LOCAL_RANK; ``start_runtime``
reads them, joins the process group (NCCL on CUDA, gloo on CPU) and picks each process's
device. Without torchrun everything is a single process.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from seq2seq.devices import resolve_device
from seq2seq.training.host_memory import fix_mmap_threshold

T = TypeVar("T")


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def start_runtime(device_name: str, threads: int = 0) -> Runtime:
    """Join the torchrun process group when launched by torchrun; pick the device. Also fixes
    malloc's mmap threshold, which keeps the process's memory from creeping up (see host_memory)."""
    fix_mmap_threshold()
    if threads > 0:
        torch.set_num_threads(threads)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Runtime(resolve_device(device_name))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(device, rank, world_size)


def stop_runtime(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def any_process(flag: bool, runtime: Runtime) -> bool:
    """True when ``flag`` is true on any process (so that all processes decide alike)."""
    if not runtime.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=runtime.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_objects(obj: T, runtime: Runtime) -> list[T]:
    """Every process's ``obj``, in rank order (a list of one without torchrun)."""
    if not runtime.distributed:
        return [obj]
    gathered: list[Any] = [None] * runtime.world_size
    dist.all_gather_object(gathered, obj)
    return gathered
