"""Read an index folder in the first on-disk format, to migrate it into SQLite (`store.py`).

Format 1 kept snapshot folders (`snapshot-N/`: `index.faiss`, `meta.json`, `documents.jsonl`),
a `CURRENT` file naming the live one, and `journal.jsonl`, the writes since that snapshot. This
module only reads it: it never deletes a snapshot, and a folder it cannot read completely is
refused with the file and the reason, so a migration either carries every acknowledged write
or does not happen.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

JOURNAL = "journal.jsonl"
CURRENT = "CURRENT"
NAMES = (JOURNAL, CURRENT, "CURRENT.tmp", "LOCK")  # besides snapshot-* folders
log = logging.getLogger(__name__)


def is_legacy(root: Path) -> bool:
    """Whether `root` holds anything of the first format."""
    return any((root / name).exists() for name in (JOURNAL, CURRENT)) or any(root.glob("snapshot-*"))


@dataclass
class LegacyIndex:
    meta: dict
    ids: list[str] = field(default_factory=list)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    documents: dict[str, dict] = field(default_factory=dict)


def read(root: Path) -> LegacyIndex:
    """The live snapshot of a format-1 folder with its journal replayed; ValueError names any damage."""
    current = root / CURRENT
    snapshots = sorted(p.name for p in root.glob("snapshot-*"))
    if not current.is_file():
        if snapshots:
            raise ValueError(f"{current} is missing, so which of {', '.join(snapshots)} is live is unknown; "
                             f"nothing was changed. Write the live snapshot's name into {current} and start again")
        raise ValueError(f"{root}: a journal without a snapshot ({CURRENT} missing); nothing was changed")
    import faiss

    snap = root / current.read_text(encoding="utf-8", errors="replace").strip()
    try:
        meta = json.loads((snap / "meta.json").read_text(encoding="utf-8"))
        index = faiss.read_index(str(snap / "index.faiss"))
        labels = {int(label): doc_id for label, doc_id in meta["labels"]}
        out = LegacyIndex(meta={k: meta[k] for k in ("model", "fingerprint", "dim", "kind", "hnsw")})
        for label, doc_id in labels.items():
            out.vectors[doc_id] = index.reconstruct(label)
        with open(snap / "documents.jsonl", encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                out.documents[rec.pop("_id")] = rec
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise ValueError(f"{snap}: the live snapshot cannot be read ({type(e).__name__}: {e}); nothing was changed") from e
    _replay(root / JOURNAL, out)
    out.ids = list(out.vectors)
    return out


def _replay(path: Path, index: LegacyIndex) -> None:
    """Apply the journal's entries. A write that crashed before it was acknowledged leaves a last
    line without its newline, or zero bytes (pages a power cut left unwritten): those are dropped,
    with a log line. Any other unreadable line is damage and refuses the migration."""
    if not path.is_file():
        return
    lines = path.read_bytes().split(b"\n")
    complete = lines[:-1]  # the part after the last newline was never acknowledged
    dim = index.meta["dim"]
    for n, raw in enumerate(complete):
        try:
            entry = json.loads(raw)
            ids = [str(i) for i in entry["ids"]]
            if entry["op"] == "upsert":
                x = np.frombuffer(base64.b64decode(entry["vectors"]), dtype="<f4").reshape(-1, dim)
                for doc_id, vector, doc in zip(ids, x, entry["documents"], strict=True):
                    index.vectors.pop(doc_id, None)  # a replaced id moves to the end, as it did in the index
                    index.vectors[doc_id] = vector.astype(np.float32)
                    index.documents[doc_id] = dict(doc)
            elif entry["op"] == "delete":
                for doc_id in ids:
                    index.vectors.pop(doc_id, None)
                    index.documents.pop(doc_id, None)
            else:
                raise ValueError(f"unknown operation {entry['op']!r}")
        except (ValueError, KeyError, TypeError) as e:
            if n == len(complete) - 1 and b"\x00" in raw:
                log.warning("%s:%d: dropping a torn last entry (zero bytes: a write that was never acknowledged)",
                            path, n + 1)
                break
            raise ValueError(f"{path}:{n + 1}: damaged journal entry ({type(e).__name__}: {e}); "
                             "nothing was changed") from e
