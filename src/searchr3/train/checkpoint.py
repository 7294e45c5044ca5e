"""Atomic training checkpoints shared by both stages: model (or adapter), optimiser, RNG states, step.

A checkpoint is written to a temporary folder and renamed to `checkpoints/step-N`, so a stop
at any moment leaves either the previous checkpoint or the new one; the latest two are kept.
A trainer adds its own files (Stage 2: the environment's vectors) through `extra`.
"""

from __future__ import annotations

import pickle
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

STATE = "trainer_state.pt"


def save(output: Path, step: int, model, optimizer: torch.optim.Optimizer, config: dict,
         extra: Callable[[Path], None] | None = None) -> Path:
    """Write checkpoints/step-N under `output` atomically; returns its folder."""
    folder = output / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=".ckpt-", dir=folder))
    model.save_pretrained(tmp / "model")
    numpy_rng = np.random.get_state(legacy=False)  # a dict; its key array goes in as a tensor
    numpy_rng["state"]["key"] = torch.from_numpy(numpy_rng["state"]["key"].astype(np.int64))
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(), "numpy_rng": numpy_rng, "config": config}, tmp / STATE)
    if extra is not None:
        extra(tmp)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    for old in sorted(folder.glob("step-*"))[:-2]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load_latest(output: Path, model, optimizer: torch.optim.Optimizer) -> tuple[int, Path] | None:
    """Restore model weights, optimiser and RNG states from the latest checkpoint.

    Returns (step, checkpoint folder), or None when there is no checkpoint.
    """
    checkpoints = sorted((output / "checkpoints").glob("step-*"))
    if not checkpoints:
        return None
    latest = checkpoints[-1]
    state = read_state(latest / STATE)
    model.load_trainable(latest / "model")
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    numpy_rng = state["numpy_rng"]
    if isinstance(numpy_rng, dict):
        numpy_rng["state"]["key"] = numpy_rng["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state(numpy_rng)
    return state["step"], latest


def read_state(path: Path) -> dict:
    """The trainer state, unpickled with `weights_only=True`: a checkpoint file cannot run code.

    Checkpoints written before the NumPy RNG state was stored as a tensor hold a NumPy array; the
    few NumPy types that needs are allowed by name, never arbitrary objects.
    """
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError:
        multiarray = getattr(np, "_core", np.core).multiarray
        allowed = [multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, weights_only=True)
