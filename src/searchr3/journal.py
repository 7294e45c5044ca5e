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
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .index import VectorIndex, fsync_dir

JOURNAL = "journal.jsonl"
LOCK = "LOCK"


def _encode(vectors: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vectors, dtype="<f4").tobytes()).decode("ascii")


def _decode(data: str, dim: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(data), dtype="<f4").reshape(-1, dim)


class JournaledIndex:
    """A `VectorIndex` plus a write-ahead journal in the same folder.

    Not thread-safe by itself: callers serialise writes (the service holds one lock). One
    process at a time: opening a folder another process holds raises `RuntimeError`.
    """

    def __init__(self, root: Path, index: VectorIndex, compact_every: int = 1000):
        self.root, self.index, self.compact_every = Path(root), index, compact_every
        self._pending = 0  # journal entries not yet in a snapshot
        self._failed: str | None = None  # set when a failed append could not be rolled back
        self._journal = open(self.root / JOURNAL, "ab")
        fsync_dir(self.root)  # the journal's name itself must survive a power cut

    @classmethod
    def open(cls, root: str | os.PathLike, model: str, dim: int, kind: str = "flat",
             compact_every: int = 1000, fingerprint: str | None = None) -> "JournaledIndex":
        """Open (or create, empty) the index folder `root` for `model`; replays any journal.

        `fingerprint` is the model's weight fingerprint: an index built by other weights is refused.
        """
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        fsync_dir(root.parent)
        lock = _lock(root)
        try:
            if (root / "CURRENT").is_file():
                index = VectorIndex.load(root, model=model, fingerprint=fingerprint)
                if index.dim != dim:
                    raise ValueError(f"{root}: index has dim {index.dim}, model {model!r} has {dim}")
            else:
                # Only leftovers of an interrupted first save may be here (no snapshot was ever live).
                foreign = [p.name for p in root.iterdir() if p.name not in (JOURNAL, LOCK, "CURRENT.tmp")
                           and not p.name.startswith("snapshot-")]
                if foreign:
                    raise FileNotFoundError(f"{root} exists but is not a searchr3 index (no CURRENT file; "
                                            f"found {foreign[0]!r})")
                index = VectorIndex(dim, model, kind, fingerprint=fingerprint)
                index.save(root)
            replayed = cls._replay(root / JOURNAL, index)
            live = cls(root, index, compact_every)
        except BaseException:
            lock.close()
            raise
        live._lock = lock
        if replayed:
            live.compact()
        return live

    @staticmethod
    def _replay(path: Path, index: VectorIndex) -> int:
        """Apply the journal's complete entries to `index`; returns how many were applied.

        A last entry that is cut short or unreadable is a write that crashed before it was
        acknowledged: it is cut off, so that the next entry starts on a line of its own. An
        unreadable entry before the last one is real damage and raises.
        """
        if not path.is_file():
            return 0
        complete = path.read_bytes().split(b"\n")[:-1]  # the part after the last newline was never acknowledged
        applied, good = 0, 0
        for n, raw in enumerate(complete):
            try:
                entry = json.loads(raw)
                ids = entry["ids"]
                vectors = _decode(entry["vectors"], index.dim) if entry["op"] == "upsert" else None
            except (ValueError, KeyError, TypeError) as e:
                if n == len(complete) - 1:  # torn last write (e.g. zero-filled pages after a power cut)
                    break
                raise ValueError(f"{path}:{n + 1}: damaged journal entry ({e}); the index cannot be "
                                 "restored past it") from e
            if entry["op"] == "upsert":
                index.add(ids, vectors, entry["documents"], replace=True)
            elif entry["op"] == "delete":
                index.remove(ids)
            else:
                raise ValueError(f"{path}:{n + 1}: unknown journal entry {entry['op']!r}")
            applied += 1
            good += len(raw) + 1
        if good != path.stat().st_size:
            os.truncate(path, good)
        return applied

    def __len__(self) -> int:
        return len(self.index)

    def _append(self, entry: dict) -> None:
        """Write one entry and fsync it; on failure, cut the file back so it stays well formed."""
        if self._failed:
            raise RuntimeError(f"the journal is in an unknown state after a failed write ({self._failed}); "
                               "restart to recover from the last good entry")
        data = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        start = self._journal.tell()
        try:
            self._journal.write(data)
            self._journal.flush()
            os.fsync(self._journal.fileno())
        except BaseException as e:
            try:
                self._journal.truncate(start)
                self._journal.seek(start)
                self._journal.flush()
                os.fsync(self._journal.fileno())
            except OSError:
                self._failed = f"{type(e).__name__}: {e}"
            raise
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
        """Snapshot when due. The write is already durable in the journal, so a failed snapshot
        is reported as a warning and retried at the next write, never as a failed write."""
        if self._pending >= self.compact_every:
            try:
                self.compact()
            except OSError as e:
                warnings.warn(f"index snapshot failed ({e}); writes stay in the journal", stacklevel=2)

    def compact(self) -> None:
        """Snapshot the index atomically, then swap in an empty journal.

        The old journal stays open and valid until the empty one has replaced it, so a failure
        at any point leaves a snapshot plus a journal that replays to the same state.
        """
        self.index.save(self.root)
        tmp = self.root / (JOURNAL + ".tmp")
        with open(tmp, "wb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.root / JOURNAL)
        fsync_dir(self.root)
        old, self._journal = self._journal, open(self.root / JOURNAL, "ab")
        old.close()
        self._pending = 0

    def close(self, snapshot: bool = True) -> None:
        """Snapshot pending writes (unless `snapshot=False`: then the folder is left exactly as a
        crash would leave it) and release the journal and the folder lock."""
        try:
            if snapshot and self._pending and not self._failed:
                self.compact()
        finally:
            self._journal.close()
            lock = getattr(self, "_lock", None)
            if lock is not None:
                lock.close()


def _lock(root: Path):
    """An exclusive advisory lock on the folder for this process (released when closed)."""
    import fcntl

    handle = open(root / LOCK, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RuntimeError(f"{root} is in use by another process (a running `searchr3 serve`?)") from None
    return handle
