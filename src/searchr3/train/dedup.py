"""Exact de-duplication of training examples against the bundled test splits.

An example is dropped when its query or its positive equals, after case folding and
whitespace collapsing, a query or a document of a test split. A training split judged over
the same corpus folder as a test split (SciFact train and test, wiki-known-item train and
test) is checked against that split's queries and the documents its queries are judged
relevant to, not against the whole shared corpus: the issue allows train judgements over an
evaluation corpus, and every positive would otherwise match. Every other training set is
checked against the test split's whole corpus.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..data import load_dataset
from ..prompts import document_text

if TYPE_CHECKING:  # examples.py calls deduplicate: a runtime import would close a circle
    from .examples import Example

# The test splits every Stage-1 run is de-duplicated against (SFTConfig.dedup_against).
BUNDLED_TEST_SETS = ("scifact", "birco-arguana", "birco-wtb", "rarb-alphanli", "wiki-known-item")


def normalise(text: str) -> str:
    """Case-folded text with runs of whitespace as one space: the key of an exact match.

    >>> normalise("  The  Cat\\nsat ")
    'the cat sat'
    """
    return " ".join(text.casefold().split())


def _document_keys(title: str, text: str) -> set[str]:
    return {k for k in (normalise(document_text(title, text)), normalise(text)) if k}


@dataclass(frozen=True)
class SplitTexts:
    """The normalised texts of one test split; `folder` names its corpus (a shared one is the same folder)."""

    name: str
    folder: Path
    queries: frozenset[str]
    judged: frozenset[str]  # documents judged relevant to a test query
    corpus: frozenset[str]  # every corpus document (title + body, and body alone)

    @classmethod
    def load(cls, name: str, split: str = "test") -> SplitTexts:
        data = load_dataset(name, split)
        relevant = {d for q in data.qrels.values() for d, r in q.items() if r > 0}
        judged, corpus = set(), set()
        for d in data.corpus:
            keys = _document_keys(d.title, d.text)
            corpus |= keys
            if d.id in relevant:
                judged |= keys
        return cls(name, data.path.resolve(), frozenset(normalise(q) for q in data.queries.values()),
                   frozenset(judged), frozenset(corpus))


def forbidden_texts(tests: Iterable[SplitTexts], folder: Path | None) -> frozenset[str]:
    """Texts a training split judged over the corpus in `folder` may not use as query or positive."""
    out: set[str] = set()
    for t in tests:
        out |= t.queries | (t.judged if folder is not None and Path(folder).resolve() == t.folder else t.corpus)
    return frozenset(out)


def deduplicate(examples: Sequence[Example], forbidden: frozenset[str]) -> tuple[list[Example], list[Example]]:
    """Return (kept, removed): removed are the examples whose query or positive is in `forbidden`
    (normalised texts). A positive is matched whole and without its first line, the title
    `prompts.document_text` puts there. Pure: order is kept, nothing is loaded."""
    kept, removed = [], []
    for e in examples:
        title, newline, body = e.positive.partition("\n")
        keys = {normalise(e.query), normalise(e.positive)} | ({normalise(body)} if newline else set())
        (removed if keys & forbidden else kept).append(e)
    return kept, removed
