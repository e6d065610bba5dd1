"""Where training runs: device choice, seeding, threads and the distributed process group.

``torchrun`` (on one machine, ``--nproc_per_node N``; on several, ``--nnodes M --rdzv-backend
c10d ...`` on each) sets RANK, WORLD_SIZE and LOCAL_RANK; ``start_runtime`` reads them, joins the
process group (NCCL on CUDA, gloo on CPU) and picks each process's device. Without torchrun
everything is a single process.

A process that waits for the others at a collective operation longer than the timeout
(``train.collective_timeout_s``), or whose peer's connection breaks (a process or a whole node
stopped), stops with ``PeersLost``, which says so, instead of hanging.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
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


class PeersLost(RuntimeError):
    """The other training processes stopped answering: one of them, or its node, stopped."""


def start_runtime(device_name: str, threads: int = 0, collective_timeout_s: float = 900) -> Runtime:
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
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=collective_timeout_s))
    return Runtime(device, rank, world_size)


@contextmanager
def peers_watched(runtime: Runtime, collective_timeout_s: float) -> Iterator[None]:
    """Turn the error of a collective operation whose peers are gone into ``PeersLost``."""
    try:
        yield
    except RuntimeError as error:
        if not runtime.distributed or not lost_peers(error):
            raise
        host = socket.gethostname()
        reason = str(error).strip().splitlines()[-1][:300]
        raise PeersLost(
            f"process {runtime.rank} of {runtime.world_size} (on {host}) lost the other training processes: "
            f"one of them, or its node, stopped, or did not answer within train.collective_timeout_s "
            f"({collective_timeout_s:g} s) ({reason}). Its own log says why. Start the same command on every "
            "node again to resume from the last checkpoint."
        ) from error


def lost_peers(error: RuntimeError) -> bool:
    """Whether ``error`` is a collective operation failing because peers went away or timed out."""
    if isinstance(error, dist.DistError):
        return True
    text = str(error).lower()
    return any(sign in text for sign in ("connection closed", "connection reset", "timed out", "timeout", "gloo"))


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
