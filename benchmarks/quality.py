"""Quality of every released model on the five bundled test sets, dense and hybrid, in one table.

For each test set, BM25 runs once; each dense system (the released adapters, MiniLM) encodes
the corpus once (SearchR3 vectors come from the VectorCache, so a `searchr3 eval` that already
ran costs nothing) and is scored twice: alone, and fused with BM25 by the hybrid setting of
`--config` (default: `HybridConfig()`), through the same `HybridRetriever` and evaluator as
`searchr3 eval --model hybrid:NAME`. Reasoning is off: this is the table of what the models
deliver as embedders today.

Resumable: each (set, system) result is written to the JSON as soon as it is measured, and a
rerun skips what is there (delete the JSON, or pass --fresh, to measure again).

    python benchmarks/quality.py                      # all systems, all five sets (hours on 2 cores)
    python benchmarks/quality.py --systems searchr3-smollm2-135m-sft-v2 --sets scifact

Writes benchmarks/results/quality.{json,md} (or under --output-dir). ▲/▼: nDCG@10 above/below
BM25 on the same set, paired randomisation test p < 0.05.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from searchr3 import metrics as M
from searchr3._version import __version__
from searchr3.baselines import BM25Retriever, HybridRetriever, Retrieval
from searchr3.data import load_dataset
from searchr3.evaluate import RetrievalEvaluator, make_retrievers
from searchr3.hybrid import load_hybrid_config
from searchr3.precision import cpu_name, cpu_supports_bf16

SETS = ("scifact", "birco-arguana", "birco-wtb", "rarb-alphanli", "wiki-known-item")
SYSTEMS = ("searchr3-smollm2-135m-sft-v2", "searchr3-smollm2-135m-rl-v1", "searchr3-smollm2-135m-sft-v1", "minilm")
KEPT = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


class Replay:
    """A retriever that hands back a run computed before, so scoring it twice costs no model work."""

    def __init__(self, retrieval: Retrieval, identity: dict):
        self.retrieval, self._identity, self.name = retrieval, identity, identity["name"]

    def identity(self) -> dict:
        return dict(self._identity)

    def retrieve(self, corpus, queries, k: int = 100) -> Retrieval:
        return copy.deepcopy(self.retrieval)  # the evaluator edits runs in place


def _entry(scores: dict, seconds: float, identity: dict) -> dict:
    return {"metrics": {k: v for k, v in M.mean(scores).items() if k in KEPT}, "seconds": round(seconds, 1),
            "model": identity, "ndcg_per_query": {q: round(s["ndcg@10"], 6) for q, s in scores.items()}}


def measure(data: str, systems: list[str], results: dict, hybrid, dtype: str, save) -> None:
    """Fill results[data][system] and results[data]['hybrid:'+system] for what is missing."""
    todo = [s for s in systems if s not in results.get(data, {}) or f"hybrid:{s}" not in results[data]]
    if "bm25" in results.get(data, {}) and not todo:
        return
    dataset = load_dataset(data, "test")
    evaluator = RetrievalEvaluator(dataset)
    queries = {q: dataset.queries[q] for q in evaluator.query_ids}
    depth = max(evaluator.k, hybrid.depth) + 2  # what HybridRetriever asks for inside the evaluator
    bm25 = BM25Retriever(matched_only=True)
    start = time.perf_counter()
    lexical = Replay(bm25.retrieve(dataset.corpus, queries, depth), bm25.identity())
    bm25_seconds = time.perf_counter() - start
    record = results.setdefault(data, {})
    if "bm25" not in record:
        # The BM25 row is plain BM25 (every document scored), as `searchr3 eval --model bm25`.
        start = time.perf_counter()
        plain = BM25Retriever()
        scores = evaluator.run(plain)[1]
        record["bm25"] = _entry(scores, time.perf_counter() - start, plain.identity())
        save()
    for system in todo:
        [dense] = make_retrievers(system, "off", dtype)
        start = time.perf_counter()
        dense_side = Replay(dense.retrieve(dataset.corpus, queries, depth), dense.identity())
        dense_seconds = time.perf_counter() - start
        record[system] = _entry(evaluator.run(dense_side)[1], dense_seconds, dense.identity())
        fused = HybridRetriever(dense_side, hybrid, lexical)
        start = time.perf_counter()
        scores = evaluator.run(fused)[1]
        record[f"hybrid:{system}"] = _entry(scores, dense_seconds + bm25_seconds + time.perf_counter() - start,
                                            fused.identity())
        save()


def short(system: str) -> str:
    return system.replace("searchr3-smollm2-135m-", "").replace("minilm", "MiniLM")


def markdown(results: dict, meta: dict) -> str:
    columns = ["bm25"] + [c for s in meta["systems"] for c in (s, f"hybrid:{s}")]
    names = {c: ("BM25" if c == "bm25" else f"{short(c[7:])} + BM25" if c.startswith("hybrid:") else short(c))
             for c in columns}
    lines = ["# Quality on the bundled test sets (nDCG@10, reasoning off)", "",
             f"Measured {meta['created']} on {meta['machine']}; searchr3 {meta['searchr3_version']}, dtype "
             f"{meta['dtype']}. Hybrid: {meta['hybrid']['method']}, dense weight {meta['hybrid']['weight']}, "
             f"depth {meta['hybrid']['depth']}, rrf_k {meta['hybrid']['rrf_k']}.", "",
             "| set (test) | " + " | ".join(names[c] for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    sums = {c: [] for c in columns}
    for data in meta["sets"]:
        row = results.get(data, {})
        cells = []
        for c in columns:
            if c not in row:
                cells.append("–")
                continue
            value = row[c]["metrics"]["ndcg@10"]
            sums[c].append(value)
            mark = ""
            if c != "bm25" and "bm25" in row:
                diff, p = M.paired_randomization_test(row[c]["ndcg_per_query"], row["bm25"]["ndcg_per_query"])
                mark = (" ▲" if diff > 0 else " ▼") if p < 0.05 else ""
            cells.append(f"{value:.3f}{mark}")
        lines.append(f"| {data} | " + " | ".join(cells) + " |")
    n = len(meta["sets"])
    lines.append("| **mean** | " + " | ".join(f"**{sum(v) / n:.3f}**" if len(v) == n else "–"
                                              for v in sums.values()) + " |")
    lines += ["", "▲/▼: nDCG@10 above/below BM25 on the same set (paired randomisation test over per-query "
              "nDCG@10, 10,000 sign flips, p < 0.05). –: not measured.", "",
              "Recall@100 (how much of the judged set a reranker downstream could still find):", "",
              *_table(results, meta, columns, names, lambda e: f"{e['metrics']['recall@100']:.3f}"), "",
              "Seconds per system and set (dense: encoding the corpus and the queries, from the vector "
              "cache when an earlier run encoded it; hybrid: dense + BM25 + fusion):", "",
              *_table(results, meta, columns, names, lambda e: f"{e['seconds']:.0f}")]
    return "\n".join(lines) + "\n"


def _table(results: dict, meta: dict, columns: list[str], names: dict, cell) -> list[str]:
    """Rows of one Markdown table: a set per row, `cell(entry)` per column, – where not measured."""
    lines = ["| set (test) | " + " | ".join(names[c] for c in columns) + " |", "|---|" + "---:|" * len(columns)]
    for data in meta["sets"]:
        row = results.get(data, {})
        lines.append(f"| {data} | " + " | ".join(cell(row[c]) if c in row else "–" for c in columns) + " |")
    return lines


def plot(results: dict, meta: dict, path: Path) -> None:
    """Grouped bars: nDCG@10 per set, one bar per system (hybrid bars hatched)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ["bm25"] + [c for s in meta["systems"] for c in (s, f"hybrid:{s}")]
    sets = [d for d in meta["sets"] if d in results]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(sets) + 2), 3.6))
    width = 0.8 / len(columns)
    colours = plt.get_cmap("tab10")
    for j, c in enumerate(columns):
        base = c[len("hybrid:"):] if c.startswith("hybrid:") else c
        colour = "0.6" if c == "bm25" else colours((meta["systems"].index(base)) % 10)
        xs = [i + (j - (len(columns) - 1) / 2) * width for i, d in enumerate(sets) if c in results[d]]
        ys = [results[d][c]["metrics"]["ndcg@10"] for d in sets if c in results[d]]
        label = "BM25" if c == "bm25" else (f"{short(base)} + BM25" if c != base else short(c))
        ax.bar(xs, ys, width, color=colour, hatch="//" if c != base else None, edgecolor="white", label=label)
    ax.set_xticks(range(len(sets)), sets)
    ax.set_ylabel("nDCG@10 (test)")
    top = max((r[c]["metrics"]["ndcg@10"] for r in results.values() for c in r), default=1.0)
    ax.set_ylim(0, top * 1.3)  # room for the legend above the bars
    ax.legend(fontsize=7, ncol=4, frameon=False, loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), help="dense systems: names, folders, minilm")
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--config", help="YAML whose `hybrid:` section sets the fusion (default: HybridConfig())")
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--output-dir", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--fresh", action="store_true", help="ignore results already in the JSON")
    args = parser.parse_args(argv)
    hybrid = load_hybrid_config(args.config)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "quality.json"
    saved = {} if args.fresh or not path.is_file() else json.loads(path.read_text())
    if not isinstance(saved, dict) or (saved and "results" not in saved):
        parser.error(f"{path} is not a file this script wrote; move it away or pass --fresh")
    if saved and saved.get("meta", {}).get("hybrid") not in (None, dataclasses.asdict(hybrid)):
        parser.error(f"{path} was measured with hybrid {saved['meta']['hybrid']}; pass --fresh to remeasure")
    results = saved.get("results", {})
    systems = list(dict.fromkeys(saved.get("meta", {}).get("systems", []) + args.systems))
    sets = list(dict.fromkeys(saved.get("meta", {}).get("sets", []) + args.sets))
    meta = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "searchr3_version": __version__,
            "machine": _cpu(), "dtype": args.dtype,
            "hybrid": dataclasses.asdict(hybrid), "systems": systems, "sets": sets, "reasoning": "off"}

    def save() -> None:
        path.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
        (out / "quality.md").write_text(markdown(results, meta) + "\n![nDCG@10 by set](quality.png)\n")
        plot(results, meta, out / "quality.png")

    for data in args.sets:
        measure(data, args.systems, results, hybrid, args.dtype, save)
    save()
    print(markdown(results, meta))
    return results


def _cpu() -> str:
    bf16 = "native bf16" if cpu_supports_bf16() else "no native bf16"
    return f"{cpu_name()}, {os.cpu_count()} cores, {bf16}"


if __name__ == "__main__":
    main()
