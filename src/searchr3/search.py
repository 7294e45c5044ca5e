"""Connect a model to an index: build an index from documents, search it with queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .data import Document
from .decoding import Reasoning
from .hybrid import HybridConfig, fuse
from .index import VectorIndex
from .lexical import BM25Index
from .modeling import SearchR3
from .prompts import document_text


@dataclass
class Hit:
    id: str
    score: float
    title: str = ""
    text: str = ""


@dataclass
class SearchResult:
    query: str
    hits: list[Hit]
    trace: str | None = None  # the reasoning trace, when reasoning was on
    forced: bool | None = None  # whether the embed token had to be appended


def build_index(model: SearchR3, documents: Sequence[Document], kind: str = "auto",
                batch_size: int | None = None, show_progress: bool | None = None) -> VectorIndex:
    """Embed every document with `model` and return an index tagged with its name and weight fingerprint."""
    vectors = model.embed_documents([document_text(d.title, d.text) for d in documents],
                                    batch_size=batch_size, show_progress=show_progress)
    index = VectorIndex(model.dim, model.name, kind, fingerprint=model.weights_fingerprint)
    index.add([d.id for d in documents], vectors, [{"title": d.title, "text": d.text} for d in documents])
    return index


def lexical_index(index: VectorIndex) -> BM25Index:
    """A BM25 index over the documents stored in `index` (title and body, as they were embedded)."""
    missing = [i for i in index.ids if i not in index.documents]
    if missing:
        raise ValueError(f"hybrid search needs the documents' texts, but the index stores none for "
                         f"{len(missing)} of its {len(index)} documents (e.g. {missing[0]!r}); build it with "
                         "`searchr3 index build` or `build_index`, which store them")
    docs = [index.documents[i] for i in index.ids]
    return BM25Index(index.ids, [document_text(d.get("title", ""), d.get("text", "")) for d in docs])


def search(model: SearchR3, index: VectorIndex, queries: Sequence[str], k: int = 10,
           reasoning: bool = False, hybrid: bool = False, hybrid_config: HybridConfig | None = None,
           lexical: BM25Index | None = None) -> list[SearchResult]:
    """Embed queries (optionally reasoning first) and return the top-k hits of each.

    With `hybrid`, the dense ranking is fused with BM25 over the index's stored texts (see
    `hybrid.fuse`; `hybrid_config` sets how, default `HybridConfig()`), and a hit's score is
    the fused score. BM25 sees the query as written, never the reasoning. The hits come from the
    union of each side's top `depth` (so fewer than k when k > depth and the sides overlap).
    `lexical` is a BM25 index of the same documents to reuse (the service keeps one); by
    default one is built here.
    """
    index.check_model(model.name, model.dim, model.weights_fingerprint)
    traces = model.reason(queries) if reasoning else None
    vectors = model.stack(traces) if reasoning else model.embed_queries(queries)
    return rank(index, queries, vectors, k, traces, hybrid, hybrid_config, lexical)


def rank(index: VectorIndex, queries: Sequence[str], vectors: np.ndarray, k: int = 10,
         traces: Sequence[Reasoning] | None = None, hybrid: bool = False,
         hybrid_config: HybridConfig | None = None, lexical: BM25Index | None = None) -> list[SearchResult]:
    """The top-k hits of queries already embedded (`vectors`, one row each; `traces` when they reasoned).

    `search` without the model: the service embeds on its model thread and ranks under the index's lock.
    """
    config = hybrid_config or HybridConfig()
    scores, ids = index.search(vectors, config.depth if hybrid else k)
    ranked = [{d: float(s) for d, s in zip(ids[n], scores[n]) if d is not None} for n in range(len(queries))]
    if hybrid:
        lexical = lexical if lexical is not None else lexical_index(index)
        words = lexical.search(queries, config.depth, matched_only=True)
        ranked = [dict(list(fuse(d, w, config).items())[:k]) for d, w in zip(ranked, words)]
    results = []
    for n, query in enumerate(queries):
        hits = []
        for doc_id, score in ranked[n].items():
            doc = index.documents.get(doc_id, {})
            hits.append(Hit(doc_id, score, doc.get("title", ""), doc.get("text", "")))
        trace = traces[n] if traces else None
        results.append(SearchResult(query, hits, trace.trace if trace else None, trace.forced if trace else None))
    return results
