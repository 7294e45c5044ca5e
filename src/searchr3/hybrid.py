"""Hybrid ranking: fuse a dense ranking with a lexical (BM25) one. Pure functions, no models.

Two fusions, both over the top `depth` candidates of each side:

- **rrf**, reciprocal-rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009): a document scores
  `weight / (rrf_k + dense rank) + (1 - weight) / (rrf_k + lexical rank)`, ranks from 1.
  Only ranks count, so the two sides' score scales never need to agree. Equal scores on a
  side share the best rank of the group, so a tie is never broken by the order of the input.
- **score**, normalised score fusion: each side's scores are min-max scaled to [0, 1] over its
  candidates (all 1 when they are equal), and a document scores
  `weight * dense + (1 - weight) * lexical`.

A document that only one side returned gets nothing from the other side. The fused ranking is
best first, equal fused scores ordered by id, so it is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

METHODS = ("rrf", "score")


@dataclass
class HybridConfig:
    """How to fuse (the `hybrid:` section of configs/hybrid.yaml and configs/serve.yaml)."""

    # "score" (min-max normalised scores) or "rrf" (reciprocal-rank fusion); score 0.5 won the
    # dev grid (docs/hybrid.md: +0.024 nDCG@10 over rrf 0.5 on wiki-known-item dev, p < 0.001)
    method: str = field(default="score", metadata={"choices": METHODS})
    weight: float = field(default=0.5, metadata={"ge": 0.0, "le": 1.0})  # the dense side's share; BM25 gets the rest
    depth: int = field(default=100, metadata={"ge": 1})  # candidates taken from each side before fusing
    rrf_k: int = field(default=60, metadata={"ge": 0})  # RRF's constant; 60 is Cormack et al.'s (2009)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"hybrid method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"hybrid weight is the dense side's share and must be in [0, 1], got {self.weight}")
        if self.depth < 1:
            raise ValueError(f"hybrid depth must be >= 1, got {self.depth}")
        if self.rrf_k < 0:
            raise ValueError(f"hybrid rrf_k must be >= 0, got {self.rrf_k}")


def load_hybrid_config(path: str | Path | None) -> HybridConfig:
    """The `hybrid:` section of a YAML file; no file or no section gives the defaults."""
    from .config import load_section

    return load_section(path, "hybrid", HybridConfig) if path else HybridConfig()


def _ranked(scores: Mapping[str, float], depth: int) -> list[tuple[str, float]]:
    """The `depth` best (id, score) pairs, best first, equal scores by id."""
    return sorted(scores.items(), key=lambda x: (-x[1], x[0]))[:depth]


def _rrf(ranked: list[tuple[str, float]], k: int) -> dict[str, float]:
    """1 / (k + rank) per id; tied scores share the best rank of their group (1, 2, 2, 4)."""
    out, rank, previous = {}, 0, None
    for n, (doc, score) in enumerate(ranked, start=1):
        if score != previous:
            rank, previous = n, score
        out[doc] = 1.0 / (k + rank)
    return out


def _minmax(ranked: list[tuple[str, float]]) -> dict[str, float]:
    """Scores scaled to [0, 1] over the candidates; all 1 when they are equal."""
    if not ranked:
        return {}
    high, low = ranked[0][1], ranked[-1][1]
    return {doc: (s - low) / (high - low) if high > low else 1.0 for doc, s in ranked}


def fuse(dense: Mapping[str, float], lexical: Mapping[str, float],
         config: HybridConfig | None = None) -> dict[str, float]:
    """Fuse two {id: score} rankings into one {id: fused score}, best first.

    >>> fuse({"a": 0.9, "b": 0.8}, {"b": 12.0, "c": 3.0}, HybridConfig(method="rrf", rrf_k=0))
    {'b': 0.75, 'a': 0.5, 'c': 0.25}
    """
    config = config or HybridConfig()
    d, lx = _ranked(dense, config.depth), _ranked(lexical, config.depth)
    if config.method == "rrf":
        d_part, l_part = _rrf(d, config.rrf_k), _rrf(lx, config.rrf_k)
    else:
        d_part, l_part = _minmax(d), _minmax(lx)
    w = config.weight
    fused = {doc: w * d_part.get(doc, 0.0) + (1 - w) * l_part.get(doc, 0.0) for doc in {*d_part, *l_part}}
    return dict(sorted(fused.items(), key=lambda x: (-x[1], x[0])))
