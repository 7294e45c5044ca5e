"""`searchr3 index check` and `searchr3 index repair`: is an index folder whole, and rebuild what is derived.

The database is the source of truth; the FAISS snapshot is derived from it. `check` reads both
(beside a running server, too) and sorts what it finds by what can fix it: derived state that is
missing, stale or damaged (`repair` rebuilds it), or damage to the database itself (documents
are at risk: restore a backup, or let `repair --drop-damaged` delete the damaged rows).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .index import SIDECAR, SNAPSHOT, VectorIndex
from .store import FolderLock, StoreDamagedError, StoreError, open_folder

HEALTHY, DERIVED_DAMAGED, DATABASE_DAMAGED = 0, 1, 2  # exit codes


@dataclass
class CheckReport:
    folder: Path
    facts: dict = field(default_factory=dict)  # model, fingerprint, dim, kind, documents, write
    derived: list[str] = field(default_factory=list)  # problems `repair` fixes
    damaged: list[str] = field(default_factory=list)  # problems with the database itself
    notes: list[str] = field(default_factory=list)  # worth knowing, not wrong

    @property
    def status(self) -> int:
        return DATABASE_DAMAGED if self.damaged else DERIVED_DAMAGED if self.derived else HEALTHY

    def lines(self) -> list[str]:
        out = [f"{self.folder}: " + ", ".join(f"{k} {v}" for k, v in self.facts.items())]
        out += [f"DAMAGED  {p}" for p in self.damaged] + [f"STALE    {p}" for p in self.derived]
        out += [f"note     {p}" for p in self.notes]
        verdict = {HEALTHY: "ok", DERIVED_DAMAGED: "derived state needs `searchr3 index repair`",
                   DATABASE_DAMAGED: "the database is damaged: restore it from a backup, or "
                                     "`searchr3 index repair --drop-damaged` to delete the damaged rows"}
        return out + [verdict[self.status]]


def check(folder: str | os.PathLike) -> CheckReport:
    """Compare documents, vectors, FAISS snapshot and model identity; never writes."""
    root = Path(folder)
    report = CheckReport(root)
    try:
        store = open_folder(root, readonly=True)
    except StoreError as e:
        report.damaged.append(str(e))
        return report
    try:
        report.damaged += store.damaged()
        if report.damaged:
            return report
        meta = store.meta()
        if meta is None:
            report.notes.append("an empty index that was never written")
            return report
        report.facts = {"model": meta["model"], "weights": meta.get("fingerprint"), "dim": meta["dim"],
                        "kind": meta["kind"], "documents": len(store), "write": meta["seq"]}
        if meta.get("fingerprint") is None:
            report.notes.append("no weight fingerprint recorded: the model is checked by name only")
        _check_snapshot(root, store, meta, report)
    finally:
        store.close()
    return report


def _check_snapshot(root: Path, store, meta: dict, report: CheckReport) -> None:
    try:
        sidecar = json.loads((root / SIDECAR).read_text())
    except FileNotFoundError:
        if len(store):
            report.derived.append(f"no FAISS snapshot ({SIDECAR} is missing)")
        return
    except (OSError, ValueError) as e:
        report.derived.append(f"{SIDECAR} is unreadable ({e})")
        return
    try:
        index, reason = VectorIndex.from_store(store, root)
    except StoreDamagedError as e:  # the snapshot is newer than the database
        report.damaged.append(str(e))
        return
    if reason is not None:
        report.derived.append(f"{SNAPSHOT}: {reason}")
        return
    rows = list(store.rows(verify=False))
    if rows:
        held = index.vectors([r.id for r in rows])
        worst = float(np.abs(held - np.stack([r.vector for r in rows])).max())
        if worst > 0:
            report.derived.append(f"{SNAPSHOT}: vectors differ from the database's (max |diff| {worst:.3g})")
    report.facts["snapshot"] = f"write {sidecar['seq']}"


def repair(folder: str | os.PathLike, drop_damaged: bool = False) -> tuple[int, list[str]]:
    """Rebuild the FAISS snapshot from the database; returns (exit code, what was done).

    Takes the folder's lock, so it refuses to run beside a server. Damaged database rows are
    deleted only with `drop_damaged` (the operator accepts losing them); otherwise such a folder
    is left as it is and reported.
    """
    root = Path(folder)
    done: list[str] = []
    lock = FolderLock(root)
    try:
        store = open_folder(root)
        try:
            if store.meta() is None:
                return HEALTHY, ["an empty index: nothing to repair"]
            problems = store.damaged()
            if problems:
                only_rows = all(p.startswith("document ") for p in problems)  # not the file's structure
                if not (drop_damaged and only_rows):
                    hint = ", or pass --drop-damaged to delete these rows" if only_rows else ""
                    return DATABASE_DAMAGED, problems + [f"not repaired: restore the database from a backup{hint}"]
                dropped = store.drop_damaged()
                done.append(f"deleted {len(dropped)} damaged rows: {', '.join(map(repr, dropped[:20]))}")
            for name in (SIDECAR, SNAPSHOT):
                (root / name).unlink(missing_ok=True)  # derived: rebuilt below, including a too-new snapshot
            index, _ = VectorIndex.from_store(store, root)
            index.write_snapshot(root, store.meta()["seq"])
            done.append(f"rebuilt {SNAPSHOT} from {len(index)} documents (write {store.meta()['seq']})")
        finally:
            store.close()
    finally:
        lock.release()
    return HEALTHY, done
