"""A writable index whose acknowledged writes survive a crash, a full disk and damaged files.

Each upsert or delete is one committed SQLite transaction (`store.py`) before it is applied to
the in-memory FAISS index and acknowledged; a write that fails to commit is rolled back and never
applied. The FAISS structure is derived: saved every `snapshot_every` writes and at a clean close,
tagged with the last write it reflects, and rebuilt from the database when it is missing, stale
or damaged, so losing it costs time, never data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .index import IndexMismatchError, VectorIndex
from .store import FolderLock, IndexStore, StoreError, open_folder

log = logging.getLogger(__name__)


class DurableIndex:
    """A `VectorIndex` backed by an index folder's SQLite store.

    Not thread-safe by itself: callers serialise writes (the service holds one lock). One writer
    process per folder: opening a folder another process holds raises `StoreError`.
    """

    def __init__(self, root: Path, store: IndexStore, index: VectorIndex, lock: FolderLock,
                 snapshot_every: int = 1000):
        self.root, self.store, self.index, self._lock = root, store, index, lock
        self.snapshot_every = snapshot_every
        self._pending = 0  # committed writes not yet in the FAISS snapshot

    @classmethod
    def open(cls, root: str | os.PathLike, model: str, dim: int, kind: str = "auto",
             snapshot_every: int = 1000, fingerprint: str | None = None) -> "DurableIndex":
        """Open (or create, empty) the index folder `root` for `model`.

        A folder in the old format is migrated. A damaged database is refused with the file and
        what is wrong (`StoreDamagedError`), and an index built by other weights with
        `IndexMismatchError`; a missing, stale or damaged FAISS snapshot is rebuilt, with a log line.
        """
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        lock = FolderLock(root)
        store = None
        try:
            store = open_folder(root)
            meta = store.meta()
            if meta is None:
                fresh = VectorIndex(dim, model, kind, fingerprint=fingerprint)
                store.initialise(fresh.meta())
            index, reason = VectorIndex.from_store(store, root)
            index.check_model(model, dim, fingerprint)
            if meta is not None and meta.get("fingerprint") is None and index.fingerprint is not None:
                store.update_meta(fingerprint=index.fingerprint)  # an old index learns its weights' fingerprint
            live = cls(root, store, index, lock, snapshot_every)
        except BaseException:
            if store is not None:
                store.close()
            lock.release()
            raise
        if reason is not None and len(index):
            log.warning("%s: FAISS index rebuilt from the database (%s)", root, reason)
            live.snapshot()
        return live

    def __len__(self) -> int:
        return len(self.index)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, documents: Sequence[dict]) -> None:
        """Add or replace documents; committed (and so durable) when this returns."""
        ids = [str(i) for i in ids]
        x = np.asarray(vectors, dtype=np.float32)
        # Validate before writing: a committed row the index cannot take would break every start.
        if x.ndim != 2 or x.shape != (len(ids), self.index.dim):
            raise IndexMismatchError(f"expected vectors of shape ({len(ids)}, {self.index.dim}), got {x.shape}")
        if len(documents) != len(ids):
            raise ValueError(f"{len(documents)} documents for {len(ids)} ids")
        if len(set(ids)) != len(ids):
            raise ValueError("an id appears twice in one upsert")
        labels = self.store.upsert(ids, x, [dict(d) for d in documents])
        self.index.add(ids, x, documents, replace=True, labels=labels)
        self._written()

    def delete(self, ids: Sequence[str]) -> int:
        """Remove ids; returns how many were present. Committed when this returns."""
        present = [str(i) for i in ids if str(i) in self.index]
        if present:
            self.store.delete(present)
            self.index.remove(present)
            self._written()
        return len(present)

    def _written(self) -> None:
        self._pending += 1
        if self._pending >= self.snapshot_every:
            self.snapshot()

    def snapshot(self) -> bool:
        """Save the FAISS structure; a failure (a full disk) is logged, never raised: the writes
        are already committed, and the next open rebuilds what the snapshot lacks."""
        try:
            self.index.write_snapshot(self.root, self.store.meta()["seq"])
        except Exception as e:  # faiss raises RuntimeError, the file system OSError
            log.warning("%s: FAISS snapshot failed (%s: %s); the writes are safe in the database",
                        self.root, type(e).__name__, e)
            return False
        self._pending = 0
        return True

    def close(self, snapshot: bool = True) -> None:
        """Snapshot pending writes (unless `snapshot=False`: then the folder is left as a crash
        would leave it) and release the database and the folder lock."""
        try:
            if snapshot and self._pending:
                self.snapshot()
        finally:
            try:
                self.store.close()
            finally:
                self._lock.release()


__all__ = ["DurableIndex", "StoreError"]
