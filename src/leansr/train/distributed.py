"""DDP set-up from the environment torchrun provides (RANK, WORLD_SIZE, LOCAL_RANK); single process otherwise."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the torchrun process group (NCCL on GPU, gloo on CPU); a no-op without WORLD_SIZE > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return info


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_flag(info: DistInfo, flag: bool) -> bool:
    """Rank 0's decision (e.g. to stop), shared by all ranks."""
    if not info.enabled:
        return flag
    t = _collective_tensor(1 if flag else 0, torch.int64)
    dist.broadcast(t, src=0)
    return bool(t.item())


def mean_across(info: DistInfo, value: float) -> float:
    """The mean of `value` over all ranks (so that every rank takes the same decision on it)."""
    if not info.enabled:
        return value
    t = _collective_tensor(value, torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def _collective_tensor(value: float, dtype: torch.dtype) -> torch.Tensor:
    """A one-element tensor where the process group's backend can reduce it (NCCL: on the GPU)."""
    t = torch.tensor([value], dtype=dtype)
    return t.cuda() if dist.get_backend() == "nccl" else t


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
