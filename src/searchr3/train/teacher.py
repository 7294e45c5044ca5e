"""The frozen teacher of Stage 1's optional distillation: all-MiniLM-L6-v2 (shipped offline) scoring
query–candidate pairs by cosine, each text encoded once per run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .._extras import require
from ..baselines import minilm_path


class Teacher:
    """Cosine similarities from a frozen sentence-transformers model, with vectors cached per text.

    The cache is a plain dict in memory (384 float32 a text for MiniLM: 150 MB per 100k texts), so
    a text seen in several batches is encoded once.
    """

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "cpu", batch_size: int = 64):
        SentenceTransformer = require("baselines", "sentence_transformers").SentenceTransformer
        self.path = str(path or minilm_path())
        self.model = SentenceTransformer(self.path, device=str(device), local_files_only=True)
        self.model.eval().requires_grad_(False)
        self.batch_size = batch_size
        self.cache: dict[str, np.ndarray] = {}

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised vectors (len(texts), D) float32; texts not seen before are encoded."""
        new = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if new:
            encoded = self.model.encode(new, batch_size=self.batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False)
            self.cache.update(zip(new, encoded.astype(np.float32)))
        return np.stack([self.cache[t] for t in texts])

    def scores(self, queries: Sequence[str], documents: Sequence[str]) -> torch.Tensor:
        """Cosine similarities (len(queries), len(documents)) float32 on the CPU; a constant (no grad)."""
        return torch.from_numpy(self.vectors(queries) @ self.vectors(documents).T)
