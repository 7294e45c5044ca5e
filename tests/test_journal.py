"""The journaled index: acknowledged writes survive a crash; replay is idempotent; torn writes are cut."""

import numpy as np
import pytest

from searchr3.journal import JOURNAL, JournaledIndex


def vecs(n, dim=8, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_writes_replay_after_a_crash(tmp_path):
    live = JournaledIndex.open(tmp_path, "m", 8, compact_every=100)
    v = vecs(3)
    live.upsert(["a", "b", "c"], v, [{"text": t} for t in "abc"])
    live.delete(["b", "missing"])
    live.upsert(["a"], v[2:3], [{"text": "a2"}])
    live.close(snapshot=False)  # as after kill -9: only the empty snapshot and the journal are on disk
    again = JournaledIndex.open(tmp_path, "m", 8)
    assert sorted(again.index.ids) == ["a", "c"]
    np.testing.assert_array_equal(again.index.vectors(["a"]), v[2:3])
    assert again.index.documents["a"] == {"text": "a2"}
    assert (tmp_path / JOURNAL).stat().st_size == 0  # replayed into a snapshot and emptied


def test_replaying_over_a_snapshot_that_has_the_writes_is_harmless(tmp_path):
    live = JournaledIndex.open(tmp_path, "m", 8, compact_every=100)
    live.upsert(["a", "b"], vecs(2), [{}, {}])
    live.delete(["a"])
    journal = (tmp_path / JOURNAL).read_bytes()
    live.compact()  # a crash after the snapshot but before the journal was emptied:
    live.close(snapshot=False)
    (tmp_path / JOURNAL).write_bytes(journal)
    again = JournaledIndex.open(tmp_path, "m", 8)
    assert again.index.ids == ["b"]


def test_a_torn_last_line_is_dropped_and_later_writes_still_replay(tmp_path):
    live = JournaledIndex.open(tmp_path, "m", 8, compact_every=100)
    live.upsert(["a"], vecs(1), [{}])
    live.close(snapshot=False)
    with open(tmp_path / JOURNAL, "a") as f:
        f.write('{"op": "upsert", "ids": ["torn"')  # the crash came mid-write: never acknowledged
    again = JournaledIndex.open(tmp_path, "m", 8, compact_every=100)
    assert again.index.ids == ["a"]
    again.upsert(["b"], vecs(1, seed=1), [{}])
    again.close(snapshot=False)
    assert sorted(JournaledIndex.open(tmp_path, "m", 8).index.ids) == ["a", "b"]


def test_compaction_and_bad_writes(tmp_path):
    live = JournaledIndex.open(tmp_path, "m", 8, compact_every=2)
    live.upsert(["a"], vecs(1), [{}])
    live.upsert(["b"], vecs(1, seed=1), [{}])  # second write: snapshot, journal emptied
    assert (tmp_path / JOURNAL).stat().st_size == 0
    with pytest.raises(ValueError, match="shape"):
        live.upsert(["c"], vecs(1, dim=4), [{}])
    with pytest.raises(ValueError, match="twice"):
        live.upsert(["c", "c"], vecs(2), [{}, {}])
    assert (tmp_path / JOURNAL).stat().st_size == 0  # rejected writes are never journaled
    with pytest.raises(RuntimeError, match="in use by another process"):
        JournaledIndex.open(tmp_path, "m", 8)
    live.close()
    with pytest.raises(ValueError, match="model"):
        JournaledIndex.open(tmp_path, "other-model", 8)
    (tmp_path / "stray").mkdir()
    (tmp_path / "stray" / "x").write_text("")
    with pytest.raises(FileNotFoundError, match="not a searchr3 index"):
        JournaledIndex.open(tmp_path / "stray", "m", 8)


def test_a_torn_last_entry_with_its_newline_is_dropped_but_damage_before_it_raises(tmp_path):
    live = JournaledIndex.open(tmp_path, "m", 8, compact_every=100)
    live.upsert(["a"], vecs(1), [{}])
    live.close(snapshot=False)
    good = (tmp_path / JOURNAL).read_bytes()
    (tmp_path / JOURNAL).write_bytes(good + b"\x00" * 40 + b"\n")  # zero-filled page after a power cut
    again = JournaledIndex.open(tmp_path, "m", 8, compact_every=100)
    assert again.index.ids == ["a"]
    again.close(snapshot=False)
    (tmp_path / JOURNAL).write_bytes(b"not json\n" + good)
    with pytest.raises(ValueError, match=":1: damaged journal entry"):
        JournaledIndex.open(tmp_path, "m", 8)


def test_a_failed_append_leaves_the_journal_well_formed(tmp_path, monkeypatch):
    import os

    live = JournaledIndex.open(tmp_path, "m", 8, compact_every=100)
    live.upsert(["a"], vecs(1), [{}])
    real_fsync, calls = os.fsync, []

    def fsync_fails_once(fd):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_fails_once)
    with pytest.raises(OSError):
        live.upsert(["b"], vecs(1, seed=1), [{}])
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert "b" not in live.index  # the failed write was not applied ...
    live.upsert(["c"], vecs(1, seed=2), [{}])  # ... and the next one appends to a clean file
    live.close(snapshot=False)
    assert sorted(JournaledIndex.open(tmp_path, "m", 8).index.ids) == ["a", "c"]


def test_a_failed_snapshot_does_not_fail_the_write(tmp_path, monkeypatch):
    live = JournaledIndex.open(tmp_path, "m", 8, compact_every=1)
    monkeypatch.setattr(live.index, "save", lambda root: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.warns(UserWarning, match="snapshot failed"):
        live.upsert(["a"], vecs(1), [{}])
    assert "a" in live.index and (tmp_path / JOURNAL).stat().st_size > 0  # durable in the journal
    monkeypatch.undo()
    live.upsert(["b"], vecs(1, seed=1), [{}])  # the next write snapshots
    assert (tmp_path / JOURNAL).stat().st_size == 0
    live.close(snapshot=False)
    assert sorted(JournaledIndex.open(tmp_path, "m", 8).index.ids) == ["a", "b"]


def test_an_interrupted_first_save_is_not_a_foreign_folder(tmp_path):
    (tmp_path / "ix" / "snapshot-000001").mkdir(parents=True)  # crashed before CURRENT was written
    assert len(JournaledIndex.open(tmp_path / "ix", "m", 8)) == 0
