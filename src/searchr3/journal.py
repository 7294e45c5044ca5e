"""A writable index on disk whose acknowledged writes survive a crash (`kill -9`, power loss).

`VectorIndex.save` rewrites a whole snapshot, which is too slow to do for every upsert of a
live service. `JournaledIndex` appends each write to `journal.jsonl` in the index folder and
fsyncs it *before* applying it in memory and returning, so a write that was acknowledged is
on disk. Opening the folder loads the last snapshot and replays the journal. Every
`compact_every` writes (and after a replay) the state is snapshotted and the journal
emptied. Replaying an entry the snapshot already holds is harmless: an upsert sets an id to
a value and a delete removes it, so the last entry for an id decides its state whatever
the starting point.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .index import VectorIndex, fsync_dir

JOURNAL = "journal.jsonl"


def _encode(vectors: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vectors, dtype="<f4").tobytes()).decode("ascii")


def _decode(data: str, dim: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(data), dtype="<f4").reshape(-1, dim)


class JournaledIndex:
    """A `VectorIndex` plus a write-ahead journal in the same folder.

    Not thread-safe by itself: callers serialise writes (the service holds one lock).
    """

    def __init__(self, root: Path, index: VectorIndex, compact_every: int = 1000):
        self.root, self.index, self.compact_every = Path(root), index, compact_every
        self._pending = 0  # journal entries not yet in a snapshot
        self._journal = open(self.root / JOURNAL, "a", encoding="utf-8")

    @classmethod
    def open(cls, root: str | os.PathLike, model: str, dim: int, kind: str = "flat",
             compact_every: int = 1000) -> "JournaledIndex":
        """Open (or create, empty) the index folder `root` for `model`; replays any journal."""
        root = Path(root)
        if (root / "CURRENT").is_file():
            index = VectorIndex.load(root, model=model)
            if index.dim != dim:
                raise ValueError(f"{root}: index has dim {index.dim}, model {model!r} has {dim}")
        else:
            if root.exists() and any(p.name != JOURNAL for p in root.iterdir()):
                raise FileNotFoundError(f"{root} exists but is not a searchr3 index (no CURRENT file)")
            index = VectorIndex(dim, model, kind)
            index.save(root)
        replayed = cls._replay(root / JOURNAL, index)
        live = cls(root, index, compact_every)
        if replayed:
            live.compact()
        return live

    @staticmethod
    def _replay(path: Path, index: VectorIndex) -> int:
        """Apply the journal's complete entries to `index`; returns how many were applied.

        A last line without its newline is a write that crashed before it was acknowledged:
        it is cut off, so that the next entry starts on a line of its own.
        """
        if not path.is_file():
            return 0
        applied, good = 0, 0
        with open(path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break
                entry = json.loads(raw)
                if entry["op"] == "upsert":
                    index.add(entry["ids"], _decode(entry["vectors"], index.dim), entry["documents"], replace=True)
                elif entry["op"] == "delete":
                    index.remove(entry["ids"])
                else:
                    raise ValueError(f"{path}: unknown journal entry {entry['op']!r}")
                applied += 1
                good += len(raw)
        if good != path.stat().st_size:
            os.truncate(path, good)
        return applied

    def __len__(self) -> int:
        return len(self.index)

    def _append(self, entry: dict) -> None:
        self._journal.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())
        self._pending += 1

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, documents: Sequence[dict]) -> None:
        """Add or replace documents; durable when this returns."""
        ids = [str(i) for i in ids]
        x = np.asarray(vectors, dtype=np.float32)
        # Validate before journaling: a journal entry that cannot be applied would break every restart.
        if x.ndim != 2 or x.shape != (len(ids), self.index.dim):
            raise ValueError(f"expected vectors of shape ({len(ids)}, {self.index.dim}), got {x.shape}")
        if len(documents) != len(ids):
            raise ValueError(f"{len(documents)} documents for {len(ids)} ids")
        if len(set(ids)) != len(ids):
            raise ValueError("an id appears twice in one upsert")
        self._append({"op": "upsert", "ids": ids, "documents": [dict(d) for d in documents], "vectors": _encode(x)})
        self.index.add(ids, x, documents, replace=True)
        self._maybe_compact()

    def delete(self, ids: Sequence[str]) -> int:
        """Remove ids; returns how many were present. Durable when this returns."""
        present = [str(i) for i in ids if str(i) in self.index]
        if present:
            self._append({"op": "delete", "ids": present})
            self.index.remove(present)
            self._maybe_compact()
        return len(present)

    def _maybe_compact(self) -> None:
        if self._pending >= self.compact_every:
            self.compact()

    def compact(self) -> None:
        """Snapshot the index atomically, then empty the journal."""
        self.index.save(self.root)
        self._journal.close()
        tmp = self.root / (JOURNAL + ".tmp")
        tmp.write_text("")
        os.replace(tmp, self.root / JOURNAL)
        fsync_dir(self.root)
        self._journal = open(self.root / JOURNAL, "a", encoding="utf-8")
        self._pending = 0

    def close(self) -> None:
        """Snapshot pending writes and release the journal file."""
        if self._pending:
            self.compact()
        self._journal.close()
