"""Preparing a trained adapter for release: store its weights in bf16 when that changes nothing.

A LoRA adapter saved by training is fp32. Half the bytes ship in bf16, but only if the vectors
of the reloaded model match the fp32 ones; the check and its result are recorded in the
adapter's searchr3.json so that the claim can be read and re-run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .fingerprint import SEARCHR3_FILE

ADAPTER_FILE = "adapter_model.safetensors"
MIN_COSINE = 0.9999  # vectors must agree this closely for the bf16 copy to replace fp32


def _vectors(folder: Path, documents: Sequence[str], queries: Sequence[str]) -> np.ndarray:
    from .modeling import SearchR3

    model = SearchR3.from_pretrained(folder, dtype="fp32", device="cpu")
    return np.concatenate([model.embed_documents(documents), model.embed_queries(queries)])


def store_bf16(folder: str | os.PathLike, documents: Sequence[str], queries: Sequence[str],
               min_cosine: float = MIN_COSINE) -> dict:
    """Rewrite `folder`'s adapter weights in bf16 if every vector keeps cosine >= `min_cosine`.

    Both models run in fp32, so the comparison isolates the stored precision of the adapter.
    Returns {"stored": "bfloat16" or "float32", "min_cosine": ..., "texts": n}; the same is
    written to searchr3.json as "storage". An adapter already in bf16 is left as it is.
    """
    from safetensors.torch import load_file, save_file

    folder = Path(folder)
    weights = load_file(folder / ADAPTER_FILE)
    if all(t.dtype == torch.bfloat16 for t in weights.values() if t.is_floating_point()):
        return json.loads((folder / SEARCHR3_FILE).read_text()).get("storage", {"stored": "bfloat16"})
    reference = _vectors(folder, documents, queries)
    # A sibling folder, so that relative paths in searchr3.json (a shared tokenizer) still resolve.
    trial = Path(tempfile.mkdtemp(prefix=f".{folder.name}-bf16-", dir=folder.parent))
    try:
        for item in folder.iterdir():
            if item.is_file():
                shutil.copy2(item, trial / item.name)
        half = {k: (t.to(torch.bfloat16) if t.is_floating_point() else t).contiguous() for k, t in weights.items()}
        save_file(half, trial / ADAPTER_FILE, metadata={"format": "pt"})
        trial_vectors = _vectors(trial, documents, queries)
        cosine = float(np.min(np.sum(reference * trial_vectors, axis=1)
                              / np.linalg.norm(reference, axis=1) / np.linalg.norm(trial_vectors, axis=1)))
        result = {"stored": "bfloat16" if cosine >= min_cosine else "float32", "min_cosine": round(cosine, 7),
                  "threshold": min_cosine, "texts": len(documents) + len(queries)}
        if result["stored"] == "bfloat16":
            os.replace(trial / ADAPTER_FILE, folder / ADAPTER_FILE)
        meta = json.loads((folder / SEARCHR3_FILE).read_text())
        meta["storage"] = result
        (folder / SEARCHR3_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return result
    finally:
        shutil.rmtree(trial, ignore_errors=True)
