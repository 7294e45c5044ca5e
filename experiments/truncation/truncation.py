"""How much retrieval signal lies past the first N tokens of each document?

The released adapter embeds 128 text tokens per document (the CPU budget), yet 97% of
SciFact's abstracts are longer. This ablation keeps only each document's first N SmolLM2
tokens and scores BM25 on the test splits: the drop from the full text bounds what the
truncation costs any retriever. Writes experiments/truncation/results/truncation.{json,md}.

    python experiments/truncation/truncation.py
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from transformers import AutoTokenizer

from searchr3.assets import DEFAULT_MODEL, resolve_model
from searchr3.baselines import BM25Retriever
from searchr3.data import Document, load_dataset
from searchr3.evaluate import RetrievalEvaluator
from searchr3.prompts import document_text

SETS = ["scifact", "birco-arguana", "birco-wtb", "rarb-alphanli", "wiki-known-item"]
LENGTHS = [64, 128, 256, 512, None]
OUT = Path(__file__).resolve().parent / "results"


def truncate(corpus: list[Document], tokenizer, n: int | None) -> list[Document]:
    """Documents whose title + text is cut to the first `n` tokens (None: unchanged)."""
    if n is None:
        return corpus
    texts = [document_text(d.title, d.text) for d in corpus]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [Document(d.id, "", tokenizer.decode(i[:n])) for d, i in zip(corpus, ids)]


def main() -> None:
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))
    rows = []
    for name in SETS:
        data = load_dataset(name, "test")
        lengths = [len(x) for x in tokenizer([document_text(d.title, d.text) for d in data.corpus],
                                                add_special_tokens=False)["input_ids"]]
        row = {"data": name, "docs": len(lengths), "share_over_128": sum(n > 128 for n in lengths) / len(lengths)}
        for n in LENGTHS:
            cut = dataclasses.replace(data, corpus=truncate(data.corpus, tokenizer, n))
            row[str(n or "full")] = RetrievalEvaluator(cut)(BM25Retriever())["ndcg@10"]
        rows.append(row)
        print(row)
    cols = [str(n or "full") for n in LENGTHS]
    md = ["# BM25 nDCG@10 (test) with documents cut to their first N SmolLM2 tokens", "",
          "| data | docs over 128 tokens | " + " | ".join(f"N={c}" for c in cols) + " |",
          "|---|---:|" + "---:|" * len(cols)]
    md += [f"| {r['data']} | {r['share_over_128']:.0%} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |"
           for r in rows]
    (OUT / "truncation.md").write_text("\n".join(md) + "\n")
    (OUT / "truncation.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
