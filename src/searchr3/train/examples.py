"""Stage-1 training examples: (query, positive, hard negatives) from named training sources.

Sources are `dataset:split` names whose split is a training split (never `test`). Hard
negatives are BM25 results of the query over the source's own corpus at ranks
[neg_rank_min, neg_rank_max), never a document relevant to that query.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..baselines import BM25Retriever, SearchR3Retriever
from ..data import Dataset, load_dataset
from ..evaluate import RetrievalEvaluator
from ..prompts import document_text

FORBIDDEN_SPLITS = ("test",)


@dataclass(frozen=True)
class Example:
    source: str
    query_id: str
    query: str
    positive_id: str
    positive: str  # document text as embedded (title + body)
    negative_ids: tuple[str, ...]
    negatives: tuple[str, ...]
    relevant_ids: frozenset[str]  # every document relevant to the query (masked as negatives)


def parse_source(source: str) -> tuple[str, str]:
    """Split "name:split" and refuse test splits."""
    name, _, split = source.partition(":")
    if not split:
        raise ValueError(f"training source {source!r} must name a split, e.g. 'scifact:train'")
    if split in FORBIDDEN_SPLITS:
        raise ValueError(f"training source {source!r} uses a test split; training on test data is not allowed")
    return name, split


def mine_examples(dataset: Dataset, source: str, negatives: int, rank_min: int, rank_max: int,
                  max_examples: int | None, rng: random.Random) -> list[Example]:
    """One example per (query, relevant document); negatives sampled from BM25 ranks [rank_min, rank_max)."""
    run = BM25Retriever().retrieve(dataset.corpus, dataset.queries, k=rank_max).run
    texts = {d.id: document_text(d.title, d.text) for d in dataset.corpus}
    examples = []
    for qid in sorted(dataset.qrels):
        relevant = frozenset(d for d, r in dataset.qrels[qid].items() if r > 0)
        ranked = [d for d, _ in sorted(run.get(qid, {}).items(), key=lambda x: (-x[1], x[0]))]
        pool = [d for d in ranked[rank_min:rank_max] if d not in relevant]
        if len(pool) < negatives:  # short BM25 list: fall back to random non-relevant documents
            others = [d for d in texts if d not in relevant and d not in pool]
            pool += rng.sample(others, min(len(others), negatives - len(pool)))
        for pos in sorted(relevant):
            negs = tuple(rng.sample(pool, negatives))
            examples.append(Example(source, qid, dataset.queries[qid], pos, texts[pos], negs,
                                    tuple(texts[n] for n in negs), relevant))
    rng.shuffle(examples)
    return examples[:max_examples] if max_examples else examples


def build_examples(sources: Sequence[str], negatives: int = 1, rank_min: int = 3, rank_max: int = 30,
                   max_per_source: int | None = None, seed: int = 0) -> list[Example]:
    """Training examples from every source, shuffled with `seed`."""
    rng = random.Random(seed)
    examples: list[Example] = []
    for source in sources:
        name, split = parse_source(source)
        examples += mine_examples(load_dataset(name, split), source, negatives, rank_min, rank_max,
                                  max_per_source, rng)
    rng.shuffle(examples)
    return examples


def pooled_dev_set(source: str, queries: int, depth: int, seed: int = 0) -> Dataset:
    """A cheap dev set: a seeded sample of queries, corpus cut to their BM25 top-`depth` plus positives.

    Scores on it are pooled (re-ranking) scores, comparable across checkpoints of one run,
    not with full-corpus test numbers.
    """
    name, split = parse_source(source)
    full = load_dataset(name, split)
    qids = sorted(full.qrels)
    qids = sorted(random.Random(seed).sample(qids, min(queries, len(qids))))
    sub = {q: full.queries[q] for q in qids}
    run = BM25Retriever().retrieve(full.corpus, sub, k=depth).run
    keep = {d for q in qids for d in run.get(q, {})} | {d for q in qids for d in full.qrels[q]}
    corpus = [d for d in full.corpus if d.id in keep]
    return Dataset(f"{full.name}-pooled", full.path, split, corpus, sub, {q: full.qrels[q] for q in qids})


class PooledDev:
    """The dev number a trainer tracks: metrics on `pooled_dev_set`, built on first use (so a
    run that never evaluates never mines it), with or without reasoning."""

    def __init__(self, source: str, queries: int, depth: int, seed: int = 0, reasoning: bool = False):
        self.source, self.queries, self.depth, self.seed, self.reasoning = source, queries, depth, seed, reasoning
        self.evaluator = None

    def __call__(self, model) -> dict[str, float]:
        if self.evaluator is None:
            self.evaluator = RetrievalEvaluator(pooled_dev_set(self.source, self.queries, self.depth, self.seed))
        model.model.eval()
        scores = self.evaluator(SearchR3Retriever(model, reasoning=self.reasoning, use_cache=False))
        return {f"dev_{k}": v for k, v in scores.items()}
