"""Datasets, the evaluator, the results JSON, the reasoning cache, reports and the CLI."""

import json
import warnings

import numpy as np
import pytest
import torch

from searchr3 import DataError
from searchr3.baselines import BM25Retriever, SearchR3Retriever
from searchr3.cli import main
from searchr3.data import Document, load_dataset, split_folder, write_dataset
from searchr3.evaluate import RetrievalEvaluator, evaluate_model, markdown_table


def _toy(folder, extra_qrels=""):
    corpus = [Document("d1", "Apples", "apples are red fruit"), Document("d2", "Bananas", "bananas are yellow"),
              Document("d3", "Cars", "cars drive on roads"), Document("q3", "Self", "query three is also a doc")]
    queries = {"q1": "red fruit", "q2": "yellow banana", "q3": "roads for cars"}
    write_dataset(folder, corpus, queries, {"test": {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}},
                                            "train": {"q1": {"d1": 1}}}, compress=False)
    if extra_qrels:
        with open(folder / "qrels" / "test.tsv", "a") as f:
            f.write(extra_qrels)
    return folder


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    import searchr3.cache

    monkeypatch.setattr(searchr3.cache, "cache_dir", lambda: tmp_path / "cache")
    (tmp_path / "cache").mkdir()


def test_load_dataset_validates_qrels(tmp_path):
    folder = _toy(tmp_path / "toy", extra_qrels="q1\tdoc-9\t1\nq-x\td1\t1\n")
    with pytest.raises(DataError, match=r"qrels/test.tsv:5: unknown corpus-id 'doc-9'"):
        load_dataset(folder)
    with pytest.warns(UserWarning, match="skipped 2 invalid rows"):
        ds = load_dataset(folder, skip_invalid=True)
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}} and len(ds.skipped) == 2
    assert load_dataset(folder, "train").queries == {"q1": "red fruit"}
    with pytest.raises(FileNotFoundError, match="no split 'dev' .available: test, train"):
        load_dataset(folder, "dev")


def test_split_in_subfolder_and_bundled_dev():
    ds = load_dataset("birco-wtb", "dev")
    assert ds.path == split_folder(ds.path.parent, "dev") and len(ds.queries) == 57 and len(ds.corpus) == 2404


def test_wiki_build_has_disjoint_splits(tmp_path):
    from searchr3.wiki import build

    records = {f"T{i}": {"title": f"Title {i}", "extract": f"Text about thing {i}.", "description": f"thing number {i}"}
               for i in range(300)}
    records["dup1"] = {"title": "Dup A", "extract": "a", "description": "shared words"}
    records["dup2"] = {"title": "Dup B", "extract": "b", "description": "Shared words"}
    records["short"] = {"title": "Short", "extract": "c", "description": "single"}
    source = tmp_path / "summaries.json"
    source.write_text(json.dumps(records))
    summary = build(source, tmp_path / "wiki")
    assert summary["docs"] == 303 and sum(summary["queries"].values()) == 300
    splits = {s: load_dataset(tmp_path / "wiki", s) for s in ("train", "dev", "test")}
    targets = {s: {d for q in ds.qrels.values() for d in q} for s, ds in splits.items()}
    assert not targets["train"] & targets["test"] and not targets["dev"] & targets["test"]
    assert all(len(ds.corpus) == 303 for ds in splits.values())
    assert 10 < summary["queries"]["test"] < 60


def test_evaluator_ignores_identical_ids_and_samples(tmp_path):
    ds = load_dataset(_toy(tmp_path / "toy"))
    evaluator = RetrievalEvaluator(ds)
    retrieval, scores = evaluator.run(BM25Retriever())
    assert "q3" not in retrieval.run["q3"]  # the query's own document is never a hit
    assert scores["q1"]["ndcg@10"] == 1.0 and evaluator.primary_metric == "ndcg@10"
    a, b = RetrievalEvaluator(ds, max_queries=2), RetrievalEvaluator(ds, max_queries=2)
    assert a.query_ids == b.query_ids and len(a.query_ids) == 2
    assert set(evaluator(BM25Retriever())) >= {"ndcg@10", "recall@100", "mrr@10"}


