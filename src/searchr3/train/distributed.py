"""Data-parallel helpers: process group from the launcher's environment, gathers, gradient averaging.

Works under `accelerate launch` or `torchrun` (they set RANK, WORLD_SIZE, MASTER_ADDR, ...):
gloo on CPU, NCCL on GPU. Without a launcher every function is the single-process identity.
Embeddings are gathered *with* gradients, so every rank's InfoNCE sees the whole global
batch as in-batch negatives and the gradient reaches the rank that produced each vector.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init() -> None:
    """Join the process group described by the environment (no-op for a single process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def shard(items: list) -> list:
    """This rank's contiguous share of a global batch (the batch must divide by the world size)."""
    n, w = len(items), world()
    if n % w:
        raise ValueError(f"a batch of {n} does not divide across {w} processes")
    size = n // w
    return items[rank() * size:(rank() + 1) * size]


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate x (n, ...) from all ranks in rank order, keeping the autograd graph."""
    if world() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def mean(value: float) -> float:
    """Average a scalar over ranks (for logging)."""
    if world() == 1:
        return value
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item() / world())


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """All-reduce gradients and divide by the world size, as DDP does after backward."""
    if world() == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world()


def barrier() -> None:
    if world() > 1:
        dist.barrier()


def gather_list(items: list) -> list:
    """Concatenate a Python list from all ranks in rank order (any picklable items)."""
    if world() == 1:
        return list(items)
    parts: list = [None] * world()
    dist.all_gather_object(parts, list(items))
    return [x for part in parts for x in part]


def gather_array(x):
    """Concatenate numpy arrays (n_rank, ...) from all ranks in rank order."""
    import numpy as np

    if world() == 1:
        return x
    parts: list = [None] * world()
    dist.all_gather_object(parts, x)
    return np.concatenate(parts, axis=0)
