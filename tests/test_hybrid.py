"""Hybrid search: fusion math, BM25, the library, CLI, eval and service entry points (tiny model)."""

import doctest
import importlib.util
import json
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

import searchr3.hybrid
from searchr3 import Document, build_index, search
from searchr3.baselines import BM25Retriever
from searchr3.cli import main
from searchr3.data import write_dataset
from searchr3.evaluate import evaluate_model
from searchr3.hybrid import HybridConfig, fuse, load_hybrid_config
from searchr3.index import VectorIndex
from searchr3.lexical import BM25Index
from searchr3.modeling import SearchR3
from searchr3.prompts import document_text
from searchr3.serve import Service, create_app
from searchr3.service_process import ServiceProcess

ROOT = Path(__file__).resolve().parents[1]
MARKERS = [f"zq{chr(97 + i) * 2}xv" for i in range(12)]  # one made-up word per document


def marked_docs() -> list[Document]:
    """Twelve documents alike but for one made-up word each, which only BM25 can tell apart."""
    return [Document(f"d{i:02d}", f"Note {i}", f"some common words about a topic and the marker {w}")
            for i, w in enumerate(MARKERS)]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    import searchr3.cache

    monkeypatch.setattr(searchr3.cache, "cache_dir", lambda: tmp_path / "cache")
    (tmp_path / "cache").mkdir()


# ---------------------------------------------------------------------------- fuse()
def test_rrf_by_hand():
    dense = {"a": 0.9, "b": 0.5, "c": 0.1}
    lexical = {"c": 7.0, "d": 3.0}
    got = fuse(dense, lexical, HybridConfig(method="rrf", weight=0.5, rrf_k=60))
    expected = {"a": 0.5 / 61, "b": 0.5 / 62, "c": 0.5 / 63 + 0.5 / 61, "d": 0.5 / 62}
    assert list(got) == ["c", "a", "b", "d"]  # b and d tie: ordered by id
    assert got == pytest.approx(expected, abs=1e-15)
    weighted = fuse(dense, lexical, HybridConfig(method="rrf", weight=0.7, rrf_k=0))
    assert weighted == pytest.approx({"a": 0.7, "b": 0.35, "c": 0.7 / 3 + 0.3, "d": 0.15})
    assert list(weighted) == ["a", "c", "b", "d"]


def test_score_fusion_by_hand():
    dense = {"a": 0.9, "b": 0.5, "c": 0.1}
    lexical = {"c": 7.0, "d": 3.0, "e": 1.0}
    got = fuse(dense, lexical, HybridConfig(method="score", weight=0.3))
    # dense min-max: a 1, b 0.5, c 0; lexical: c 1, d 1/3, e 0
    expected = {"a": 0.3, "b": 0.15, "c": 0.7, "d": 0.7 / 3, "e": 0.0}
    assert got == pytest.approx(expected) and list(got) == ["c", "a", "d", "b", "e"]
    # Equal scores on a side all scale to 1; a single candidate too.
    assert fuse({"x": 2.0, "y": 2.0}, {"y": 5.0}, HybridConfig(method="score")) == {"y": 1.0, "x": 0.5}


def test_rrf_ties_share_a_rank_and_input_order_does_not_matter():
    config = HybridConfig(method="rrf", rrf_k=0)
    got = fuse({"a": 1.0, "b": 0.5, "c": 0.5, "d": 0.1}, {}, config)
    assert got == {"a": 0.5, "b": 0.25, "c": 0.25, "d": 0.125}  # ranks 1, 2, 2, 4
    flipped = fuse({"d": 0.1, "c": 0.5, "b": 0.5, "a": 1.0}, {}, config)
    assert list(flipped.items()) == list(got.items())


def test_empty_sides_and_one_sided_documents():
    for method in ("rrf", "score"):
        config = HybridConfig(method=method, weight=0.5)
        assert fuse({}, {}, config) == {}
        only_dense = fuse({"a": 0.2, "b": 0.9}, {}, config)
        only_lexical = fuse({}, {"a": 0.2, "b": 0.9}, config)
        assert list(only_dense) == list(only_lexical) == ["b", "a"]
        assert only_dense == only_lexical  # equal weights: the sides are symmetric
    # weight 1: the lexical side adds nothing, so the dense order survives and lexical-only docs score 0
    assert fuse({"a": 0.2, "b": 0.9}, {"c": 5.0}, HybridConfig(method="rrf", weight=1.0)) == pytest.approx(
        {"b": 1 / 61, "a": 1 / 62, "c": 0.0})


def test_depth_cuts_each_side_before_fusing():
    dense = {f"d{i}": 1.0 - i / 10 for i in range(5)}
    got = fuse(dense, {"d4": 9.0}, HybridConfig(method="rrf", depth=2, rrf_k=0))
    assert got == {"d4": 0.5, "d0": 0.5, "d1": 0.25}  # d2, d3 were cut; d4 only came from BM25


