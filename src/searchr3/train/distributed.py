"""Data parallelism through accelerate, plus the one thing it lacks: a gather that keeps gradients.

`accelerator()` joins the process group that `accelerate launch` or `torchrun` describes in the
environment (gloo on CPU, NCCL on GPU); the trainers `prepare` their forward pass and optimiser with
it, so DDP averages the gradients. FSDP or DeepSpeed would come from accelerate's own config
(untested: evaluation and saving still read rank 0's full copy of the weights). Without a launcher
every function here is the single-process identity.

`gather` concatenates embeddings from every rank *with* their autograd graph, so each rank's
InfoNCE sees the whole global batch as in-batch negatives and the gradient of a vector returns to
the rank that produced it; accelerate's own gather carries no gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist

from .._extras import require

accelerate = require("train", "accelerate")


def accelerator() -> accelerate.Accelerator:
    """An Accelerator for this process; its settings (DDP, FSDP, DeepSpeed) come from the launcher."""
    return accelerate.Accelerator(cpu=_cpu_only())


def _cpu_only() -> bool:
    # Without CUDA, accelerate forms a multi-process (gloo) group only when told to use the CPU.
    return not torch.cuda.is_available()


def _state() -> accelerate.PartialState:
    return accelerate.PartialState(cpu=_cpu_only())  # the process's shared state; joins the group on first use


class Forward(torch.nn.Module):
    """A trainer's forward pass as a module: `fn(*args)` over `model`'s weights, for accelerate to wrap.

    DDP readies its gradient all-reduce in the wrapper's forward, so a step's loss must come from
    one call of the wrapped module, and `fn` holds every use of the trained weights the loss
    backpropagates through. Passes without gradient (KL reference, rollouts, evaluation) use the
    weights directly: under DDP every rank holds all of them.
    """

    def __init__(self, model: torch.nn.Module, fn: Callable):
        super().__init__()
        self.model = model  # registers the weights
        self.fn = fn

    def forward(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def world() -> int:
    return _state().num_processes


def rank() -> int:
    return _state().process_index


def is_main() -> bool:
    return _state().is_main_process


def barrier() -> None:
    _state().wait_for_everyone()


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
    t = torch.tensor([value], dtype=torch.float64, device=_state().device)
    dist.all_reduce(t)
    return float(t.item() / world())


def gather_list(items: list) -> list:
    """Concatenate a Python list from all ranks in rank order (any picklable items)."""
    return list(accelerate.utils.gather_object(list(items))) if world() > 1 else list(items)


def gather_array(x: np.ndarray) -> np.ndarray:
    """Concatenate numpy arrays (n_rank, ...) from all ranks in rank order."""
    return np.concatenate(accelerate.utils.gather_object([x]), axis=0) if world() > 1 else x


def broadcast_array(x: np.ndarray) -> np.ndarray:
    """Rank 0's array on every rank: a choice made once (e.g. which documents to refresh), not per rank."""
    return np.asarray(accelerate.utils.broadcast_object_list([x], from_process=0)[0]) if world() > 1 else x
