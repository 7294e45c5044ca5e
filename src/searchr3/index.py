"""A FAISS vector index with string ids, stored documents and atomic, model-tagged snapshots.

On disk an index is a folder holding snapshot sub-folders and a `CURRENT` file naming the
live one. `save` writes a new snapshot and then swaps `CURRENT` with one `os.replace`, so
a reader (or a crash) only ever sees the old or the new index, never a half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from . import assets

FORMAT_VERSION = 1
KINDS = ("flat", "hnsw")


class IndexMismatchError(ValueError):
    """The vectors or model given do not match the ones the index was built with."""


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class VectorIndex:
    """Inner-product search over L2-normalised vectors (so scores are cosines).

    Args:
        dim: vector dimension.
        model: name or path of the model that produced the vectors; stored and shown in errors.
        fingerprint: the model's weight fingerprint (`SearchR3.weights_fingerprint`); stored and
            checked, since a name (an alias, a retrained folder) can come to mean other weights.
        kind: "flat" (exact, the default) or "hnsw" (approximate, for large corpora).
        hnsw_m: HNSW graph degree M (FAISS default 32).
        ef_construction: HNSW build-time beam width.
        ef_search: HNSW query-time beam width; larger is more exact and slower.
    """

    def __init__(self, dim: int, model: str, kind: str = "flat", hnsw_m: int = 32,
                 ef_construction: int = 200, ef_search: int = 128, fingerprint: str | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}; use one of {', '.join(KINDS)}")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim, self.model, self.kind = int(dim), str(model), kind
        self.fingerprint = fingerprint
        self.hnsw = {"m": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search}
        self._index = self._new_faiss()
        self._ids: dict[int, str] = {}  # faiss label -> string id (live entries only)
        self._labels: dict[str, int] = {}  # string id -> faiss label
        self._deleted: set[int] = set()  # HNSW labels removed but still in the graph
        self._next_label = 0
        self.documents: dict[str, dict] = {}  # string id -> stored fields (title, text)

    def _new_faiss(self) -> faiss.Index:
        if self.kind == "flat":
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
            replace: bool = False) -> None:
        """Add vectors (n, dim) under string ids; with `replace`, existing ids are overwritten.

        `documents` (optional, one dict per id, e.g. title and text) are stored for display.
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
        self.remove(present)
        labels = np.arange(self._next_label, self._next_label + len(ids), dtype=np.int64)
        self._next_label += len(ids)
        self._index.add_with_ids(x, labels)
        for label, doc_id, k in zip(labels.tolist(), ids, range(len(ids))):
            self._ids[label] = doc_id
            self._labels[doc_id] = label
            if documents is not None:
                self.documents[doc_id] = dict(documents[k])

    def remove(self, ids: Sequence[str]) -> int:
        """Remove ids; returns how many were present. HNSW marks them deleted (rebuilt when many)."""
        labels = [self._labels.pop(str(i)) for i in ids if str(i) in self._labels]
        for label in labels:
            self.documents.pop(self._ids.pop(label), None)
        if not labels:
            return 0
        if self.kind == "flat":
            self._index.remove_ids(np.asarray(labels, dtype=np.int64))
        else:
            self._deleted.update(labels)
            if len(self._deleted) > 0.2 * max(len(self._ids), 1):
                self._rebuild()
        return len(labels)

    def _rebuild(self) -> None:
        """Re-create the FAISS structure from the live vectors (drops HNSW tombstones)."""
        labels = np.asarray(sorted(self._ids), dtype=np.int64)
        vectors = np.stack([self._index.reconstruct(int(x)) for x in labels]) if len(labels) else None
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
    def save(self, path: str | os.PathLike) -> Path:
        """Write a new snapshot under `path` and switch to it atomically; returns `path`."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        current = root / "CURRENT"
        previous = current.read_text().strip() if current.is_file() else None
        number = int(previous.split("-")[1]) + 1 if previous else 1
        snap = root / f"snapshot-{number:06d}"
        if snap.exists():
            shutil.rmtree(snap)
        snap.mkdir()
        faiss.write_index(self._index, str(snap / "index.faiss"))
        meta = {"format": FORMAT_VERSION, "model": self.model, "fingerprint": self.fingerprint,
                "dim": self.dim, "kind": self.kind,
                "metric": "inner_product", "count": len(self), "hnsw": self.hnsw,
                "next_label": self._next_label, "deleted": sorted(self._deleted),
                "labels": [[label, self._ids[label]] for label in sorted(self._ids)]}
        (snap / "meta.json").write_text(json.dumps(meta) + "\n")
        with open(snap / "documents.jsonl", "w", encoding="utf-8") as f:
            for doc_id in self.ids:
                if doc_id in self.documents:
                    f.write(json.dumps({"_id": doc_id, **self.documents[doc_id]}, ensure_ascii=False) + "\n")
        for name in ("index.faiss", "meta.json", "documents.jsonl"):
            fsync_file(snap / name)
        fsync_dir(snap)
        tmp = root / "CURRENT.tmp"
        tmp.write_text(snap.name + "\n")
        fsync_file(tmp)
        os.replace(tmp, current)
        fsync_dir(root)
        for old in root.glob("snapshot-*"):
            if old.name != snap.name:
                shutil.rmtree(old, ignore_errors=True)
        return root

    @classmethod
    def load(cls, path: str | os.PathLike, model: str | None = None,
             fingerprint: str | None = None) -> "VectorIndex":
        """Read the live snapshot of an index folder; with `model`, refuse an index built by another."""
        root = Path(path)
        current = root / "CURRENT"
        if not current.is_file():
            raise FileNotFoundError(f"{root} is not a searchr3 index (no CURRENT file)")
        snap = root / current.read_text().strip()
        meta = json.loads((snap / "meta.json").read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{snap}: index format {meta.get('format')} is not supported (need {FORMAT_VERSION})")
        h = meta["hnsw"]
        index = cls(meta["dim"], meta["model"], meta["kind"], h["m"], h["ef_construction"], h["ef_search"],
                    fingerprint=meta.get("fingerprint"))
        index._index = faiss.read_index(str(snap / "index.faiss"))
        if index.kind == "hnsw":
            faiss.downcast_index(index._index.index).hnsw.efSearch = h["ef_search"]
        index._next_label = meta["next_label"]
        index._deleted = set(meta["deleted"])
        for label, doc_id in meta["labels"]:
            index._ids[label] = doc_id
            index._labels[doc_id] = label
        with open(snap / "documents.jsonl", encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                index.documents[rec.pop("_id")] = rec
        if model is not None:
            index.check_model(model, fingerprint=fingerprint)
        return index