def test_config_validation_and_loading(tmp_path):
    for bad in [dict(method="max"), dict(weight=1.5), dict(weight=-0.1), dict(depth=0), dict(rrf_k=-1)]:
        with pytest.raises(ValueError, match="hybrid"):
            HybridConfig(**bad)
    path = tmp_path / "h.yaml"
    path.write_text("hybrid:\n  method: score\n  weight: 0.7\n")
    assert load_hybrid_config(path) == HybridConfig(method="score", weight=0.7)
    assert load_hybrid_config(None) == HybridConfig() == load_hybrid_config(ROOT / "configs" / "hybrid.yaml")
    path.write_text("hybrid:\n  wieght: 0.7\n")
    with pytest.raises(ValueError, match="unknown key 'wieght'"):
        load_hybrid_config(path)
    assert doctest.testmod(searchr3.hybrid).failed == 0


# ---------------------------------------------------------------------------- BM25
def test_bm25_index_edge_cases_and_baseline_is_the_same_ranker():
    assert BM25Index([], []).search(["anything"], 5) == [{}]
    assert BM25Index(["a"], ["the of and"]).search(["the"], 5) == [{}]  # no indexable word at all
    docs = marked_docs()
    index = BM25Index([d.id for d in docs], [document_text(d.title, d.text) for d in docs])
    [full], [matched], [none] = index.search([MARKERS[3]], 5), index.search([MARKERS[3]], 5, True), \
        index.search(["the"], 5, True)
    assert next(iter(full)) == "d03" and len(full) == 5 and list(matched) == ["d03"] and none == {}
    run = BM25Retriever().retrieve(docs, {"q": MARKERS[3] + " topic"}, k=12).run
    assert run["q"] == index.search([MARKERS[3] + " topic"], 12)[0]


# ---------------------------------------------------------------------------- library
def _dense_rank(model, index, query, doc_id):
    hits = search(model, index, [query], k=len(index))[0].hits
    return [h.id for h in hits].index(doc_id) + 1


def test_hybrid_search_finds_what_only_bm25_ranks_first(tiny):
    docs = marked_docs()
    index = build_index(tiny, docs)
    ranks = {i: _dense_rank(tiny, index, w, f"d{i:02d}") for i, w in enumerate(MARKERS)}
    worst = max(ranks, key=ranks.get)
    target, query = f"d{worst:02d}", MARKERS[worst]
    assert ranks[worst] > 4  # the dense side alone buries it
    for config in (None, HybridConfig(method="score", weight=0.3)):
        [result] = search(tiny, index, [query], k=3, hybrid=True, hybrid_config=config)
        assert result.hits[0].id == target and len(result.hits) == 3
        assert result.hits[0].title == f"Note {worst}"
    # Hit scores are the fused scores; BM25 sees the query, the dense side may reason about it.
    dense = {h.id: h.score for h in search(tiny, index, [query], k=len(index))[0].hits}
    [lexical] = BM25Index([d.id for d in docs], [document_text(d.title, d.text) for d in docs]).search(
        [query], 100, matched_only=True)
    [result] = search(tiny, index, [query], k=5, hybrid=True)
    expected = list(fuse(dense, lexical).items())[:5]
    assert [(h.id, pytest.approx(h.score)) for h in result.hits] == [(d, s) for d, s in expected]
    [reasoned] = search(tiny, index, [query], k=2, reasoning=True, hybrid=True)
    assert reasoned.hits[0].id == target and isinstance(reasoned.trace, str)


def test_hybrid_needs_the_stored_texts(tiny):
    index = VectorIndex(tiny.dim, tiny.name)
    index.add(["x"], tiny.embed_documents(["a text"]))  # vectors only
    with pytest.raises(ValueError, match="stores none for 1 of its 1 documents"):
        search(tiny, index, ["a text"], hybrid=True)
    assert search(tiny, index, ["a text"])[0].hits[0].id == "x"  # dense search still works


# ---------------------------------------------------------------------------- CLI
def test_cli_search_hybrid(tiny_folder, tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n"
                              for d in marked_docs()))
    out = tmp_path / "ix"
    assert main(["index", "build", "--model", str(tiny_folder), "--corpus", str(corpus), "--out", str(out),
                 "--max-length", "48"]) == 0
    capsys.readouterr()
    config = tmp_path / "h.yaml"
    config.write_text("hybrid:\n  method: score\n  weight: 0.3\n")
    for extra in ([], ["--config", str(config)]):
        for word in MARKERS[:4]:
            assert main(["search", "--index", str(out), "-k", "2", "--json", "--hybrid", *extra, word]) == 0
            rec = json.loads(capsys.readouterr().out.strip())
            assert rec["hits"][0]["id"] == f"d{MARKERS.index(word):02d}" and len(rec["hits"]) == 2


