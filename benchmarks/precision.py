"""What each inference precision costs and buys: nDCG@10 and speed of fp32, bf16 and int8, in one run.

For each bundled test set, a fixed sample (100 queries, their judged documents and seeded random
others, 600 documents in all: `Dataset.sample`) is encoded by the default model in each dtype;
reported per set: nDCG@10, its difference from fp32 with a paired randomisation test, the cosine
of each document vector to its fp32 vector, and documents/s at the model's document length.
The issue's bar for offering a dtype: nDCG@10 within 0.005 of fp32 on every set.

    python benchmarks/precision.py                        # fp32, bf16 and int8 where the CPU runs them fast
    python benchmarks/precision.py --dtypes fp32 int8 --sets scifact
    python benchmarks/precision.py --dtypes fp32 int8 --int8-keep down_proj --output /tmp/keep  # a variant row

Writes benchmarks/results/precision.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from searchr3 import DEFAULT_MODEL, SearchR3, quantize_int8
from searchr3 import metrics as M
from searchr3.baselines import Retrieval
from searchr3.data import load_dataset
from searchr3.evaluate import RetrievalEvaluator
from searchr3.precision import cpu_name, cpu_supports_bf16, cpu_supports_int8_dot
from searchr3.prompts import document_text

RESULTS = Path(__file__).resolve().parent / "results"
SETS = ("scifact", "birco-arguana", "birco-wtb", "rarb-alphanli", "wiki-known-item")


class TimedRetriever:
    """Exact search with one model, keeping its document vectors and the encoding time."""

    def __init__(self, model: SearchR3):
        self.model, self.doc_vectors, self.doc_seconds = model, None, 0.0

    def retrieve(self, corpus, queries, k: int = 100) -> Retrieval:
        texts = [document_text(d.title, d.text) for d in corpus]
        start = time.perf_counter()
        self.doc_vectors = self.model.embed_documents(texts, show_progress=True)
        self.doc_seconds = time.perf_counter() - start
        qids = list(queries)
        q = self.model.embed_queries([queries[i] for i in qids], show_progress=False)
        scores = q @ self.doc_vectors.T
        top = np.argsort(-scores, axis=1)[:, :k]
        run = {qid: {corpus[j].id: float(scores[i, j]) for j in top[i]} for i, qid in enumerate(qids)}
        return Retrieval(run, {"index_seconds": self.doc_seconds})


def _load(name: str, dtype: str, keep: Sequence[str] = ()) -> SearchR3:
    """The model in `dtype`; "int8" quantises an fp32 CPU model, leaving the `keep` layers in fp32."""
    if dtype != "int8":
        return SearchR3.from_pretrained(name, dtype=dtype)
    model = SearchR3.from_pretrained(name, dtype="fp32", device="cpu")
    quantize_int8(model, keep=tuple(keep))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--dtypes", nargs="+", default=None, help="default: fp32, then bf16 and int8 where this CPU runs them fast")
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--split", default="test", help="the sets' split (dev where a choice is being made)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--docs", type=int, default=600)
    parser.add_argument("--int8-keep", nargs="+", default=None, metavar="LAYER",
                        help="also time int8 with these linear layers (name suffixes) left in fp32")
    parser.add_argument("--output", default=str(RESULTS / "precision"), help="path without extension")
    args = parser.parse_args()
    # each low precision where this CPU runs it fast (without VNNI/AMX int8 is many times slower than
    # fp32, see experiments/int8/, and its nDCG here would take hours); --dtypes forces any
    dtypes = args.dtypes or ["fp32", *(["bf16"] if cpu_supports_bf16() else []),
                             *(["int8"] if cpu_supports_int8_dot() else [])]
    if dtypes[0] != "fp32":
        parser.error("the first dtype is the reference and must be fp32")
    # each row's label and how its model is loaded: a dtype, or int8 with some layers kept in fp32
    variants = [(d, d, ()) for d in dtypes]
    if args.int8_keep:
        variants.append(("int8 keep " + "+".join(args.int8_keep), "int8", tuple(args.int8_keep)))
    samples = {}
    for name in args.sets:
        data = load_dataset(name, split=args.split)
        qids = RetrievalEvaluator(data, max_queries=args.queries).query_ids
        samples[name] = data.sample(qids, max_docs=args.docs)
    report = {"model": args.model, "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                                               "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                                               "native_bf16": cpu_supports_bf16(),
                                               "int8_dot": cpu_supports_int8_dot()},
              "split": args.split, "queries": args.queries, "docs": args.docs, "rows": []}
    reference: dict[str, tuple[np.ndarray, dict]] = {}
    for dtype, kind, keep in variants:
        model = _load(args.model, kind, keep)
        for name, sample in samples.items():
            print(f"{dtype} {name} ...", flush=True)
            retriever = TimedRetriever(model)
            _, per_query = RetrievalEvaluator(sample).run(retriever)
            ndcg = {q: s["ndcg@10"] for q, s in per_query.items()}
            row = {"dtype": dtype, "set": name, "docs": len(sample.corpus), "queries": len(ndcg),
                   "ndcg@10": float(np.mean(list(ndcg.values()))),
                   "docs_per_s": len(sample.corpus) / retriever.doc_seconds}
            if dtype == "fp32":
                reference[name] = (retriever.doc_vectors, ndcg)
            else:
                ref_vectors, ref_ndcg = reference[name]
                cos = np.sum(retriever.doc_vectors * ref_vectors, axis=1)
                diff, p = M.paired_randomization_test(ndcg, ref_ndcg)
                row.update({"delta_vs_fp32": diff, "p": p, "cosine_min": float(cos.min()),
                            "cosine_mean": float(cos.mean())})
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
            write(report, Path(args.output))
        del model


def write(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    lines = ["# Precision: what bf16 and int8 cost in nDCG@10 and buy in speed", "",
             f"Model `{report['model']}`; {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
             f"({m['torch_threads']} threads), native bf16: {m['native_bf16']}. Each set: {report['queries']} "
             f"{report['split']} "
             f"queries over a {report['docs']}-document sample (their judged documents and seeded random others), "
             "the same sample for every dtype. Δ: nDCG@10 minus fp32's (paired randomisation test p); the bar for "
             "offering a dtype is |Δ| ≤ 0.005 on every set.", "",
             "| set | dtype | nDCG@10 | Δ vs fp32 (p) | cosine to fp32, min / mean | docs/s | × fp32 speed |",
             "|---|---|---:|---:|---:|---:|---:|"]
    fp32 = {r["set"]: r for r in report["rows"] if r["dtype"] == "fp32"}
    for r in report["rows"]:
        ref = fp32.get(r["set"])
        delta = f"{r['delta_vs_fp32']:+.4f} ({r['p']:.2f})" if "delta_vs_fp32" in r else "–"
        cos = f"{r['cosine_min']:.4f} / {r['cosine_mean']:.4f}" if "cosine_min" in r else "–"
        speed = f"{r['docs_per_s'] / ref['docs_per_s']:.2f}×" if ref else "–"
        lines.append(f"| {r['set']} | {r['dtype']} | {r['ndcg@10']:.4f} | {delta} | {cos} | {r['docs_per_s']:.2f} | "
                     f"{speed} |")
    verdict = []
    for dtype in sorted({r["dtype"] for r in report["rows"]} - {"fp32"}):
        rows = [r for r in report["rows"] if r["dtype"] == dtype]
        worst = max(abs(r["delta_vs_fp32"]) for r in rows)
        verdict.append(f"- {dtype}: largest |Δ| {worst:.4f} over {len(rows)} sets "
                       f"({'within' if worst <= 0.005 else 'outside'} the 0.005 bar); "
                       f"min cosine {min(r['cosine_min'] for r in rows):.4f}")
    lines += ["", *verdict]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
