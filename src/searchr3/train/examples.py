"""Stage-1 training examples: (query, positive, hard negatives) from named training sources.

Sources are `dataset:split` names whose split is a training split (never `test`). Hard
negatives are the set's own when it supplies them (`Dataset.negatives`: WordNet's hypernym
siblings), else BM25 results of the query over the source's own corpus at ranks
[neg_rank_min, neg_rank_max); never a document relevant to that query. Examples equal to a
test query or document are dropped (`dedup.py`), then sources are mixed by weight (`mix`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..baselines import BM25Retriever, SearchR3Retriever
from ..data import Dataset, load_dataset
from ..evaluate import RetrievalEvaluator
from ..prompts import document_text
from .dedup import SplitTexts, deduplicate, forbidden_texts

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
    """One example per (query, relevant document). Negatives are sampled from the set's own for
    the query when it supplies at least `negatives` of them, else from BM25 ranks [rank_min, rank_max)."""
    relevant_of = {q: frozenset(d for d, r in dataset.qrels[q].items() if r > 0) for q in dataset.qrels}
    supplied = {q: [d for d in dataset.negatives.get(q, ()) if d not in relevant_of[q]] for q in dataset.qrels}
    lexical = {q: dataset.queries[q] for q in dataset.qrels if not supplied[q] or len(supplied[q]) < negatives}
    run = BM25Retriever().retrieve(dataset.corpus, lexical, k=rank_max).run if lexical else {}
    texts = {d.id: document_text(d.title, d.text) for d in dataset.corpus}
    examples = []
    for qid in sorted(dataset.qrels):
        relevant = relevant_of[qid]
        if qid in lexical:
            ranked = [d for d, _ in sorted(run.get(qid, {}).items(), key=lambda x: (-x[1], x[0]))]
            pool = [d for d in ranked[rank_min:rank_max] if d not in relevant]
        else:
            pool = supplied[qid]
        if len(pool) < negatives:  # short BM25 list: fall back to random non-relevant documents
            others = [d for d in texts if d not in relevant and d not in pool]
            pool += rng.sample(others, min(len(others), negatives - len(pool)))
        for pos in sorted(relevant):
            negs = tuple(rng.sample(pool, negatives))
            examples.append(Example(source, qid, dataset.queries[qid], pos, texts[pos], negs,
                                    tuple(texts[n] for n in negs), relevant))
    rng.shuffle(examples)
    return examples[:max_examples] if max_examples else examples


def mix(by_source: Mapping[str, Sequence[Example]], weights: Mapping[str, float], total: int,
        rng: random.Random) -> list[Example]:
    """`total` examples, source s giving its share total·w_s/Σw (largest remainders round), shuffled.

    A source with more examples than its share gives a sample without replacement; one with
    fewer repeats all of them as often as fits, plus a sample for the rest. So the weights, not
    the sizes, decide what a run sees: 164k WordNet pairs cannot drown 900 SciFact ones.
    """
    missing = [s for s in by_source if s not in weights]
    if missing or any(not weights[s] > 0 for s in by_source):
        raise ValueError(f"every source needs a weight > 0 (missing or not positive: "
                         f"{missing or [s for s in by_source if not weights[s] > 0]})")
    empty = [s for s, examples in by_source.items() if not examples]
    if empty:
        raise ValueError(f"source {empty[0]!r} has no examples left to mix")
    names = list(by_source)
    norm = sum(weights[s] for s in names)
    quotas = [total * weights[s] / norm for s in names]
    counts = [int(q) for q in quotas]
    for i in sorted(range(len(names)), key=lambda i: counts[i] - quotas[i])[:total - sum(counts)]:
        counts[i] += 1
    mixed: list[Example] = []
    for name, count in zip(names, counts):
        pool = list(by_source[name])
        whole, rest = divmod(count, len(pool))
        mixed += pool * whole + rng.sample(pool, rest)
    rng.shuffle(mixed)
    return mixed


@dataclass
class TrainingSet:
    """The examples a trainer uses and, per source, how they were counted on the way (for the card)."""

    examples: list[Example]
    # source -> {"mined", "deduplicated" (removed as equal to a test text), "kept" (after the cap), "mixed"}
    report: dict[str, dict[str, int]] = field(default_factory=dict)


def build_examples(sources: Sequence[str], negatives: int = 1, rank_min: int = 3, rank_max: int = 30,
                   max_per_source: int | None = None, seed: int = 0, weights: Mapping[str, float] | None = None,
                   dedup_against: Sequence[str] = (), total: int | None = None) -> TrainingSet:
    """Training examples from every source, shuffled with `seed`.

    Each source is mined, cleared of examples equal to a text of a `dedup_against` set's test
    split, and cut to `max_per_source`; with `weights` the sources are then mixed by weight
    (`mix`: `total` examples, by default as many as the sources kept), else simply pooled.
    """
    rng = random.Random(seed)
    tests = [SplitTexts.load(name) for name in dedup_against]
    by_source: dict[str, list[Example]] = {}
    report: dict[str, dict[str, int]] = {}
    for source in sources:
        name, split = parse_source(source)
        dataset = load_dataset(name, split)
        mined = mine_examples(dataset, source, negatives, rank_min, rank_max, None, rng)
        kept, removed = deduplicate(mined, forbidden_texts(tests, dataset.path)) if tests else (mined, [])
        by_source[source] = kept[:max_per_source] if max_per_source else kept
        report[source] = {"mined": len(mined), "deduplicated": len(removed), "kept": len(by_source[source])}
    if weights:
        examples = mix(by_source, weights, total or sum(len(v) for v in by_source.values()), rng)
    else:
        examples = [e for source in sources for e in by_source[source]]
        rng.shuffle(examples)
    for source in sources:
        report[source]["mixed"] = sum(e.source == source for e in examples)
    return TrainingSet(examples, report)


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
