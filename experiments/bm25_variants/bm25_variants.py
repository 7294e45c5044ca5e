"""Why our BM25 differs from the reference numbers in data/*/README.md.

The references were computed with lowercase alphanumeric tokens, a tiny stop list and no
stemming; searchr3's BM25 uses Snowball stemming and the standard English stop list. This
script scores the bundled test splits under each tokenisation (and ArguAna's identical-id
rule), writing experiments/bm25_variants/results/bm25_variants.{json,md}.

    python experiments/bm25_variants/bm25_variants.py
"""

from __future__ import annotations

import json
from pathlib import Path

import bm25s
import numpy as np

from searchr3.baselines import BM25Retriever, Retrieval
from searchr3.data import load_dataset
from searchr3.evaluate import RetrievalEvaluator
from searchr3.prompts import document_text

RESULTS = Path(__file__).resolve().parent / "results"
REFERENCE = {"scifact": 0.661, "birco-arguana": 0.352, "birco-wtb": 0.156, "rarb-alphanli": 0.357}


class PlainBM25:
    """bm25s with its default tokeniser (lowercase words), no stop words, no stemming."""

    def retrieve(self, corpus, queries, k=100):
        model = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
        model.index(bm25s.tokenize([document_text(d.title, d.text) for d in corpus], stopwords=None,
                                   show_progress=False), show_progress=False)
        qids = list(queries)
        tokens = bm25s.tokenize([queries[q] for q in qids], stopwords=None, show_progress=False)
        docs, scores = model.retrieve(tokens, k=min(k, len(corpus)), show_progress=False)
        ids = np.array([d.id for d in corpus], dtype=object)
        return Retrieval({q: {ids[j]: float(s) for j, s in zip(docs[i], scores[i])} for i, q in enumerate(qids)}, {})


def main() -> None:
    variants = {"stem + stop words (searchr3)": lambda: BM25Retriever(),
                "stop words, no stem": lambda: BM25Retriever(stem=False),
                "plain tokens": PlainBM25}
    table = {}
    for name in REFERENCE:
        ds = load_dataset(name)
        row = {v: RetrievalEvaluator(ds)(make())["ndcg@10"] for v, make in variants.items()}
        row["plain tokens, identical ids kept"] = RetrievalEvaluator(ds, ignore_identical_ids=False)(PlainBM25())["ndcg@10"]
        row["reference (data README)"] = REFERENCE[name]
        table[name] = row
        print(name, {k: round(v, 3) for k, v in row.items()}, flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bm25_variants.json").write_text(json.dumps(table, indent=2) + "\n")
    cols = list(next(iter(table.values())))
    lines = ["# BM25 nDCG@10 (test) by tokenisation", "", "| set | " + " | ".join(cols) + " |",
             "|---|" + "---:|" * len(cols)]
    lines += [f"| {n} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |" for n, r in table.items()]
    (RESULTS / "bm25_variants.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
