"""The source of truth of an index folder: documents, vectors and model identity in one SQLite file.

Every write is one SQLite transaction, so an acknowledged write is a committed one and a write
that failed is rolled back and never comes back. The database runs in WAL mode with
`synchronous=FULL`: each commit is fsynced in the write-ahead log before it returns, which
survives `kill -9` and power loss, and readers (`searchr3 search`, `index check`) never block
the writer. The FAISS structure is derived from these rows (`index.py`) and may always be
rebuilt from them.

SQLite checks its own page structure but not what a page says, so every row (and the metadata)
carries a BLAKE2 digest of its contents: a changed letter in a stored document is found when the
store is verified, and reported with the ids it affects, instead of being served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import legacy

log = logging.getLogger(__name__)
DATABASE = "index.db"
FORMAT_VERSION = 2  # 1: snapshot folders named by a CURRENT file, plus journal.jsonl (see legacy.py)
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 1), body TEXT NOT NULL, digest BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    label INTEGER PRIMARY KEY AUTOINCREMENT,  -- the FAISS id; never reused, so HNSW tombstones stay unique
    id TEXT NOT NULL UNIQUE,
    fields TEXT NOT NULL,                     -- JSON object: title, text, ...
    vector BLOB NOT NULL,                     -- little-endian float32 x dim
    digest BLOB NOT NULL                      -- blake2b-16 of label, id, fields, vector
);
"""
SQLITE_FULL = 13


class StoreError(RuntimeError):
    """The store cannot be read or written; the message names the file and what is wrong."""


class StoreDamagedError(StoreError):
    """The database is damaged: opening it would lose or misreport acknowledged data."""


class NotAnIndexError(StoreError, FileNotFoundError):
    """The folder is missing, or holds something other than a searchr3 index."""


class StoreFullError(StoreError):
    """A write was refused because the disk is full; nothing of it was applied."""


@dataclass
class Row:
    label: int
    id: str
    fields: dict
    vector: np.ndarray


