"""Evaluate any retriever on a dataset split; write results JSON, Markdown tables and plots.

`RetrievalEvaluator(dataset)(retriever)` returns `{"ndcg@10": ..., ...}` and declares its
`primary_metric`, so trainers can select checkpoints without knowing the metric. The CLI's
`searchr3 eval` and `searchr3 report` call `evaluate_model` and `write_report`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from . import metrics as M
from ._extras import pyplot, require
from ._version import __version__
from .baselines import BM25Retriever, DenseRetriever, HybridRetriever, Retrieval, SearchR3Retriever, minilm_path
from .data import Dataset, load_dataset
from .hybrid import HybridConfig
from .trace_stats import adaptive_gain

MODES = {"off": (False,), "on": (True,), "both": (False, True)}
TABLE_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
BASELINES = ("bm25", "minilm")
HYBRID = "hybrid:"  # `hybrid:MODEL` fuses MODEL's ranking with BM25's


class RetrievalEvaluator:
    """Scores a retriever on one dataset split with exact search over the whole corpus.

    Args:
        dataset: a validated split from `load_dataset`.
        max_queries: evaluate a fixed random sample (seeded) of this many queries; None = all.
        k: depth of the run kept per query (100 covers Recall@100 and MAP@100).
        ignore_identical_ids: drop a hit whose id equals the query id (BEIR's rule, needed
            for ArguAna where queries are also corpus documents).
    """

    primary_metric = "ndcg@10"
    greater_is_better = True

    def __init__(self, dataset: Dataset, max_queries: int | None = None, k: int = 100,
                 metrics: Sequence[str] = M.DEFAULT_METRICS, ignore_identical_ids: bool = True, seed: int = 0):
        if max_queries is not None and max_queries < 1:
            raise ValueError(f"max_queries must be >= 1, got {max_queries}")
        self.dataset, self.k, self.metrics = dataset, k, tuple(metrics)
        self.ignore_identical_ids = ignore_identical_ids
        qids = sorted(dataset.queries)
        if max_queries is not None and max_queries < len(qids):
            qids = sorted(random.Random(seed).sample(qids, max_queries))
        self.query_ids = qids

    def run(self, retriever) -> tuple[Retrieval, dict[str, dict[str, float]]]:
        """Retrieve and score: returns (retrieval, per-query metrics)."""
        queries = {q: self.dataset.queries[q] for q in self.query_ids}
        extra = 1 if self.ignore_identical_ids else 0
        retrieval = retriever.retrieve(self.dataset.corpus, queries, self.k + extra)
        for qid, docs in retrieval.run.items():
            if self.ignore_identical_ids:
                docs.pop(qid, None)
            retrieval.run[qid] = dict(sorted(docs.items(), key=lambda x: (-x[1], x[0]))[: self.k])
        qrels = {q: self.dataset.qrels[q] for q in self.query_ids}
        return retrieval, M.per_query(qrels, retrieval.run, self.metrics)

    def __call__(self, retriever) -> dict[str, float]:
        return M.mean(self.run(retriever)[1])


def make_retrievers(spec: str, reasoning: str = "off", dtype: str = "auto", use_cache: bool = True,
                    batch_size: int | None = None, max_length: int | None = None,
                    hybrid_config: HybridConfig | None = None) -> list:
    """Return one retriever per reasoning mode for a model spec: bm25, minilm, a name or a path,
    or `hybrid:` before minilm, a name or a path (that model fused with BM25 by `hybrid_config`)."""
    if reasoning not in MODES:
        raise ValueError(f"reasoning must be one of {', '.join(MODES)}, got {reasoning!r}")
    if spec.startswith(HYBRID):
        inner = spec[len(HYBRID):]
        if not inner or inner == "bm25" or inner.startswith(HYBRID):
            raise ValueError(f"{spec!r}: hybrid: needs a dense model after it, e.g. hybrid:minilm or "
                             "hybrid:searchr3-smollm2-135m-sft")
        return [HybridRetriever(r, hybrid_config)
                for r in make_retrievers(inner, reasoning, dtype, use_cache, batch_size, max_length)]
    if spec in BASELINES:
        if reasoning == "on":
            raise ValueError(f"{spec} has no reasoning mode; use --reasoning off")
        return [BM25Retriever() if spec == "bm25" else DenseRetriever(minilm_path(), "all-MiniLM-L6-v2")]
    from .modeling import SearchR3

    model = SearchR3.from_pretrained(spec, dtype=dtype)
    if batch_size:
        model.config.batch_size = batch_size
    if max_length:
        model.set_max_length(max_length)
    return [SearchR3Retriever(model, on, use_cache) for on in MODES[reasoning]]


def evaluate_model(spec: str, data: str, split: str = "test", reasoning: str = "off", max_queries: int | None = None,
                   dtype: str = "auto", use_cache: bool = True, batch_size: int | None = None,
                   max_length: int | None = None, max_docs: int | None = None,
                   hybrid_config: HybridConfig | None = None) -> dict:
    """Evaluate a model spec on a dataset split; returns the results record (see `searchr3 eval`).

    A `hybrid:MODEL` spec is fused by `hybrid_config` (default `HybridConfig()`); the record's
    `model.hybrid` names the setting.

    `max_docs` searches a sampled corpus (`Dataset.sample`: the judged documents of the
    evaluated queries plus random others), for bounded runs such as the demo; the record says so.
    """
    dataset = load_dataset(data, split)
    evaluator = RetrievalEvaluator(dataset, max_queries)
    if max_docs is not None:
        dataset = dataset.sample(evaluator.query_ids, max_docs)
        evaluator = RetrievalEvaluator(dataset)
    record = {"searchr3_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "model": {"spec": spec},
              "data": {"name": dataset.name, "path": str(dataset.path), "split": split,
                       "fingerprint": dataset.fingerprint, "docs": len(dataset.corpus),
                       "queries_judged": len(dataset.queries), "queries_evaluated": len(evaluator.query_ids),
                       "max_queries": max_queries, "max_docs": max_docs},
              "modes": {}}
    for retriever in make_retrievers(spec, reasoning, dtype, use_cache, batch_size, max_length, hybrid_config):
        start = time.perf_counter()
        retrieval, scores = evaluator.run(retriever)
        identity = retriever.identity()
        mode = "on" if identity.get("reasoning") else "off"
        record["model"].update({k: v for k, v in identity.items() if k != "reasoning"})
        timing = dict(retrieval.timing, total_seconds=time.perf_counter() - start)
        record["modes"][mode] = {"metrics": M.mean(scores), "per_query": scores, "run": retrieval.run,
                                 "timing": timing, "traces": retrieval.traces}
        if retrieval.reasoning:
            record["modes"][mode]["reasoning"] = retrieval.reasoning
    modes = record["modes"]
    if "on" in modes and "off" in modes and modes["on"]["traces"]:  # adaptive reasoning: when it reasoned, the gain
        modes["on"]["adaptive"] = adaptive_gain(modes["on"]["traces"], modes["on"]["per_query"],
                                                modes["off"]["per_query"])
    return record


def data_label(record: dict) -> str:
    """`name/split` of a results record; a sampled corpus (`max_docs`) is labelled as its own set."""
    data = record["data"]
    label = f"{data['name']}/{data['split']}"
    return label + (f" ({data['docs']:,} docs sampled)" if data.get("max_docs") else "")


def markdown_table(records: Sequence[dict], baseline_index: dict[str, int] | None = None) -> str:
    """One row per (dataset, model, mode); significance vs the first run of each dataset.

    ▲ / ▼: nDCG@10 differs from that dataset's first row with p < 0.05 (paired
    randomisation test over the shared queries, 10,000 sign flips).
    """
    header = ["data", "model", "reasoning", *TABLE_METRICS, "queries", "max length", "seconds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---|" + "---:|" * (len(TABLE_METRICS) + 3)]
    first: dict[str, dict[str, float]] = {}
    for rec in records:
        data = data_label(rec)
        for mode, res in rec["modes"].items():
            ndcg = {q: s["ndcg@10"] for q, s in res["per_query"].items()}
            mark = ""
            if data in first:
                diff, p = M.paired_randomization_test(ndcg, first[data])
                mark = (" ▲" if diff > 0 else " ▼") if p < 0.05 else ""
            else:
                first[data] = ndcg
            cells = [data, rec["model"].get("name", rec["model"]["spec"]), mode]
            cells += [f"{res['metrics'][m]:.3f}" + (mark if m == "ndcg@10" else "") for m in TABLE_METRICS]
            length = rec["model"].get("max_length", rec["model"].get("max_seq_length", "–"))
            query_length = rec["model"].get("query_max_length", length)
            length = length if query_length == length else f"{length} (queries {query_length})"
            cells += [str(len(res["per_query"])), str(length), f"{res['timing']['total_seconds']:.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(records: Sequence[dict]) -> list[dict]:
    """Metrics-only rows (no runs or per-query scores) for a compact JSON beside the report."""
    return [{"data": data_label(r), "model": r["model"].get("name", r["model"]["spec"]),
             "reasoning": mode, "metrics": res["metrics"], "queries": len(res["per_query"]),
             "seconds": res["timing"]["total_seconds"], "data_fingerprint": r["data"]["fingerprint"]}
            for r in records for mode, res in r["modes"].items()]


def write_report(paths: Sequence[str | Path], output: str | Path) -> tuple[Path, Path]:
    """Compare result files in one Markdown table, a JSON summary and a bar chart (.md, .json, .png)."""
    require("report", "matplotlib")  # before anything is written
    records = [json.loads(Path(p).read_text()) for p in paths]
    if not records:
        raise ValueError("no result files given")
    output = Path(output)
    png = output.with_suffix(".png")
    table = markdown_table(records)
    note = ("▲/▼: nDCG@10 significantly above/below the first row of the same data "
            "(paired randomisation test, p < 0.05).")
    output.write_text(f"# searchr3 evaluation report\n\n{table}\n\n{note}\n\n![nDCG@10]({png.name})\n")
    output.with_suffix(".json").write_text(json.dumps(summary(records), indent=1) + "\n")
    plot_ndcg(records, png)
    return output, png


def plot_ndcg(records: Sequence[dict], path: Path) -> None:
    """Grouped bar chart of nDCG@10: one group per dataset, one bar per model and mode."""
    plt = pyplot("report")

    datasets = list(dict.fromkeys(data_label(r) for r in records))
    series: dict[str, dict[str, float]] = {}
    for r in records:
        for mode, res in r["modes"].items():
            label = r["model"].get("name", r["model"]["spec"]) + (" +reasoning" if mode == "on" else "")
            series.setdefault(label, {})[data_label(r)] = res["metrics"]["ndcg@10"]
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(datasets) * max(1, len(series) / 3)), 4))
    for n, (label, values) in enumerate(series.items()):
        xs = [i + n * width for i, d in enumerate(datasets) if d in values]
        ax.bar(xs, [values[d] for d in datasets if d in values], width, label=label)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(datasets))], datasets, rotation=15)
    ax.set_ylabel("nDCG@10")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
