"""Metrics: hand-computed values, missing queries, cut-offs, the paired test, agreement with a real client."""

import math

import pytest

from searchr3.metrics import evaluate, mean, paired_randomization_test, per_query


def test_graded_ndcg_matches_hand_computation():
    qrels = {"q": {"a": 2, "b": 1}}
    run = {"q": {"x": 0.9, "b": 0.8, "a": 0.7}}  # ranks: x (0), b (1), a (2)
    dcg = 1 / math.log2(3) + 2 / math.log2(4)  # trec_eval: linear gain rel / log2(rank + 1)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    scores = per_query(qrels, run, ("ndcg@10", "recall@10", "mrr@10", "map@100"))["q"]
    assert scores["ndcg@10"] == pytest.approx(dcg / idcg, abs=1e-9)
    assert scores["recall@10"] == 1.0
    assert scores["mrr@10"] == pytest.approx(1 / 2)
    assert scores["map@100"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_missing_query_counts_as_zero_and_cutoffs_apply():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "unjudged": {"c": 0}}
    run = {"q1": {f"d{i}": 1 - i / 100 for i in range(10)} | {"a": 0.0}}  # relevant doc at rank 11
    scores = per_query(qrels, run, ("ndcg@10", "mrr@10", "recall@100"))
    assert set(scores) == {"q1", "q2"}  # a query without a relevant doc is not scored
    assert scores["q1"] == {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@100": 1.0}
    assert scores["q2"] == {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@100": 0.0}
    assert evaluate(qrels, run, ("recall@100",)) == {"recall@100": 0.5}
    assert mean({}) == {}
    with pytest.raises(ValueError, match="unknown metric 'ndcg'"):
        per_query(qrels, run, ("ndcg",))


def test_paired_randomization_test():
    a = {str(i): 0.5 + 0.01 * (i % 5) for i in range(50)}
    assert paired_randomization_test(a, a) == (0.0, 1.0)
    better = {q: v + 0.2 for q, v in a.items()}
    diff, p = paired_randomization_test(better, a)
    assert diff == pytest.approx(0.2) and p < 0.001
    noisy = {q: v + (0.1 if int(q) % 2 else -0.1) for q, v in a.items()}
    assert paired_randomization_test(noisy, a)[1] > 0.5
    with pytest.raises(ValueError, match="share no query"):
        paired_randomization_test({"x": 1.0}, {"y": 1.0})


def test_ndcg_agrees_with_sentence_transformers_evaluator():
    """Our nDCG@10 / MRR@10 on a real BM25 run equal sentence-transformers' evaluator to 1e-6."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    from searchr3.baselines import BM25Retriever
    from searchr3.data import load_dataset
    from searchr3.evaluate import RetrievalEvaluator

    dataset = load_dataset("scifact")  # binary qrels: the client's binary gains are then exact
    retrieval, ours = RetrievalEvaluator(dataset).run(BM25Retriever())
    for docs in retrieval.run.values():  # make scores unique so both libraries rank identically
        for rank, d in enumerate(sorted(docs, key=lambda x: (-docs[x], x))):
            docs[d] = 1000.0 - rank
    ours = per_query(dataset.qrels, retrieval.run, ("ndcg@10", "mrr@10"))
    qids = sorted(dataset.queries)
    client = InformationRetrievalEvaluator(
        {q: dataset.queries[q] for q in qids}, {d.id: d.text for d in dataset.corpus},
        {q: set(dataset.qrels[q]) for q in qids}, write_csv=False)
    results = [[{"corpus_id": d, "score": s} for d, s in retrieval.run[q].items()] for q in client.queries_ids]
    theirs = client.compute_metrics(results)
    assert mean(ours)["ndcg@10"] == pytest.approx(theirs["ndcg@k"][10], abs=1e-6)
    assert mean(ours)["mrr@10"] == pytest.approx(theirs["mrr@k"][10], abs=1e-6)
