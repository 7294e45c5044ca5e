"""benchmarks/ann.py's parts that decide what its numbers mean: the expansion to 1M and recall."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ann():
    spec = importlib.util.spec_from_file_location("ann", ROOT / "benchmarks" / "ann.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cone(n: int, d: int = 96, seed: int = 0) -> np.ndarray:
    """Unit vectors crowded round one direction in a few clusters, as LLM embeddings are."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, d)) * 0.3 + 3.0 * np.eye(d)[0]
    x = centres[rng.integers(0, 8, n)] + 0.2 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_expand_keeps_the_real_vectors_and_stays_in_their_cone(ann):
    real = _cone(600)
    out, made = ann.expand(real, 3000, seed=1)
    assert out.shape == (3000, 96) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:600], real)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    mean = real.mean(axis=0) / np.linalg.norm(real.mean(axis=0))
    real_to_mean, new_to_mean = np.median(real @ mean), np.median(out[600:] @ mean)
    assert abs(new_to_mean - real_to_mean) < 0.05
    assert 0 < made["neighbour_distance_p50"] < 2
    again, _ = ann.expand(real, 3000, seed=1)
    np.testing.assert_array_equal(out, again)  # seeded: both models' runs expand alike


def test_recall_counts_shared_ids(ann):
    truth = np.arange(20).reshape(2, 10)
    found = truth.copy()
    found[1, :5] = -1
    assert ann.recall(found, truth) == pytest.approx(0.75)


def test_bench_size_measures_exact_search_as_recall_one(ann):
    base, queries = _cone(2000), _cone(50, seed=3)
    rows = ann.bench_size(base, queries, [(16, 40)], ivf=True, pq_bytes=8)  # PQ96 trains for minutes
    flat = [r for r in rows if r["index"] == "flat"]
    assert len(flat) == 1 and flat[0]["recall@10"] >= 0.99  # one query at a time against the batch: ties aside, equal
    assert {r["index"] for r in rows} == {"flat", "hnsw", "ivf-flat", "ivf-pq"}
    hnsw = [r for r in rows if r["index"] == "hnsw"]
    assert [r["efSearch"] for r in hnsw] == [16, 32, 64, 128, 256, 512]
    assert hnsw[-1]["recall@10"] >= hnsw[0]["recall@10"] and hnsw[-1]["recall@10"] > 0.9
    ivf = [r for r in rows if r["index"] == "ivf-flat"]
    assert ivf[-1]["recall@10"] >= ivf[0]["recall@10"] and ivf[-1]["recall@10"] > 0.9  # more lists probed, nearer exact
    assert all(r["n"] == 2000 for r in rows)
    pq, flat_ivf = (next(r for r in rows if r["index"] == i) for i in ("ivf-pq", "ivf-flat"))
    assert pq["memory_mb"] < flat_ivf["memory_mb"] / 2  # 8-byte codes against 384-byte vectors
    assert ann.best(rows, "hnsw", target=0.9)["efSearch"] <= 512
