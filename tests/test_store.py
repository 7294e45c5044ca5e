"""The index folder's SQLite store: writes commit or vanish, damage is named, FAISS is derived, old folders migrate."""

import base64
import json
import logging
import random

import faiss
import numpy as np
import pytest

from searchr3.durable import DurableIndex
from searchr3.index import IndexMismatchError, VectorIndex
from searchr3.store import (DATABASE, IndexStore, NotAnIndexError, StoreDamagedError, StoreError, StoreFullError,
                            open_folder)


def vecs(n, dim=8, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_format_1(root, ids, vectors, documents, journal=b""):
    """A folder as searchr3 wrote it before SQLite: snapshot-000001/ named by CURRENT, plus a journal."""
    snap = root / "snapshot-000001"
    snap.mkdir(parents=True)
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    flat.add_with_ids(vectors, np.arange(len(ids), dtype=np.int64))
    faiss.write_index(flat, str(snap / "index.faiss"))
    meta = {"format": 1, "model": "m", "fingerprint": None, "dim": vectors.shape[1], "kind": "flat",
            "metric": "inner_product", "count": len(ids), "hnsw": {"m": 32, "ef_construction": 200, "ef_search": 128},
            "next_label": len(ids), "deleted": [], "labels": [[n, i] for n, i in enumerate(ids)]}
    (snap / "meta.json").write_text(json.dumps(meta))
    (snap / "documents.jsonl").write_text("".join(json.dumps({"_id": i, **d}) + "\n" for i, d in zip(ids, documents)))
    (root / "CURRENT").write_text("snapshot-000001\n")
    (root / "journal.jsonl").write_bytes(journal)


def journal_line(op, ids, vectors=None, documents=None):
    entry = {"op": op, "ids": ids}
    if op == "upsert":
        entry |= {"documents": documents, "vectors": base64.b64encode(vectors.astype("<f4").tobytes()).decode()}
    return (json.dumps(entry) + "\n").encode()


def test_committed_writes_survive_a_crash_and_the_faiss_snapshot_is_rebuilt(tmp_path, caplog):
    live = DurableIndex.open(tmp_path, "m", 8, snapshot_every=100)
    v = vecs(3)
    live.upsert(["a", "b", "c"], v, [{"text": t} for t in "abc"])
    live.delete(["b", "missing"])
    live.upsert(["a"], v[2:3], [{"text": "a2"}])
    live.close(snapshot=False)  # as after kill -9: the database holds the writes, the snapshot does not
    with caplog.at_level(logging.WARNING):
        again = DurableIndex.open(tmp_path, "m", 8)
    assert "FAISS index rebuilt from the database (no snapshot)" in caplog.text
    assert sorted(again.index.ids) == ["a", "c"]
    np.testing.assert_array_equal(again.index.vectors(["a"]), v[2:3])
    assert again.index.documents["a"] == {"text": "a2"}
    again.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        third = DurableIndex.open(tmp_path, "m", 8)  # the rebuilt snapshot is current: used as is
    assert caplog.text == "" and sorted(third.index.ids) == ["a", "c"]
    third.close()


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
@pytest.mark.parametrize("how", ["missing", "empty", "truncated", "flipped", "sidecar"])
def test_a_damaged_faiss_snapshot_is_rebuilt_with_the_same_results(tmp_path, kind, how, damage, caplog):
    live = DurableIndex.open(tmp_path, "m", 8, kind=kind)
    live.upsert([f"d{n}" for n in range(40)], vecs(40), [{"text": str(n)} for n in range(40)])
    live.delete(["d3", "d7"])
    query = vecs(2, seed=9)
    expected = live.index.search(query, 5)
    live.close()
    path = tmp_path / ("faiss.json" if how == "sidecar" else "faiss.index")
    damage(path, "flipped" if how == "sidecar" else how, random.Random(3))
    with caplog.at_level(logging.WARNING):
        again = DurableIndex.open(tmp_path, "m", 8, kind=kind)
    assert "FAISS index rebuilt from the database" in caplog.text
    scores, ids = again.index.search(query, 5)
    assert (ids == expected[1]).all() if kind == "flat" else len(set(ids[0]) & set(expected[1][0])) >= 4
    assert len(again) == 38
    again.close()


@pytest.mark.parametrize("where", ["text", "vector", "meta"])
def test_a_changed_byte_in_a_stored_row_is_named_not_served(tmp_path, where):
    live = DurableIndex.open(tmp_path, "m", 8)
    live.upsert(["a", "b"], vecs(2), [{"text": "alpha"}, {"text": "beta"}])
    live.close()
    db = IndexStore(tmp_path / DATABASE)  # tamper as a disk would: contents change, digests do not
    if where == "text":
        db.conn.execute("UPDATE documents SET fields = replace(fields, 'beta', 'beto')")
    elif where == "vector":
        db.conn.execute("UPDATE documents SET vector = zeroblob(32) WHERE id = 'a'")
    else:
        db.conn.execute("UPDATE meta SET body = replace(body, '\"dim\": 8', '\"dim\": 9')")
    db.close()
    with pytest.raises(StoreDamagedError, match="damaged: document 'b'" if where == "text" else
                       "damaged: document 'a'" if where == "vector" else "metadata record is damaged"):
        DurableIndex.open(tmp_path, "m", 8)
    problems = IndexStore(tmp_path / DATABASE, readonly=True).damaged()
    assert len(problems) == 1


def test_a_damaged_database_file_refuses_to_start_and_names_it(tmp_path):
    live = DurableIndex.open(tmp_path, "m", 8)
    live.upsert(["a"], vecs(1), [{"text": "alpha"}])
    live.close()
    (tmp_path / DATABASE).write_bytes(b"garbage" * 100)
    with pytest.raises(StoreDamagedError, match=f"{DATABASE}.*damaged"):
        DurableIndex.open(tmp_path, "m", 8)
    (tmp_path / DATABASE).write_bytes(b"")  # an empty file would be a new database: the snapshot says otherwise
    with pytest.raises(StoreDamagedError, match="missing or empty.*documents are lost"):
        DurableIndex.open(tmp_path, "m", 8)
    (tmp_path / DATABASE).unlink()
    with pytest.raises(StoreDamagedError, match="missing or empty"):
        VectorIndex.load(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faiss.index", "faiss.json"]  # nothing created


def test_a_database_older_than_its_snapshot_is_refused(tmp_path):
    live = DurableIndex.open(tmp_path, "m", 8)
    live.upsert(["a"], vecs(1), [{}])
    live.close()
    old = (tmp_path / DATABASE).read_bytes()
    live = DurableIndex.open(tmp_path, "m", 8)
    live.upsert(["b"], vecs(1, seed=1), [{}])
    live.close()
    (tmp_path / DATABASE).write_bytes(old)  # an older copy put back: write 2 is gone
    with pytest.raises(StoreDamagedError, match="holds writes up to 1.*reflects write 2"):
        DurableIndex.open(tmp_path, "m", 8)


def test_bad_writes_are_refused_before_anything_commits(tmp_path):
    live = DurableIndex.open(tmp_path, "m", 8, snapshot_every=2)
    live.upsert(["a"], vecs(1), [{}])
    seq = live.store.meta()["seq"]
    with pytest.raises(IndexMismatchError, match="shape"):
        live.upsert(["c"], vecs(1, dim=4), [{}])
    with pytest.raises(ValueError, match="twice"):
        live.upsert(["c", "c"], vecs(2), [{}, {}])
    assert live.store.meta()["seq"] == seq and len(live.store) == 1
    with pytest.raises(StoreError, match="in use by another process"):
        DurableIndex.open(tmp_path, "m", 8)
    (tmp_path / "LOCK").unlink(missing_ok=True)  # there is no lock file to delete: the lock is on the folder
    with pytest.raises(StoreError, match="in use by another process"):
        DurableIndex.open(tmp_path, "m", 8)
    live.close()
    with pytest.raises(IndexMismatchError, match="model"):
        DurableIndex.open(tmp_path, "other-model", 8)
    (tmp_path / "stray").mkdir()
    (tmp_path / "stray" / "x").write_text("")
    with pytest.raises(NotAnIndexError, match="not a searchr3 index"):
        DurableIndex.open(tmp_path / "stray", "m", 8)


def test_a_write_that_fails_to_commit_is_not_applied_and_later_writes_work(tmp_path, monkeypatch):
    live = DurableIndex.open(tmp_path, "m", 8)
    live.upsert(["a"], vecs(1), [{}])
    real = live.store._write_meta

    def full(meta):
        import sqlite3

        err = sqlite3.OperationalError("database or disk is full")
        err.sqlite_errorcode = 13
        raise err

    monkeypatch.setattr(live.store, "_write_meta", full)
    with pytest.raises(StoreFullError, match="disk full"):
        live.upsert(["b"], vecs(1, seed=1), [{}])
    monkeypatch.setattr(live.store, "_write_meta", real)
    assert "b" not in live.index and len(live.store) == 1  # rolled back, not applied
    live.upsert(["c"], vecs(1, seed=2), [{}])
    live.close(snapshot=False)
    assert sorted(DurableIndex.open(tmp_path, "m", 8).index.ids) == ["a", "c"]


def test_a_failed_snapshot_does_not_fail_the_write(tmp_path, monkeypatch, caplog):
    live = DurableIndex.open(tmp_path, "m", 8, snapshot_every=1)
    monkeypatch.setattr(faiss, "write_index", lambda *a: (_ for _ in ()).throw(RuntimeError("No space left")))
    with caplog.at_level(logging.WARNING):
        live.upsert(["a"], vecs(1), [{}])
    assert "FAISS snapshot failed (RuntimeError" in caplog.text and "a" in live.index
    assert not list(tmp_path.glob("*.tmp"))
    monkeypatch.undo()
    live.upsert(["b"], vecs(1, seed=1), [{}])
    live.close(snapshot=False)
    assert sorted(DurableIndex.open(tmp_path, "m", 8).index.ids) == ["a", "b"]


def test_an_old_format_folder_is_migrated_with_its_journal(tmp_path):
    v = vecs(4)
    journal = (journal_line("upsert", ["c"], v[2:3], [{"text": "C"}]) + journal_line("delete", ["a"])
               + journal_line("upsert", ["b"], v[3:4], [{"text": "B2"}]) + b'{"op": "upsert", "ids": ["torn"')
    write_format_1(tmp_path, ["a", "b"], v[:2], [{"text": "A"}, {"text": "B"}], journal)
    live = DurableIndex.open(tmp_path, "m", 8)
    assert live.index.ids == ["c", "b"] and live.index.documents["b"] == {"text": "B2"}
    np.testing.assert_array_equal(live.index.vectors(["b"]), v[3:4])
    live.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faiss.index", "faiss.json", "index.db", "legacy-v1"]
    assert sorted(p.name for p in (tmp_path / "legacy-v1").iterdir()) == ["CURRENT", "journal.jsonl",
                                                                         "snapshot-000001"]
    assert VectorIndex.load(tmp_path).ids == ["c", "b"]


@pytest.mark.parametrize("damage", ["no CURRENT", "damaged journal", "damaged meta"])
def test_an_old_format_folder_that_cannot_be_read_is_refused_and_left_untouched(tmp_path, damage):
    v = vecs(2)
    journal = journal_line("upsert", ["c"], v[:1], [{"text": "C"}])
    write_format_1(tmp_path, ["a", "b"], v, [{"text": "A"}, {"text": "B"}], journal)
    if damage == "no CURRENT":
        (tmp_path / "CURRENT").unlink()
        match = "CURRENT is missing.*snapshot-000001"
    elif damage == "damaged journal":
        (tmp_path / "journal.jsonl").write_bytes(journal.replace(b'"upsert"', b'"upsurt"') + journal)
        match = "journal.jsonl:1: damaged journal entry"
    else:
        (tmp_path / "snapshot-000001" / "meta.json").write_text("{")
        match = "snapshot-000001: the live snapshot cannot be read"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=match):
        DurableIndex.open(tmp_path, "m", 8)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing deleted or added


def test_labels_are_never_reused(tmp_path):
    live = DurableIndex.open(tmp_path, "m", 8, kind="hnsw")
    live.upsert(["a", "b"], vecs(2), [{}, {}])
    live.delete(["b"])
    live.upsert(["c"], vecs(1, seed=3), [{}])
    labels = [r.label for r in live.store.rows()]
    assert labels == sorted(set(labels)) and max(labels) == 3
    live.close()
    reopened = open_folder(tmp_path, readonly=True)
    assert [r.id for r in reopened.rows()] == ["a", "c"]
    reopened.close()


def test_index_check_and_repair_from_the_command_line(tmp_path, capsys):
    from searchr3.cli import main

    live = DurableIndex.open(tmp_path / "ix", "m", 8)
    live.upsert(["a", "b"], vecs(2), [{"text": "alpha"}, {"text": "beta"}])
    live.close()
    assert main(["index", "check", str(tmp_path / "ix")]) == 0
    assert "documents 2" in capsys.readouterr().out
    (tmp_path / "ix" / "faiss.index").write_bytes(b"cut")
    assert main(["index", "check", str(tmp_path / "ix")]) == 1
    assert "does not match its digest" in capsys.readouterr().out
    assert main(["index", "repair", str(tmp_path / "ix")]) == 0
    assert "rebuilt faiss.index from 2 documents" in capsys.readouterr().out
    assert main(["index", "check", str(tmp_path / "ix")]) == 0
    db = IndexStore(tmp_path / "ix" / DATABASE)
    db.conn.execute("UPDATE documents SET fields = replace(fields, 'beta', 'beto')")
    db.close()
    assert main(["index", "check", str(tmp_path / "ix")]) == 2
    assert "document 'b' (label 2): contents do not match" in capsys.readouterr().out
    assert main(["index", "repair", str(tmp_path / "ix")]) == 2
    assert "--drop-damaged" in capsys.readouterr().out
    assert main(["index", "repair", "--drop-damaged", str(tmp_path / "ix")]) == 0
    assert "deleted 1 damaged rows: 'b'" in capsys.readouterr().out
    assert main(["index", "check", str(tmp_path / "ix")]) == 0
    assert VectorIndex.load(tmp_path / "ix").ids == ["a"]
    assert main(["index", "check", str(tmp_path / "nothing")]) == 2
    assert "no such index folder" in capsys.readouterr().out
