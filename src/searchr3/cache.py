"""On-disk caches of expensive model outputs: reasoning traces and corpus vectors.

Keys include the model's weight fingerprint and prompt fingerprint, so a changed model or
prompt never reads a stale entry. Only greedy reasoning is cached (sampling is not
reproducible across batch layouts). Both caches live under `$SEARCHR3_HOME/cache`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import assets
from .decoding import Reasoning
from .modeling import SearchR3


def cache_dir() -> Path:
    path = assets.home() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


class ReasoningCache:
    """A SQLite table of greedy reasoning results keyed by model, prompt, query and budget.

    Rows written before `stop` was stored have it NULL: they count as misses and are
    regenerated (the row alone cannot tell a budget stop from an end of turn on the last step).
    """

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else cache_dir() / "reasoning.sqlite"
        self._db = sqlite3.connect(self.path)
        self._db.execute("CREATE TABLE IF NOT EXISTS reasoning (key TEXT PRIMARY KEY, trace TEXT, "
                         "forced INTEGER, token_ids TEXT, vector BLOB, stop TEXT)")
        if "stop" not in {row[1] for row in self._db.execute("PRAGMA table_info(reasoning)")}:
            with self._db:
                self._db.execute("ALTER TABLE reasoning ADD COLUMN stop TEXT")
        self.hits = self.misses = 0

    @staticmethod
    def key(model: SearchR3, query: str, budget: int) -> str:
        floor = model.config.min_reasoning_tokens  # changes the traces; absent when 0 so old keys stay valid
        raw = json.dumps([model.fingerprint, budget, query] + ([floor] if floor else []))
        return hashlib.sha256(raw.encode()).hexdigest()

    def reason(self, model: SearchR3, texts: Sequence[str], max_new_tokens: int | None = None,
               show_progress: bool | None = None) -> list[Reasoning]:
        """Return `model.reason(texts)` (greedy), generating only what the cache lacks."""
        budget = model.config.reasoning_tokens if max_new_tokens is None else max_new_tokens
        keys = [self.key(model, t, budget) for t in texts]
        found: dict[str, Reasoning] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            rows = self._db.execute(f"SELECT key, trace, forced, token_ids, vector, stop FROM reasoning "
                                    f"WHERE stop IS NOT NULL AND key IN ({','.join('?' * len(chunk))})",
                                    chunk).fetchall()
            for key, trace, forced, token_ids, vector, stop in rows:
                found[key] = Reasoning(trace, bool(forced), json.loads(token_ids),
                                       np.frombuffer(vector, dtype=np.float32).copy(), stop)
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in found}.items())
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = model.reason([t for _, t in missing], max_new_tokens=budget, show_progress=show_progress)
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO reasoning (key, trace, forced, token_ids, vector, stop) "
                                     "VALUES (?, ?, ?, ?, ?, ?)",
                                     [(k, r.trace, int(r.forced), json.dumps(r.token_ids),
                                       r.vector.astype(np.float32).tobytes(), r.stop)
                                      for (k, _), r in zip(missing, fresh)])
            found.update({k: r for (k, _), r in zip(missing, fresh)})
        return [found[k] for k in keys]


class VectorCache:
    """Corpus vectors as .npy files, keyed by model fingerprint and a hash of the texts."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder else cache_dir() / "vectors"
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, model: SearchR3, texts: Sequence[str]) -> Path:
        """Where the vectors of `texts` under `model` (weights and prompts) are kept."""
        h = hashlib.sha256(model.fingerprint.encode())
        for t in texts:
            h.update(t.encode())
            h.update(b"\0")
        return self.folder / f"{h.hexdigest()[:32]}.npy"

    def embed_documents(self, model: SearchR3, texts: Sequence[str], show_progress: bool | None = None) -> np.ndarray:
        """Return `model.embed_documents(texts)`, from the cache when the same texts were embedded before."""
        path = self.path(model, texts)
        if path.is_file():
            vectors = np.load(path)
            if vectors.shape == (len(texts), model.dim):
                return vectors
        vectors = model.embed_documents(texts, show_progress=show_progress)
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".npy.tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, vectors)
        os.replace(tmp, path)
        return vectors