def _digest(*parts: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()


def row_digest(label: int, doc_id: str, fields: str, vector: bytes) -> bytes:
    return _digest(str(label).encode(), doc_id.encode("utf-8", "surrogatepass"), fields.encode("utf-8", "surrogatepass"),
                   vector)


def _encode_fields(fields: dict) -> str:
    return json.dumps(fields, ensure_ascii=False, sort_keys=True)


class IndexStore:
    """One `index.db` file: a metadata record and one row per document.

    Args:
        path: the database file.
        readonly: open without the right to write (checks and searches beside a running server).

    The metadata holds the format version, the model's name and weight fingerprint, the vector
    dimension, the FAISS kind with its HNSW settings, and `seq`, the number of the last
    committed write: the FAISS snapshot records the `seq` it reflects, so a stale snapshot is
    recognised and rebuilt.
    """

    def __init__(self, path: str | os.PathLike, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self.wrote = False  # a store that wrote checkpoints its log into the database file when closed
        if readonly and not self.path.is_file():
            raise NotAnIndexError(f"{self.path}: no such index database")
        try:
            uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
            self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            if not readonly:
                mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode != "wal":
                    raise StoreError(f"{self.path}: could not switch to WAL mode (got {mode!r})")
                self.conn.execute("PRAGMA synchronous=FULL")
                self.conn.executescript(SCHEMA)
            self.conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as e:
            raise self._error("cannot open", e) from e

    def _error(self, doing: str, e: sqlite3.Error) -> StoreError:
        code = getattr(e, "sqlite_errorcode", 0) & 0xFF
        if code == SQLITE_FULL:
            return StoreFullError(f"{self.path}: disk full; the write was not applied ({e})")
        if isinstance(e, sqlite3.DatabaseError) and ("malformed" in str(e) or "not a database" in str(e)):
            return StoreDamagedError(f"{self.path}: {doing}: the database file is damaged ({e})")
        return StoreError(f"{self.path}: {doing}: {e}")

    def close(self) -> None:
        try:
            if self.wrote:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # leave one self-contained file at rest
        except sqlite3.Error:
            pass  # the WAL stays and is replayed by the next open
        finally:
            self.conn.close()

    # ------------------------------------------------------------------ metadata
    def meta(self) -> dict | None:
        """The metadata record, or None for a new, empty store; a damaged record raises."""
        try:
            row = self.conn.execute("SELECT body, digest FROM meta WHERE id = 1").fetchone()
        except sqlite3.DatabaseError as e:
            raise self._error("reading the metadata", e) from e
        if row is None:
            return None
        body, digest = row
        if _digest(body.encode("utf-8")) != digest:
            raise StoreDamagedError(f"{self.path}: the metadata record is damaged (its digest does not match)")
        return json.loads(body)

    def _write_meta(self, meta: dict) -> None:
        body = json.dumps(meta, sort_keys=True)
        self.conn.execute("INSERT OR REPLACE INTO meta (id, body, digest) VALUES (1, ?, ?)",
                          (body, _digest(body.encode("utf-8"))))

    def initialise(self, meta: dict) -> None:
        """Write the metadata of a new store (format, model, fingerprint, dim, kind, hnsw); seq 0."""
        self.transaction(lambda: self._write_meta({**meta, "format": FORMAT_VERSION, "seq": 0}), bump=False)

    def update_meta(self, **changes) -> None:
        """Change metadata fields (e.g. a fingerprint learnt for an old index) in one transaction."""
        self.transaction(lambda: self._write_meta({**self.meta(), **changes}), bump=False)

    # ------------------------------------------------------------------ writes
    def transaction(self, body, bump: bool = True):
        """Run `body()` in one immediate transaction; with `bump`, the write also advances `seq`.

        Returns what `body` returns. Any failure rolls the whole transaction back and raises
        (`StoreFullError` when the disk is full), so nothing of a failed write is ever applied.
        """
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                result = body()
                if bump:
                    meta = self.meta()
                    self._write_meta({**meta, "seq": meta["seq"] + 1})
                self.conn.execute("COMMIT")
                self.wrote = True
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise self._error("write failed", e) from e
        self._checkpoint()
        return result

    def _checkpoint(self) -> None:
        """Move the committed write from the WAL into the database file and empty the WAL.

        The commit was already durable in the WAL. Emptying it before the write is acknowledged
        means that at rest, and after a crash, every acknowledged write lives in `index.db`
        alone, so damage to a leftover `-wal` file can cost only a write nobody was told of.
        A checkpoint that cannot run (a reader holds the WAL, a full disk) is retried next write.
        """
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, documents: Sequence[dict]) -> list[int]:
        """Replace or add rows in one transaction; returns the new rows' labels (fresh for every row)."""
        x = np.ascontiguousarray(vectors, dtype="<f4")

        def write() -> list[int]:
            self.conn.executemany("DELETE FROM documents WHERE id = ?", [(i,) for i in ids])
            labels = []
            for doc_id, vector, fields in zip(ids, x, documents):
                encoded = _encode_fields(dict(fields))
                cur = self.conn.execute("INSERT INTO documents (id, fields, vector, digest) VALUES (?, ?, ?, x'')",
                                        (doc_id, encoded, vector.tobytes()))
                label = cur.lastrowid
                self.conn.execute("UPDATE documents SET digest = ? WHERE label = ?",
                                  (row_digest(label, doc_id, encoded, vector.tobytes()), label))
                labels.append(label)
            return labels

        return self.transaction(write)

    def delete(self, ids: Sequence[str]) -> list[int]:
        """Delete rows by id in one transaction; returns the labels removed (unknown ids are skipped)."""
        def write() -> list[int]:
            labels = []
            for doc_id in ids:
                row = self.conn.execute("DELETE FROM documents WHERE id = ? RETURNING label", (doc_id,)).fetchone()
                if row:
                    labels.append(row[0])
            return labels

        return self.transaction(write)

    def replace_all(self, meta: dict, rows: Sequence[Row]) -> None:
        """Make the store hold exactly `rows` under `meta`, keeping their labels, in one transaction."""
        def write() -> None:
            self.conn.execute("DELETE FROM documents")
            for row in rows:
                vector = np.ascontiguousarray(row.vector, dtype="<f4").tobytes()
                encoded = _encode_fields(row.fields)
                self.conn.execute("INSERT INTO documents (label, id, fields, vector, digest) VALUES (?, ?, ?, ?, ?)",
                                  (row.label, row.id, encoded, vector, row_digest(row.label, row.id, encoded, vector)))
            old = self.meta()
            self._write_meta({**meta, "format": FORMAT_VERSION, "seq": (old["seq"] + 1) if old else 1})

        self.transaction(write, bump=False)

    # ------------------------------------------------------------------ reads
    def __len__(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]

    def next_label(self) -> int:
        """The label the next inserted row will get (labels are never reused)."""
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'documents'").fetchone()
        return (row[0] + 1) if row else 1

    def _select(self):
        return self.conn.execute("SELECT label, id, fields, vector, digest FROM documents ORDER BY label")

    def rows(self, verify: bool = True) -> Iterator[Row]:
        """Every row in label order. With `verify`, each row's digest is checked as it is read, and
        rows that fail are not yielded: once all are read, `StoreDamagedError` names them."""
        dim = self.meta()["dim"]
        bad = []
        try:
            for label, doc_id, fields, vector, digest in self._select():
                if verify and row_digest(label, doc_id, fields, vector) != digest:
                    bad.append(_bad_row(label, doc_id))
                    continue
                x = np.frombuffer(vector, dtype="<f4")
                if x.size != dim:
                    raise StoreDamagedError(f"{self.path}: document {doc_id!r} has {x.size} vector values, not {dim}")
                yield Row(label, doc_id, json.loads(fields), x.astype(np.float32))
        except sqlite3.DatabaseError as e:
            raise self._error("reading the documents", e) from e
        if bad:
            raise StoreDamagedError(self._summary(bad))

    def check_structure(self) -> None:
        """Raise `StoreDamagedError` if SQLite's integrity check or the metadata's digest fails (the
        rows' digests are checked as `rows` reads them)."""
        problems = self._structure()
        if problems:
            raise StoreDamagedError(self._summary(problems))

    def _summary(self, problems: list[str]) -> str:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        return f"{self.path} is damaged: {shown}. Run `searchr3 index check {self.path.parent}`"

    def _structure(self) -> list[str]:
        try:
            problems = [r[0] for r in self.conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
            self.meta()
        except (StoreDamagedError, sqlite3.DatabaseError) as e:
            return [str(e)]
        return problems

    def _bad_rows(self) -> list[tuple[int, str]]:
        """(label, id) of every row whose digest does not match its contents."""
        return [(label, doc_id) for label, doc_id, fields, vector, digest in self._select()
                if row_digest(label, doc_id, fields, vector) != digest]

    def damaged(self) -> list[str]:
        """Every problem found: SQLite's own integrity check and the metadata, then each row whose
        digest fails."""
        problems = self._structure()
        if not problems:
            try:
                problems = [_bad_row(label, doc_id) for label, doc_id in self._bad_rows()]
            except sqlite3.DatabaseError as e:
                problems = [str(e)]
        return problems

    def drop_damaged(self) -> list[str]:
        """Delete the rows whose digest fails (the operator's explicit choice); returns their ids."""
        bad = self._bad_rows()
        if bad:
            self.transaction(lambda: self.conn.executemany("DELETE FROM documents WHERE label = ?",
                                                           [(label,) for label, _ in bad]))
        return [doc_id for _, doc_id in bad]


def _bad_row(label: int, doc_id: str) -> str:
    return f"document {doc_id!r} (label {label}): contents do not match their digest"


# ---------------------------------------------------------------------- index folders
DERIVED = ("faiss.index", "faiss.json")  # rebuilt from the database whenever missing, stale or damaged
MIGRATED = "legacy-v1"  # where a migrated format-1 folder's files are kept


def _allowed(name: str) -> bool:
    return (name.startswith(DATABASE) or name in DERIVED or name == MIGRATED or name.endswith(".tmp")
            or name in legacy.NAMES or name.startswith("snapshot-"))


def open_folder(root: str | os.PathLike, readonly: bool = False) -> IndexStore:
    """The store of an index folder: opened, migrated from format 1, or created empty.

    A folder that holds other files is refused rather than written into. A format-1 folder is
    migrated in full or not at all: the new database is written beside it, fsynced and renamed
    into place, and only then are the old files moved into `legacy-v1/` (kept, not deleted).
    """
    root = Path(root)
    db = root / DATABASE
    if db.is_file():
        store = IndexStore(db, readonly=readonly)
        if not readonly and legacy.is_legacy(root):
            _put_aside(root)  # a migration that stopped after the rename
        _refuse_if_lost(root, store)
        return store
    if not root.is_dir() and readonly:
        raise NotAnIndexError(f"{root}: no such index folder")
    if root.is_dir():
        foreign = sorted(p.name for p in root.iterdir() if not _allowed(p.name))
        if foreign:
            raise NotAnIndexError(f"{root} exists but is not a searchr3 index (found {foreign[0]!r})")
        if legacy.is_legacy(root):
            if readonly:
                raise StoreError(f"{root} is in the old index format; open it once for writing to migrate it")
            return _migrate(root)
    _refuse_if_lost(root, None)
    if readonly:
        raise NotAnIndexError(f"{root} is not a searchr3 index (no {DATABASE})")
    root.mkdir(parents=True, exist_ok=True)
    store = IndexStore(db)
    fsync_dir(root)
    return store


def _refuse_if_lost(root: Path, store: IndexStore | None) -> None:
    """A missing or empty database beside a FAISS snapshot means the documents were lost: starting
    afresh would silently serve an empty index, so refuse and say what is left."""
    sidecar = root / DERIVED[1]
    if (store is None or store.meta() is None) and sidecar.is_file():
        if store is not None:
            store.close()
        raise StoreDamagedError(f"{root / DATABASE} is missing or empty, but {sidecar} records an index of "
                                f"{sidecar.read_text()[:200].strip()}: the documents are lost from the database. "
                                "Restore it from a backup; to start an empty index instead, delete the folder")


def _migrate(root: Path) -> IndexStore:
    old = legacy.read(root)  # raises, naming the file, before anything is written
    tmp = root / (DATABASE + ".tmp")
    for leftover in root.glob(DATABASE + ".tmp*"):
        leftover.unlink()
    try:
        store = IndexStore(tmp)
        rows = [Row(label, doc_id, old.documents.get(doc_id, {}), old.vectors[doc_id])
                for label, doc_id in enumerate(old.ids)]
        store.replace_all(old.meta, rows)
        store.close()
        os.replace(tmp, root / DATABASE)
        fsync_dir(root)
    except BaseException:
        for leftover in root.glob(DATABASE + ".tmp*"):
            leftover.unlink(missing_ok=True)
        raise
    _put_aside(root)
    log.warning("%s: migrated %d documents from the old index format (old files kept in %s/)",
                root, len(old.ids), MIGRATED)
    return IndexStore(root / DATABASE)


def _put_aside(root: Path) -> None:
    aside = root / MIGRATED
    aside.mkdir(exist_ok=True)
    for p in list(root.iterdir()):
        if p.name in legacy.NAMES or p.name.startswith("snapshot-"):
            os.replace(p, aside / p.name)
    fsync_dir(root)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FolderLock:
    """An exclusive lock on an index folder for one writer process.

    `flock` on the folder itself, not on a file inside it: the kernel drops it when the process
    dies (even by `kill -9`), and no file can be deleted to defeat it.
    """

    def __init__(self, root: Path):
        import fcntl

        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise StoreError(f"{root} is in use by another process (a running `searchr3 serve`?)") from None

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