def test_evaluate_model_record_and_reasoning_cache(tiny_folder, tmp_path):
    folder = _toy(tmp_path / "toy")
    record = evaluate_model(str(tiny_folder), str(folder), reasoning="both", dtype="fp32")
    assert set(record["modes"]) == {"off", "on"}
    on = record["modes"]["on"]
    assert set(on["metrics"]) >= {"ndcg@10", "recall@10", "recall@100", "mrr@10"}
    assert set(on["per_query"]) == {"q1", "q2", "q3"}
    assert set(on["traces"]["q1"]) == {"trace", "forced", "stop", "tokens"}
    stats = on["reasoning"]  # how the traces ended, for the readiness check
    assert stats["queries"] == 3 and stats["own_token"] + stats["eos"] + stats["budget"] == pytest.approx(1.0)
    assert stats["mean_tokens"] == pytest.approx(sum(t["tokens"] for t in on["traces"].values()) / 3)
    assert "reasoning" not in record["modes"]["off"]
    adaptive = on["adaptive"]  # where the model reasoned and what it gained there
    assert adaptive["queries"] == 3 and 0 <= adaptive["reasoned_share"] <= 1
    assert adaptive["reasoned_queries"] == sum(t["tokens"] > 1 for t in on["traces"].values())
    assert "adaptive" not in (again_off := evaluate_model(str(tiny_folder), str(folder), dtype="fp32"))["modes"]["off"]
    assert len(again_off["modes"]) == 1
    assert len(on["run"]["q1"]) <= 100 and record["data"]["queries_evaluated"] == 3
    assert record["model"]["fingerprint"] and record["data"]["fingerprint"]
    json.dumps(record)  # serialisable
    again = evaluate_model(str(tiny_folder), str(folder), reasoning="on", dtype="fp32")
    assert again["modes"]["on"]["run"] == on["run"]
    assert "| toy/test |" in markdown_table([record])
    short = evaluate_model(str(tiny_folder), str(folder), dtype="fp32", max_length=8)
    assert short["model"]["max_length"] == 8 and record["model"]["max_length"] != 8
    assert "| 3 | 8 |" in markdown_table([short])  # queries, then the max length column


def test_evaluation_uses_the_lengths_saved_with_the_model(tiny_folder, tmp_path):
    from searchr3 import EmbedConfig, SearchR3

    folder = _toy(tmp_path / "toy")
    saved = SearchR3.from_pretrained(tiny_folder, dtype="fp32", device="cpu",
                                     config=EmbedConfig(max_length=20, query_max_length=6)).save_pretrained(tmp_path / "m")
    record = evaluate_model(str(saved), str(folder), dtype="fp32")
    assert (record["model"]["max_length"], record["model"]["query_max_length"]) == (20, 6)
    assert "| 3 | 20 (queries 6) |" in markdown_table([record])
    shorter = evaluate_model(str(saved), str(folder), dtype="fp32", max_length=8)  # --max-length: documents
    assert (shorter["model"]["max_length"], shorter["model"]["query_max_length"]) == (8, 6)


def test_reasoning_cache_hits_on_rerun(tiny, tmp_path):
    retriever = SearchR3Retriever(tiny, reasoning=True)
    corpus = [Document("d1", "", "some text"), Document("d2", "", "other text")]
    first = retriever.retrieve(corpus, {"q": "a query", "r": "another"}, k=2)
    cache = retriever.reasoning_cache
    assert (cache.hits, cache.misses) == (0, 2)
    second = SearchR3Retriever(tiny, reasoning=True).retrieve(corpus, {"q": "a query", "r": "another"}, k=2)
    assert second.run == first.run and second.traces == first.traces
    fresh = SearchR3Retriever(tiny, reasoning=True)
    fresh.retrieve(corpus, {"q": "a query"}, k=2)
    assert (fresh.reasoning_cache.hits, fresh.reasoning_cache.misses) == (1, 0)
    vectors = fresh.vector_cache.embed_documents(tiny, ["some text", "other text"])
    np.testing.assert_allclose(vectors, tiny.embed_documents(["some text", "other text"]), atol=1e-6)


