"""IR metrics through trec_eval (pytrec-eval-terrier), per query and averaged, plus a paired test.

Nothing else in searchr3 computes nDCG: the evaluator, the benchmarks and the GRPO reward
call these functions. Graded qrels are used as graded gains (trec_eval's nDCG).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytrec_eval

Qrels = Mapping[str, Mapping[str, int]]  # query id -> doc id -> relevance grade
Run = Mapping[str, Mapping[str, float]]  # query id -> doc id -> score

DEFAULT_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100")

_TREC = {"ndcg": "ndcg_cut", "recall": "recall", "map": "map_cut", "precision": "P"}


def _parse(name: str) -> tuple[str, int]:
    base, _, cutoff = name.partition("@")
    if base not in (*_TREC, "mrr") or not cutoff.isdigit():
        raise ValueError(f"unknown metric {name!r}; use ndcg@k, recall@k, map@k, precision@k or mrr@k")
    return base, int(cutoff)


def _top(run: Run, k: int) -> dict[str, dict[str, float]]:
    """Keep the k best docs per query (ties broken by doc id, so the cut is deterministic)."""
    out = {}
    for qid, docs in run.items():
        ranked = sorted(docs.items(), key=lambda x: (-x[1], x[0]))[:k]
        out[qid] = {d: float(s) for d, s in ranked}
    return out


def per_query(qrels: Qrels, run: Run, metrics: tuple[str, ...] = DEFAULT_METRICS) -> dict[str, dict[str, float]]:
    """Return {query id: {metric: value}} for every query in `qrels` with a relevant document.

    A query missing from `run` scores 0 on every metric (trec_eval alone would skip it,
    which flatters a retriever that fails on hard queries).

    >>> per_query({"q": {"a": 1}}, {"q": {"a": 0.9, "b": 0.5}}, ("ndcg@10", "mrr@10"))
    {'q': {'ndcg@10': 1.0, 'mrr@10': 1.0}}
    """
    judged = {q: {d: int(r) for d, r in docs.items()} for q, docs in qrels.items()
              if any(r > 0 for r in docs.values())}
    parsed = {m: _parse(m) for m in metrics}
    results: dict[str, dict[str, float]] = {q: {} for q in judged}
    trec = {f"{_TREC[b]}.{k}" for b, k in parsed.values() if b != "mrr"}
    run_f = {q: {d: float(s) for d, s in run.get(q, {}).items()} for q in judged}
    scored = {q: docs for q, docs in run_f.items() if docs}
    if trec and scored:
        evaluated = pytrec_eval.RelevanceEvaluator(judged, trec).evaluate(scored)
    else:
        evaluated = {}
    mrr_cuts = {k for b, k in parsed.values() if b == "mrr"}
    mrr = {k: pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}).evaluate(_top(scored, k)) if scored else {}
           for k in mrr_cuts}
    for q in judged:
        for name, (base, k) in parsed.items():
            if base == "mrr":
                results[q][name] = float(mrr[k].get(q, {}).get("recip_rank", 0.0))
            else:
                results[q][name] = float(evaluated.get(q, {}).get(f"{_TREC[base]}_{k}", 0.0))
    return results


def mean(per_query_scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Average per-query scores into {metric: mean}; an empty input gives an empty dict."""
    if not per_query_scores:
        return {}
    names = next(iter(per_query_scores.values())).keys()
    return {m: float(np.mean([s[m] for s in per_query_scores.values()])) for m in names}


def evaluate(qrels: Qrels, run: Run, metrics: tuple[str, ...] = DEFAULT_METRICS) -> dict[str, float]:
    """Return averaged metrics, e.g. {"ndcg@10": 0.66, ...}."""
    return mean(per_query(qrels, run, metrics))


def paired_randomization_test(a: Mapping[str, float], b: Mapping[str, float], n_resamples: int = 10_000,
                              seed: int = 0) -> tuple[float, float]:
    """Return (mean of a - b, two-sided p-value) over the queries both runs scored.

    Fisher's randomisation test: under the null hypothesis the sign of each per-query
    difference is arbitrary, so flip signs at random and count how often the mean
    difference is at least as extreme as the observed one.
    """
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError("the two runs share no query")
    diff = np.array([a[q] - b[q] for q in common])
    observed = abs(diff.mean())
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n_resamples, len(diff)))
    extreme = (np.abs((signs * diff).mean(axis=1)) >= observed - 1e-12).sum()
    return float(diff.mean()), float((extreme + 1) / (n_resamples + 1))
