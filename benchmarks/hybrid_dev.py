"""Choose hybrid search's default fusion on a dev split, by the rule written in docs/hybrid.md.

The corpus is encoded once (its vectors come from the VectorCache, as in `searchr3 eval`, so
after a dense eval of the same model and data nothing is encoded) and BM25 runs once; each
candidate setting then only fuses the two runs, through the same `HybridRetriever` and
evaluator that `searchr3 eval --model hybrid:MODEL` uses, so the chosen row equals that eval.

Candidates: method {rrf, score} x dense weight {0.3, 0.5, 0.7}, the other fields from
`--config`'s `hybrid:` section (default: HybridConfig's). Rule: the highest nDCG@10 wins only
if it beats rrf 0.5 by >= 0.01 with paired-randomisation p < 0.05; otherwise rrf 0.5 stays.

    python benchmarks/hybrid_dev.py --model searchr3-smollm2-135m-sft

Writes benchmarks/results/hybrid_dev.{json,md} (or under --output-dir).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
from pathlib import Path

from searchr3 import metrics as M
from searchr3.baselines import BM25Retriever, HybridRetriever, Retrieval
from searchr3.data import load_dataset
from searchr3.evaluate import RetrievalEvaluator, make_retrievers
from searchr3.hybrid import HybridConfig, load_hybrid_config

GRID = [(method, weight) for method in ("rrf", "score") for weight in (0.3, 0.5, 0.7)]
DEFAULT = ("rrf", 0.5)  # the simpler setting, kept unless another clearly beats it
MARGIN, ALPHA = 0.01, 0.05  # nDCG@10 a challenger must gain, and its p-value bound
RULE = ("highest dev nDCG@10 among rrf/score x weight 0.3/0.5/0.7; rrf 0.5 is kept unless the best "
        f"beats it by >= {MARGIN} nDCG@10 with paired-randomisation p < {ALPHA}")


class Replay:
    """A retriever that hands back a run computed before, so a setting costs no model work."""

    def __init__(self, retrieval: Retrieval, identity: dict):
        self.retrieval, self._identity = retrieval, identity
        self.name = identity["name"]

    def identity(self) -> dict:
        return dict(self._identity)

    def retrieve(self, corpus, queries, k: int = 100) -> Retrieval:
        return copy.deepcopy(self.retrieval)  # the evaluator edits runs in place


def choose(ndcg: dict[tuple[str, float], dict[str, float]]) -> tuple[tuple[str, float], float, float]:
    """Apply the rule to per-query nDCG@10 per (method, weight): (chosen, best - default, p)."""
    means = {s: sum(x.values()) / len(x) for s, x in ndcg.items()}
    best = max(means, key=lambda s: (means[s], s == DEFAULT))  # an exact tie keeps the default
    if best == DEFAULT:
        return DEFAULT, 0.0, 1.0
    diff, p = M.paired_randomization_test(ndcg[best], ndcg[DEFAULT])
    return (best if diff >= MARGIN and p < ALPHA else DEFAULT), diff, p


def run_grid(model: str, data: str, split: str, max_queries: int | None = None, dtype: str = "auto",
             base: HybridConfig | None = None, batch_size: int | None = None,
             max_length: int | None = None) -> dict:
    """Encode and run BM25 once, fuse per setting, score each; returns the result record."""
    base = base or HybridConfig()
    dataset = load_dataset(data, split)
    evaluator = RetrievalEvaluator(dataset, max_queries)
    queries = {q: dataset.queries[q] for q in evaluator.query_ids}
    [dense] = make_retrievers(model, "off", dtype, batch_size=batch_size, max_length=max_length)
    lexical = BM25Retriever(matched_only=True)
    depth = max(evaluator.k + 1, base.depth) + 1  # what HybridRetriever asks each side for inside the evaluator
    dense_side = Replay(dense.retrieve(dataset.corpus, queries, depth), dense.identity())
    lexical_side = Replay(lexical.retrieve(dataset.corpus, queries, depth), lexical.identity())
    rows, ndcg = [], {}
    for label, retriever in [("dense", dense_side), ("bm25", lexical_side)]:
        scores = evaluator.run(retriever)[1]
        rows.append({"system": label, **_metrics(scores)})
    for method, weight in GRID:
        config = dataclasses.replace(base, method=method, weight=weight)
        scores = evaluator.run(HybridRetriever(dense_side, config, lexical_side))[1]
        ndcg[(method, weight)] = {q: s["ndcg@10"] for q, s in scores.items()}
        rows.append({"system": "hybrid", "method": method, "weight": weight, **_metrics(scores)})
    chosen, diff, p = choose(ndcg)
    for row in rows:
        if row["system"] == "hybrid" and (row["method"], row["weight"]) != DEFAULT:
            row["diff_vs_default"], row["p"] = M.paired_randomization_test(ndcg[(row["method"], row["weight"])],
                                                                           ndcg[DEFAULT])
    return {"model": dense.identity(), "data": {"name": dataset.name, "split": split, "docs": len(dataset.corpus),
                                                 "queries": len(evaluator.query_ids), "max_queries": max_queries,
                                                 "fingerprint": dataset.fingerprint},
            "base_config": dataclasses.asdict(base), "rule": RULE, "rows": rows,
            "chosen": dataclasses.asdict(dataclasses.replace(base, method=chosen[0], weight=chosen[1])),
            "chosen_diff_vs_default": diff, "chosen_p": p}


def _metrics(scores: dict) -> dict:
    return {k: v for k, v in M.mean(scores).items() if k in ("ndcg@10", "recall@100", "mrr@10")}


def markdown(record: dict) -> str:
    d, c = record["data"], record["chosen"]
    lines = [f"# Hybrid search: choosing the default fusion ({record['model']['name']}, {d['name']}/{d['split']})", "",
             f"{d['queries']} queries, {d['docs']:,} documents; rule: {record['rule']}.", "",
             "| system | method | dense weight | nDCG@10 | Δ vs rrf 0.5 | p | Recall@100 | MRR@10 |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in record["rows"]:
        delta = f"{r['diff_vs_default']:+.3f}" if "diff_vs_default" in r else "–"
        p = f"{r['p']:.4f}" if "p" in r else "–"
        lines.append(f"| {r['system']} | {r.get('method', '–')} | {r.get('weight', '–')} | {r['ndcg@10']:.3f} | "
                     f"{delta} | {p} | {r['recall@100']:.3f} | {r['mrr@10']:.3f} |")
    lines += ["", f"**Chosen: {c['method']} {c['weight']}** (depth {c['depth']}, rrf_k {c['rrf_k']}). "
              "p: paired randomisation test on per-query nDCG@10, 10,000 sign flips."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a registered name or model folder (the dense side)")
    parser.add_argument("--data", default="wiki-known-item")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--max-queries", type=int)
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--max-length", type=int)
    parser.add_argument("--config", help="YAML whose `hybrid:` section sets depth and rrf_k (default: defaults)")
    parser.add_argument("--output-dir", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    record = run_grid(args.model, args.data, args.split, args.max_queries, args.dtype,
                      load_hybrid_config(args.config), args.batch_size, args.max_length)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hybrid_dev.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / "hybrid_dev.md").write_text(markdown(record))
    print(markdown(record))
    return record


if __name__ == "__main__":
    main()
