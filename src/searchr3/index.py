"""A FAISS vector index with string ids and stored documents, kept in a folder on disk.

On disk the folder's SQLite database (`store.py`) holds the documents, vectors and the model's
identity, and is the only source of truth; `faiss.index` is derived from it, saved with the
number of the last write it reflects, and rebuilt whenever it is missing, stale or damaged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from . import assets
from .legacy import is_legacy
from .store import (DATABASE, DERIVED, FolderLock, IndexStore, Row, StoreDamagedError, StoreError, fsync_dir,
                    open_folder)

log = logging.getLogger(__name__)

KINDS = ("flat", "hnsw", "auto")
# The graph's settings, chosen from benchmarks/results/ann.md (the model's own vectors expanded to
# 1M) by the rule in docs/performance.md written before that run. "auto": exact search until the
# index holds HNSW_FROM vectors (the first measured size where one exact query takes over 5 ms),
# HNSW from then on. A 40-wide build beam reached recall@10 ≥ 0.95 at 300k, building 4× faster than
# 200; a 256-wide search beam is the narrowest that reached it at 1M (0.96 at 0.8 ms on 2 cores).
HNSW_FROM = 100_000
HNSW_M = 32
EF_CONSTRUCTION = 40
EF_SEARCH = 256
SNAPSHOT, SIDECAR = DERIVED  # the FAISS structure and its record: which write it reflects, its digest


class IndexMismatchError(ValueError):
    """The vectors or model given do not match the ones the index was built with."""


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


class VectorIndex:
    """Inner-product search over L2-normalised vectors (so scores are cosines).

    Args:
        dim: vector dimension.
        model: name or path of the model that produced the vectors; stored and shown in errors.
        fingerprint: the model's weight fingerprint (`SearchR3.weights_fingerprint`); stored and
            checked, since a name (an alias, a retrained folder) can come to mean other weights.
        kind: "flat" (exact), "hnsw" (approximate) or "auto" (flat until `hnsw_from` vectors, then
            HNSW, rebuilt once when an add crosses the size: the default of the CLI and the service).
        hnsw_m: HNSW graph degree M (FAISS default 32).
        ef_construction: HNSW build-time beam width.
        ef_search: HNSW query-time beam width; larger is more exact and slower.
        hnsw_from: with kind "auto", the size from which the index is an HNSW graph.
    """

    def __init__(self, dim: int, model: str, kind: str = "flat", hnsw_m: int = HNSW_M,
                 ef_construction: int = EF_CONSTRUCTION, ef_search: int = EF_SEARCH, fingerprint: str | None = None,
                 hnsw_from: int = HNSW_FROM):
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}; use one of {', '.join(KINDS)}")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim, self.model, self.kind = int(dim), str(model), kind
        self.fingerprint = fingerprint
        if hnsw_from < 1:
            raise ValueError(f"hnsw_from must be >= 1, got {hnsw_from}")
        self.hnsw = {"m": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search, "from": hnsw_from}
        self.structure = "hnsw" if kind == "hnsw" else "flat"  # what the FAISS index is now
        self._index = self._new_faiss()
        self._ids: dict[int, str] = {}  # faiss label -> string id (live entries only)
        self._labels: dict[str, int] = {}  # string id -> faiss label
        self._deleted: set[int] = set()  # HNSW labels removed but still in the graph
        self._next_label = 0
        self.documents: dict[str, dict] = {}  # string id -> stored fields (title, text)

    def _new_faiss(self) -> faiss.Index:
        if self.structure == "flat":
            base = faiss.IndexFlatIP(self.dim)
        else:
            base = faiss.IndexHNSWFlat(self.dim, self.hnsw["m"], faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = self.hnsw["ef_construction"]
            base.hnsw.efSearch = self.hnsw["ef_search"]
        return faiss.IndexIDMap2(base)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self._labels

    @property
    def ids(self) -> list[str]:
        """Live string ids, in insertion order."""
        return [self._ids[label] for label in sorted(self._ids)]

    def _check_vectors(self, vectors: np.ndarray) -> np.ndarray:
        x = np.asarray(vectors)
        if x.ndim != 2:
            raise IndexMismatchError(f"vectors must be 2-D (n, {self.dim}), got shape {x.shape}")
        if x.shape[1] != self.dim:
            raise IndexMismatchError(f"index has dim {self.dim}, vectors have {x.shape[1]} (model {self.model})")
        if not np.issubdtype(x.dtype, np.floating):
            raise IndexMismatchError(f"vectors must be floating point, got {x.dtype}")
        return np.ascontiguousarray(x, dtype=np.float32)

    def check_model(self, model: str, dim: int | None = None, fingerprint: str | None = None) -> None:
        """Raise IndexMismatchError unless the model is the one whose vectors the index holds.

        With both fingerprints known they decide, whatever the names. An index without one (saved
        before fingerprints were recorded, or built by hand without it) is checked by name, except
        that a recorded alias is refused: an alias moves between releases, so its weights are unknown.
        """
        model = str(model)
        if fingerprint is not None and self.fingerprint is not None:
            if fingerprint != self.fingerprint:
                raise IndexMismatchError(
                    f"index was built with model {self.model!r} (weights {self.fingerprint}), not with "
                    f"{model!r} (weights {fingerprint}); rebuild the index or load the model that built it")
        elif model != self.model:
            raise IndexMismatchError(f"index was built with model {self.model!r}, not {model!r}; "
                                     "rebuild it or load that model")
        elif self.model in assets.ALIASES:
            raise IndexMismatchError(
                f"index records model {self.model!r} but no weight fingerprint, and that name does not "
                f"always mean the same weights (the loaded {model!r} has weights {fingerprint}); rebuild the index")
        if dim is not None and dim != self.dim:
            raise IndexMismatchError(f"index has dim {self.dim}, model {model!r} has {dim}")
        if fingerprint is not None and self.fingerprint is None:
            self.fingerprint = fingerprint  # a trusted old index learns its fingerprint; the next save keeps it

    def add(self, ids: Sequence[str], vectors: np.ndarray, documents: Sequence[dict] | None = None,
            replace: bool = False, labels: Sequence[int] | None = None) -> None:
        """Add vectors (n, dim) under string ids; with `replace`, existing ids are overwritten.

        `documents` (optional, one dict per id, e.g. title and text) are stored for display.
        `labels` (optional) are the FAISS ids to use, as a store hands them out; they must be new.
        """
        x = self._check_vectors(vectors)
        ids = [str(i) for i in ids]
        if len(ids) != len(x):
            raise ValueError(f"{len(ids)} ids for {len(x)} vectors")
        if documents is not None and len(documents) != len(ids):
            raise ValueError(f"{len(documents)} documents for {len(ids)} ids")
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"id {dup!r} appears twice in one add")
        present = [i for i in ids if i in self._labels]
        if present and not replace:
            raise ValueError(f"id {present[0]!r} is already in the index ({len(present)} in all); "
                             "use replace=True to overwrite")
        if labels is None:
            labels = np.arange(self._next_label, self._next_label + len(ids), dtype=np.int64)
        else:
            labels = np.asarray(labels, dtype=np.int64)
            if len(labels) != len(ids) or any(int(n) in self._ids or int(n) in self._deleted for n in labels):
                raise ValueError("labels must be new, one per id")
        self.remove(present)
        self._next_label = max(self._next_label, int(labels.max()) + 1 if len(labels) else 0)
        self._index.add_with_ids(x, labels)
        for label, doc_id, k in zip(labels.tolist(), ids, range(len(ids))):
            self._ids[label] = doc_id
            self._labels[doc_id] = label
            if documents is not None:
                self.documents[doc_id] = dict(documents[k])
        structure = self._structure_for(len(self))
        if structure != self.structure:  # "auto" grew past hnsw_from: the graph is built once, here
            log.info("index of %d vectors reached hnsw_from (%d): building its HNSW graph once (this write waits)",
                     len(self), self.hnsw["from"])
            self.structure = structure
            self._rebuild()

    def _structure_for(self, size: int) -> str:
        """The FAISS structure an index of this kind holds at `size` vectors (auto never steps back:
        removals leave a graph a graph, so the structure changes at most once per process)."""
        if self.kind == "auto":
            return "hnsw" if size >= self.hnsw["from"] or self.structure == "hnsw" else "flat"
        return self.kind

    def remove(self, ids: Sequence[str]) -> int:
        """Remove ids; returns how many were present. HNSW marks them deleted (rebuilt when many)."""
        labels = [self._labels.pop(str(i)) for i in ids if str(i) in self._labels]
        for label in labels:
            self.documents.pop(self._ids.pop(label), None)
        if not labels:
            return 0
        if self.structure == "flat":
            self._index.remove_ids(np.asarray(labels, dtype=np.int64))
        else:
            self._deleted.update(labels)
            if len(self._deleted) > 0.2 * max(len(self._ids), 1):
                self._rebuild()
        return len(labels)

    def _rebuild(self) -> None:
        """Re-create the FAISS structure from the live vectors (drops HNSW tombstones)."""
        labels = np.asarray(sorted(self._ids), dtype=np.int64)
        vectors = self._index.reconstruct_batch(labels) if len(labels) else None
        self._index = self._new_faiss()
        self._deleted.clear()
        if vectors is not None:
            self._index.add_with_ids(vectors, labels)

    def search(self, vectors: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, ids) of the k best documents per query vector.

        Args:
            vectors: (n, dim) float query vectors.
            k: hits per query (>= 1).

        Returns:
            scores: (n, k) float32 inner products, best first; -inf where fewer than k exist.
            ids: (n, k) object array of string ids; None where fewer than k exist.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        x = self._check_vectors(vectors)
        params = None
        if self._deleted:
            self._selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.asarray(sorted(self._deleted), np.int64)))
            params = faiss.SearchParametersHNSW(sel=self._selector, efSearch=self.hnsw["ef_search"])
        scores, labels = self._index.search(x, k, params=params) if len(x) else (
            np.zeros((0, k), np.float32), np.zeros((0, k), np.int64))
        ids = np.empty(labels.shape, dtype=object)
        for (r, c), label in np.ndenumerate(labels):
            ids[r, c] = self._ids.get(int(label)) if label >= 0 else None
        scores = np.where(labels >= 0, scores, -np.inf).astype(np.float32)
        return scores, ids

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        """Return the stored vectors of `ids`, (n, dim) float32; KeyError names an unknown id."""
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        for n, doc_id in enumerate(ids):
            if doc_id not in self._labels:
                raise KeyError(f"unknown id {doc_id!r}")
            out[n] = self._index.reconstruct(self._labels[doc_id])
        return out

    # ------------------------------------------------------------------ persistence
    def rows(self) -> list[Row]:
        """Every live entry as a store row: label, id, stored fields, vector."""
        labels = sorted(self._ids)
        vectors = self._index.reconstruct_batch(np.asarray(labels, dtype=np.int64)) if labels else []
        return [Row(label, self._ids[label], self.documents.get(self._ids[label], {}), vectors[n])
                for n, label in enumerate(labels)]

    def meta(self) -> dict:
        return {"model": self.model, "fingerprint": self.fingerprint, "dim": self.dim, "kind": self.kind,
                "hnsw": self.hnsw}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index to folder `path` (created if needed) and return it.

        The documents and vectors go into the folder's SQLite database in one transaction
        (`store.py`), replacing what it held: a crash leaves the old index or the new one. The
        FAISS structure is saved beside it as derived state, rebuilt whenever it is missing.
        """
        root = Path(path)
        store = open_folder(root)
        lock = FolderLock(root)
        try:
            store.replace_all(self.meta(), self.rows())
            self.write_snapshot(root, store.meta()["seq"])
        finally:
            lock.release()
            store.close()
        return root

    def write_snapshot(self, root: Path, seq: int) -> None:
        """Save the FAISS structure as of the store's write `seq` (`faiss.index` + `faiss.json`).

        Derived state: its loss costs a rebuild at the next open, never data, so a caller may
        treat a failure here as a warning. Each file is written beside its name and renamed.
        """
        tmp = root / (SNAPSHOT + ".tmp")
        try:
            faiss.write_index(self._index, str(tmp))
            fsync_file(tmp)
            digest = file_digest(tmp)
            os.replace(tmp, root / SNAPSHOT)
            sidecar = {"seq": seq, "count": len(self), "digest": digest, "kind": self.structure}
            tmp.write_text(json.dumps(sidecar) + "\n")
            fsync_file(tmp)
            os.replace(tmp, root / SIDECAR)
            fsync_dir(root)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def from_store(cls, store: IndexStore, root: Path) -> tuple["VectorIndex", str | None]:
        """Build the in-memory index from a store's rows, reusing the FAISS snapshot when it is
        current. Returns the index and why the snapshot was not used (None when it was)."""
        meta = store.meta()
        h = meta["hnsw"]
        index = cls(meta["dim"], meta["model"], meta["kind"], h["m"], h["ef_construction"], h["ef_search"],
                    fingerprint=meta.get("fingerprint"), hnsw_from=h.get("from", HNSW_FROM))
        store.check_structure()
        rows = list(store.rows())  # each row's digest is checked as it is read
        for row in rows:
            index._ids[row.label] = row.id
            index._labels[row.id] = row.label
            index.documents[row.id] = row.fields
        index.structure = index._structure_for(len(rows))
        index._next_label = max(store.next_label(), max(index._ids, default=-1) + 1)
        reason = index._read_snapshot(root, meta["seq"])
        if reason is not None:
            index._index = index._new_faiss()
            if rows:
                index._index.add_with_ids(np.stack([r.vector for r in rows]),
                                          np.asarray([r.label for r in rows], dtype=np.int64))
        return index, reason

    def _read_snapshot(self, root: Path, seq: int) -> str | None:
        """Load `faiss.index` if it reflects write `seq` and holds every live label; else say why not."""
        try:
            sidecar = json.loads((root / SIDECAR).read_text())
            if isinstance(sidecar.get("seq"), int) and sidecar["seq"] > seq:
                raise StoreDamagedError(
                    f"{root / DATABASE} holds writes up to {seq}, but {root / SIDECAR} reflects write "
                    f"{sidecar['seq']}: acknowledged writes are missing from the database (was it replaced by an "
                    "older copy, or its -wal file lost?); restore it, or run `searchr3 index repair` to accept the loss")
            if sidecar.get("seq") != seq or sidecar.get("count") != len(self) or sidecar.get("kind") != self.structure:
                return f"snapshot is stale (write {sidecar.get('seq')}, store at write {seq})"
            if file_digest(root / SNAPSHOT) != sidecar.get("digest"):
                return "snapshot file does not match its digest"
            loaded = faiss.read_index(str(root / SNAPSHOT))
        except StoreDamagedError:
            raise
        except FileNotFoundError:
            return "no snapshot"
        except (OSError, ValueError, RuntimeError) as e:
            return f"snapshot unreadable ({type(e).__name__}: {e})"
        held = set(faiss.vector_to_array(loaded.id_map).tolist()) if hasattr(loaded, "id_map") else set()
        live = set(self._ids)
        if loaded.d != self.dim or not live <= held or (self.structure == "flat" and held != live):
            return "snapshot does not hold the stored documents"
        self._index = loaded
        if self.structure == "hnsw":
            faiss.downcast_index(loaded.index).hnsw.efSearch = self.hnsw["ef_search"]
        self._deleted = held - live
        return None

    @classmethod
    def load(cls, path: str | os.PathLike, model: str | None = None,
             fingerprint: str | None = None) -> "VectorIndex":
        """Read an index folder (read-only; a folder in the old format is migrated first).

        With `model`, refuse an index built by another model (`check_model`).
        """
        root = Path(path)
        if not (root / DATABASE).is_file():
            if root.is_dir() and is_legacy(root):
                open_folder(root).close()  # migrates a format-1 folder
            else:
                open_folder(root, readonly=True)  # raises NotAnIndexError saying what the folder is not
        # Read-only only where the folder is: a read-write connection that writes nothing leaves no
        # WAL files behind, and never blocks a server writing the same folder.
        store = open_folder(root, readonly=not os.access(root, os.W_OK))
        try:
            if store.meta() is None:
                raise StoreError(f"{root}: an index folder that was never written")
            index, _ = cls.from_store(store, root)
        finally:
            store.close()
        if model is not None:
            index.check_model(model, fingerprint=fingerprint)
        return index


def file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
