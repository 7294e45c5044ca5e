"""The vector index: search, remove, round trip, atomic save, mismatch refusal."""

import numpy as np
import pytest

from searchr3 import IndexMismatchError, VectorIndex


def _vectors(n, dim=16, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_search_remove_round_trip(kind, tmp_path):
    x = _vectors(300)
    ids = [f"doc-{i}" for i in range(300)]
    index = VectorIndex(16, "model-a", kind)
    index.add(ids, x, [{"title": f"T{i}", "text": f"text {i}"} for i in range(300)])
    scores, hits = index.search(x[:5], k=4)
    assert scores.shape == hits.shape == (5, 4) and scores.dtype == np.float32
    assert list(hits[:, 0]) == ids[:5]
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first

    assert index.remove(["doc-0", "doc-1", "missing"]) == 2
    assert len(index) == 298 and "doc-0" not in index and "doc-0" not in index.documents
    _, hits = index.search(x[:2], k=10)
    assert "doc-0" not in hits[0] and "doc-1" not in hits[1]

    index.save(tmp_path / "ix")
    loaded = VectorIndex.load(tmp_path / "ix", model="model-a")
    assert (loaded.kind, loaded.dim, len(loaded)) == (kind, 16, 298)
    s2, h2 = loaded.search(x[:5], k=4)
    np.testing.assert_array_equal(h2, index.search(x[:5], k=4)[1])
    assert loaded.documents["doc-7"] == {"title": "T7", "text": "text 7"}
    np.testing.assert_allclose(loaded.vectors(["doc-9"]), x[9:10], atol=1e-6)


def test_fewer_hits_than_k_use_sentinels():
    index = VectorIndex(16, "m")
    index.add(["a", "b"], _vectors(2))
    scores, ids = index.search(_vectors(1, seed=1), k=5)
    assert list(ids[0, 2:]) == [None, None, None] and np.isneginf(scores[0, 2:]).all()
    assert index.search(np.zeros((0, 16), np.float32), k=3)[0].shape == (0, 3)


def test_hnsw_many_removals_rebuild_and_stay_correct():
    x = _vectors(200)
    index = VectorIndex(16, "m", "hnsw")
    index.add([str(i) for i in range(200)], x)
    index.remove([str(i) for i in range(100)])  # > 20% deleted: graph rebuilt from live vectors
    assert len(index) == 100
    _, hits = index.search(x[100:110], k=1)
    assert list(hits[:, 0]) == [str(i) for i in range(100, 110)]


def test_add_rejects_duplicates_unless_replace():
    index = VectorIndex(16, "m")
    x = _vectors(3)
    index.add(["a", "b", "c"], x)
    with pytest.raises(ValueError, match="'b' is already in the index"):
        index.add(["b"], x[:1])
    with pytest.raises(ValueError, match="appears twice"):
        index.add(["z", "z"], x[:2])
    index.add(["b"], x[:1], replace=True)
    assert len(index) == 3 and index.search(x[:1], k=2)[1][0, 0] in {"a", "b"}
    np.testing.assert_allclose(index.vectors(["b"]), x[:1])


def test_mismatch_refused_with_clear_errors(tmp_path):
    index = VectorIndex(576, "smollm2-135m-instruct")
    with pytest.raises(IndexMismatchError, match=r"index has dim 576, vectors have 1536 \(model smollm2"):
        index.add(["a"], np.ones((1, 1536), np.float32))
    with pytest.raises(IndexMismatchError, match="must be 2-D"):
        index.search(np.ones(576, np.float32))
    with pytest.raises(IndexMismatchError, match="floating point"):
        index.add(["a"], np.ones((1, 576), np.int64))
    index.save(tmp_path / "ix")
    with pytest.raises(IndexMismatchError, match="built with model 'smollm2-135m-instruct', not 'other'"):
        VectorIndex.load(tmp_path / "ix", model="other")
    with pytest.raises(IndexMismatchError, match="dim 576, model 'smollm2-135m-instruct' has 64"):
        index.check_model("smollm2-135m-instruct", 64)
    with pytest.raises(FileNotFoundError, match="not a searchr3 index"):
        VectorIndex.load(tmp_path)
    with pytest.raises(ValueError, match="unknown index kind"):
        VectorIndex(8, "m", "ivf")


def test_save_replaces_what_the_folder_held(tmp_path):
    root = tmp_path / "ix"
    index = VectorIndex(16, "m")
    index.add(["a", "b"], _vectors(2), [{"text": "A"}, {"text": "B"}])
    index.save(root)
    other = VectorIndex(16, "m")
    other.add(["c"], _vectors(1, seed=2), [{"text": "C"}])
    other.save(root)
    again = VectorIndex.load(root)
    assert again.ids == ["c"] and again.documents == {"c": {"text": "C"}}
    assert sorted(p.name for p in root.iterdir()) == ["faiss.index", "faiss.json", "index.db"]




def test_auto_is_exact_until_hnsw_from_then_a_graph_that_survives_save_and_load(tmp_path):
    x = _vectors(120)
    ids = [str(i) for i in range(120)]
    index = VectorIndex(16, "m", "auto", hnsw_from=100)
    index.add(ids[:99], x[:99])
    assert index.structure == "flat"
    exact = index.search(x[:99], k=5)
    index.add(ids[99:], x[99:])  # crosses hnsw_from: rebuilt as a graph holding every vector
    assert index.structure == "hnsw" and len(index) == 120
    _, hits = index.search(x, k=1)
    assert list(hits[:, 0]) == ids
    index.remove(ids[:30])  # a graph stays a graph while the process lives, whatever the size
    assert index.structure == "hnsw" and "0" not in index.search(x[:1], k=10)[1][0]

    index.save(tmp_path / "ix")
    loaded = VectorIndex.load(tmp_path / "ix")
    assert (loaded.kind, loaded.structure, loaded.hnsw["from"]) == ("auto", "flat", 100)  # 90 < 100: exact again
    _, hits = loaded.search(x[30:], k=1)
    assert list(hits[:, 0]) == ids[30:]
    small = VectorIndex(16, "m", "auto", hnsw_from=100)
    small.add(ids[:99], x[:99])
    np.testing.assert_array_equal(small.search(x[:99], k=5)[1], exact[1])


def test_auto_reuses_its_graph_snapshot_when_still_large(tmp_path, caplog):
    import logging

    from searchr3.durable import DurableIndex

    x = _vectors(60)
    index = VectorIndex(16, "m", "auto", hnsw_from=50)
    index.add([str(i) for i in range(60)], x)
    index.save(tmp_path / "ix")
    with caplog.at_level(logging.WARNING):
        live = DurableIndex.open(tmp_path / "ix", "m", 16, kind="flat")  # kind applies to a new folder only
    assert caplog.text == ""  # the saved graph matched: no rebuild
    assert (live.index.kind, live.index.structure, live.index.hnsw["from"]) == ("auto", "hnsw", 50)
    live.upsert(["new"], _vectors(1, seed=5), [{"text": "n"}])
    assert live.index.search(_vectors(1, seed=5), k=1)[1][0, 0] == "new"
    live.close()
