"""Connect a model to an index: build an index from documents, search it with queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


from .data import Document
from .index import VectorIndex
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


def build_index(model: SearchR3, documents: Sequence[Document], kind: str = "flat",
                batch_size: int | None = None, show_progress: bool | None = None) -> VectorIndex:
    """Embed every document with `model` and return an index tagged with its name and weight fingerprint."""
    vectors = model.embed_documents([document_text(d.title, d.text) for d in documents],
                                    batch_size=batch_size, show_progress=show_progress)
    index = VectorIndex(model.dim, model.name, kind, fingerprint=model.weights_fingerprint)
    index.add([d.id for d in documents], vectors, [{"title": d.title, "text": d.text} for d in documents])
    return index


def search(model: SearchR3, index: VectorIndex, queries: Sequence[str], k: int = 10,
           reasoning: bool = False) -> list[SearchResult]:
    """Embed queries (optionally reasoning first) and return the top-k hits of each."""
    index.check_model(model.name, model.dim, model.weights_fingerprint)
    traces = None
    if reasoning:
        traces = model.reason(queries)
        vectors = model.stack(traces)
    else:
        vectors = model.embed_queries(queries)
    scores, ids = index.search(vectors, k)
    results = []
    for n, query in enumerate(queries):
        hits = []
        for doc_id, score in zip(ids[n], scores[n]):
            if doc_id is not None:
                doc = index.documents.get(doc_id, {})
                hits.append(Hit(doc_id, float(score), doc.get("title", ""), doc.get("text", "")))
        trace = traces[n] if traces else None
        results.append(SearchResult(query, hits, trace.trace if trace else None, trace.forced if trace else None))
    return results
