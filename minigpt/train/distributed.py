"""Several processes training one model: torch's DistributedDataParallel (DDP), kept in one place.

    torchrun --nproc_per_node=N -m minigpt train ...

torchrun starts N copies of the command and gives each the environment variables RANK,
LOCAL_RANK and WORLD_SIZE (and MASTER_ADDR / MASTER_PORT to meet at). `setup()` sees them and
joins the process group: NCCL between GPUs (process LOCAL_RANK uses cuda:LOCAL_RANK), gloo on
CPUs. Without them everything here is a no-op, and a single process trains exactly as before.

The training loop asks only four things: am I the main process (rank 0, the one that writes
events and checkpoints), what is my rank (to draw different batches), the mean of a number over
all processes, and whether any process wants to stop.
"""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class World:
    rank: int = 0  # this process, 0..size-1; 0 is the main one
    local_rank: int = 0  # this process on its own machine: the GPU it uses
    size: int = 1  # processes in all
    device: torch.device = torch.device("cpu")  # where collective operations put their tensors


_world = World()


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def setup(device: torch.device) -> torch.device:
    """Join the process group if torchrun started us; the device this process should use."""
    global _world
    if not launched_by_torchrun() or torch.distributed.is_initialized():
        return device
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    torch.distributed.init_process_group(backend=backend, rank=rank, world_size=size)
    _world = World(rank, local_rank, size, device)
    return device


def teardown(together: bool = False) -> None:
    """Leave the process group. together: first wait for every process (after a run that ended
    well; a process that tears down while another still talks to it can abort at exit). Not after
    an error, when the others may never arrive."""
    global _world
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        if together:
            torch.distributed.barrier()
        # A DDP wrapper holds the group: one left for the interpreter's exit to destroy (after
        # the group, amid C++ static destructors) aborted 1 run in 6. Collect unused ones now.
        gc.collect()
        torch.distributed.destroy_process_group()
    _world = World()


def world() -> World:
    return _world


def is_main() -> bool:
    return _world.rank == 0


def is_distributed() -> bool:
    return _world.size > 1


@contextmanager
def main_first():
    """Rank 0 runs the block first (preparing data into the cache), the other processes after it,
    so they find its work done; in a single process, just the block."""
    if is_distributed() and not is_main():
        torch.distributed.barrier()
    try:
        yield
    finally:
        if is_distributed() and is_main():
            torch.distributed.barrier()


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model as DDP sees it (gradients averaged over processes in backward), or as it is."""
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    device_ids = [_world.device.index] if _world.device.type == "cuda" else None
    return DDP(model, device_ids=device_ids)


def all_reduce_mean(value: float) -> float:
    """The mean of value over all processes (value itself in a single process)."""
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64 if _world.device.type == "cpu" else torch.float32,
                     device=_world.device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
    return float(t.item()) / _world.size


def any_rank(flag: bool) -> bool:
    """True on every process if it is true on any: so all stop at the same step, none waits forever."""
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_world.device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item() > 0)