def _assert_same_reasoning(cached, fresh):
    assert (cached.trace, cached.forced, cached.token_ids, cached.stop) == \
        (fresh.trace, fresh.forced, fresh.token_ids, fresh.stop)
    np.testing.assert_array_equal(cached.vector, fresh.vector)


def test_reasoning_cache_keeps_how_each_trace_ended(tiny, tmp_path, monkeypatch):
    from searchr3 import decoding
    from searchr3.cache import ReasoningCache

    queries = ["what causes rain", "why is the sky blue"]
    budget = tiny.reason(queries, max_new_tokens=3)  # the random model runs out of budget
    eos = tiny.tokenizer.eos_token_id
    with monkeypatch.context() as m:  # and one trace that ends its turn
        m.setattr(decoding, "next_tokens", lambda logits, sampling, generator: torch.full((len(logits),), eos))
        ended = tiny.reason(["tallest tower"], max_new_tokens=3)
        ReasoningCache(tmp_path / "r.sqlite").reason(tiny, ["tallest tower"], max_new_tokens=3)
    assert [r.stop for r in budget + ended] == ["budget", "budget", "eos"]
    ReasoningCache(tmp_path / "r.sqlite").reason(tiny, queries, max_new_tokens=3)
    cache = ReasoningCache(tmp_path / "r.sqlite")
    cached = cache.reason(tiny, queries + ["tallest tower"], max_new_tokens=3)
    assert (cache.hits, cache.misses) == (3, 0)
    for c, f in zip(cached, budget + ended):
        _assert_same_reasoning(c, f)


def test_reasoning_cache_regenerates_rows_written_without_stop(tiny, tmp_path):
    """A cache written before `stop` was stored: its rows are misses, regenerated and rewritten."""
    import sqlite3

    from searchr3.cache import ReasoningCache

    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE reasoning (key TEXT PRIMARY KEY, trace TEXT, forced INTEGER, token_ids TEXT, vector BLOB)")
    old.execute("INSERT INTO reasoning VALUES (?, 'stale', 1, '[1]', ?)",
                (ReasoningCache.key(tiny, "what causes rain", 3), np.zeros(tiny.dim, np.float32).tobytes()))
    old.commit()
    old.close()
    cache = ReasoningCache(path)
    fresh = tiny.reason(["what causes rain"], max_new_tokens=3)[0]
    _assert_same_reasoning(cache.reason(tiny, ["what causes rain"], max_new_tokens=3)[0], fresh)
    assert (cache.hits, cache.misses) == (0, 1)
    again = ReasoningCache(path)
    _assert_same_reasoning(again.reason(tiny, ["what causes rain"], max_new_tokens=3)[0], fresh)
    assert (again.hits, again.misses) == (1, 0)


def test_cli_eval_and_report(tmp_path, capsys):
    folder = _toy(tmp_path / "toy")
    out = tmp_path / "bm25.json"
    assert main(["eval", "--model", "bm25", "--data", str(folder), "--output", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["modes"]["off"]["metrics"]["ndcg@10"] > 0.5
    assert main(["eval", "--model", "bm25", "--data", str(folder), "--reasoning", "on"]) == 2
    assert "no reasoning mode" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["report", str(out), str(out), "--output", str(tmp_path / "report.md")]) == 0
    text = (tmp_path / "report.md").read_text()
    assert text.count("| toy/test | bm25 | off |") == 2 and (tmp_path / "report.png").stat().st_size > 1000
    assert main(["data", "list"]) == 0
    assert "scifact" in capsys.readouterr().out