# ---------------------------------------------------------------------------- eval
def _toy(folder):
    docs = marked_docs()
    queries = {f"q{i}": w for i, w in enumerate(MARKERS)}
    write_dataset(folder, docs, queries, {"test": {f"q{i}": {f"d{i:02d}": 1} for i in range(len(MARKERS))}},
                  compress=False)
    return folder


def test_eval_hybrid_reuses_the_dense_vectors_and_names_its_config(tiny_folder, tmp_path, monkeypatch):
    folder = _toy(tmp_path / "toy")
    dense = evaluate_model(str(tiny_folder), str(folder), dtype="fp32")
    encoded = []
    original = SearchR3.embed_documents
    monkeypatch.setattr(SearchR3, "embed_documents",
                        lambda self, texts, **kw: encoded.append(len(texts)) or original(self, texts, **kw))
    hybrid = evaluate_model(f"hybrid:{tiny_folder}", str(folder), dtype="fp32")
    assert encoded == []  # every corpus vector came from the cache the dense eval filled
    assert hybrid["model"]["spec"] == f"hybrid:{tiny_folder}"
    assert hybrid["model"]["name"] == f"hybrid:{dense['model']['name']}"
    assert hybrid["model"]["hybrid"] == {"method": "score", "weight": 0.5, "depth": 100, "rrf_k": 60}
    assert hybrid["model"]["fingerprint"] == dense["model"]["fingerprint"]
    ndcg = {name: r["modes"]["off"]["metrics"]["ndcg@10"] for name, r in [("dense", dense), ("hybrid", hybrid)]}
    assert ndcg["dense"] < ndcg["hybrid"]  # the random tiny model cannot find the markers; BM25 can
    rrf = evaluate_model(f"hybrid:{tiny_folder}", str(folder), dtype="fp32", hybrid_config=HybridConfig(method="rrf"))
    assert encoded == []
    assert rrf["modes"]["off"]["metrics"]["ndcg@10"] == 1.0  # by ranks, each marker's BM25 match comes first

    out, config = tmp_path / "h.json", tmp_path / "h.yaml"
    config.write_text("hybrid:\n  method: score\n  weight: 0.7\n")
    assert main(["eval", "--model", f"hybrid:{tiny_folder}", "--data", str(folder), "--dtype", "fp32",
                 "--config", str(config), "--output", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["model"]["hybrid"] == {"method": "score", "weight": 0.7, "depth": 100, "rrf_k": 60}
    assert main(["eval", "--model", "hybrid:bm25", "--data", str(folder)]) == 2


def _dev_script():
    spec = importlib.util.spec_from_file_location("hybrid_dev", ROOT / "benchmarks" / "hybrid_dev.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dev_grid_script_matches_the_eval_and_applies_the_rule(tiny_folder, tmp_path):
    folder = _toy(tmp_path / "toy")
    grid = _dev_script()
    record = grid.main(["--model", str(tiny_folder), "--data", str(folder), "--split", "test", "--dtype", "fp32",
                        "--output-dir", str(tmp_path / "out")])
    assert json.loads((tmp_path / "out" / "hybrid_dev.json").read_text()) == json.loads(json.dumps(record))
    assert "Chosen: rrf 0.5" in (tmp_path / "out" / "hybrid_dev.md").read_text()
    hybrid = [r for r in record["rows"] if r["system"] == "hybrid"]
    assert [(r["method"], r["weight"]) for r in hybrid] == grid.GRID
    current = HybridConfig()  # the eval's default: the setting the rule chose on the real dev split
    default = next(r for r in hybrid if (r["method"], r["weight"]) == (current.method, current.weight))
    evaluated = evaluate_model(f"hybrid:{tiny_folder}", str(folder), dtype="fp32")["modes"]["off"]["metrics"]
    assert default["ndcg@10"] == pytest.approx(evaluated["ndcg@10"])
    dense = next(r for r in record["rows"] if r["system"] == "dense")
    assert dense["ndcg@10"] == pytest.approx(evaluate_model(str(tiny_folder), str(folder), dtype="fp32")
                                             ["modes"]["off"]["metrics"]["ndcg@10"])


def test_dev_rule():
    choose, default = _dev_script().choose, ("rrf", 0.5)
    qids = [f"q{i}" for i in range(40)]
    base = {q: 0.5 for q in qids}
    assert choose({default: base, ("score", 0.3): base})[0] == default  # a tie keeps the default
    clear = {q: 0.6 for q in qids}  # +0.1 on every query
    assert choose({default: base, ("score", 0.7): clear})[0] == ("score", 0.7)
    small = {q: 0.505 for q in qids}  # significant, but below the 0.01 margin
    assert choose({default: base, ("rrf", 0.7): small})[0] == default
    noisy = {q: 0.5 + (0.3 if n % 2 else -0.28) for n, q in enumerate(qids)}  # +0.01 on average, p large
    assert choose({default: base, ("score", 0.5): noisy})[0] == default


# ---------------------------------------------------------------------------- service
DOCS = [{"_id": d.id, "title": d.title, "text": d.text} for d in marked_docs()[:6]]


def dense_scores(model, docs, query) -> dict[str, float]:
    texts = [document_text(d["title"], d["text"]) for d in docs]
    scores = (model.embed_queries([query]) @ model.embed_documents(texts).T)[0]
    return dict(sorted(zip([d["_id"] for d in docs], scores.tolist()), key=lambda x: -x[1]))


def expected_hits(model, docs, query, k, config=None):
    """What a hybrid search should return, computed without the service or `search`."""
    texts = [document_text(d["title"], d["text"]) for d in docs]
    [lexical] = BM25Index([d["_id"] for d in docs], texts).search([query], 100, matched_only=True)
    return list(fuse(dense_scores(model, docs, query), lexical, config).items())[:k]


def assert_hits(body, expected):
    assert [h["id"] for h in body["hits"]] == [d for d, _ in expected]
    np.testing.assert_allclose([h["score"] for h in body["hits"]], [s for _, s in expected], atol=1e-5)


def test_service_hybrid_follows_upserts_and_deletes(tiny, tmp_path):
    config = HybridConfig(method="score", weight=0.4)
    service = Service(tiny, tmp_path / "index", hybrid=config)
    try:
        with TestClient(create_app(service), base_url="http://localhost") as client:
            assert client.post("/v1/search", json={"query": MARKERS[1], "hybrid": True}).json()["hits"] == []
            client.post("/v1/documents", json={"documents": DOCS[:4]}).raise_for_status()
            body = client.post("/v1/search", json={"query": MARKERS[1], "k": 3, "hybrid": True}).json()
            assert_hits(body, expected_hits(tiny, DOCS[:4], MARKERS[1], 3, config))
            assert body["hits"][0]["id"] == "d01"
            # Move the marker to another document: BM25 must follow the upsert.
            moved = {"_id": "d03", "title": "Note 3", "text": f"now about {MARKERS[1]}"}
            client.post("/v1/documents", json={"documents": [moved]}).raise_for_status()
            client.delete("/v1/documents/d01").raise_for_status()
            docs = [DOCS[0], DOCS[2], moved]
            body = client.post("/v1/search", json={"query": MARKERS[1], "k": 3, "hybrid": True}).json()
            assert_hits(body, expected_hits(tiny, docs, MARKERS[1], 3, config))
            assert body["hits"][0]["id"] == "d03"
            dense = client.post("/v1/search", json={"query": MARKERS[1], "k": 3}).json()  # hybrid is opt-in
            assert_hits(dense, list(dense_scores(tiny, docs, MARKERS[1]).items())[:3])
            error = client.post("/v1/search", json={"query": "a", "hybrid": "maybe"})
            assert error.status_code == 422 and error.json()["error"]["param"] == "hybrid"
    finally:
        service.close()


def test_service_hybrid_survives_kill_9(tiny_folder, tiny, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    index = tmp_path / "index"
    # fp32 like the `tiny` fixture: score fusion (the default) carries the dense scores into the result
    server = ServiceProcess(tiny_folder, index, max_length=48, env=env, timeout=120, dtype="fp32")
    base = server.url
    ask = {"query": MARKERS[2], "k": 5, "hybrid": True}
    try:
        for doc in DOCS:  # one write per request: each committed to the database, none in a FAISS snapshot
            httpx.post(f"{base}/v1/documents", json={"documents": [doc]}, timeout=30).raise_for_status()
        first = httpx.post(f"{base}/v1/search", json=ask, timeout=30).json()
        assert first["hits"][0]["id"] == "d02"
        httpx.delete(f"{base}/v1/documents/d02", timeout=30).raise_for_status()
        moved = {"_id": "d05", "title": "Note 5", "text": f"now about {MARKERS[2]}"}
        httpx.post(f"{base}/v1/documents", json={"documents": [moved]}, timeout=30).raise_for_status()
        before = httpx.post(f"{base}/v1/search", json=ask, timeout=30).json()
    finally:
        server.kill()
    assert not (index / "faiss.json").exists()  # the writes were only in the database (and its WAL)
    docs = [d for d in DOCS if d["_id"] not in ("d02", "d05")] + [moved]
    expected = expected_hits(tiny, docs, MARKERS[2], 5)
    assert before["hits"][0]["id"] == "d05"
    with ServiceProcess(tiny_folder, index, port=server.port, max_length=48, env=env, timeout=120, dtype="fp32"):
        after = httpx.post(f"{base}/v1/search", json=ask, timeout=30).json()
    assert after == before
    assert_hits(after, expected)
