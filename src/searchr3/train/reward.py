"""Stage-2 rewards: pure functions from rankings and rollout facts to one number per rollout.

nDCG@k is computed by `metrics.per_query` (trec_eval), so training and evaluation can never
disagree on what nDCG is. The dense forms score the positive's rank over the whole corpus
(`rank_rewards`) plus a bounded similarity margin (`margin_bonus`), so ranks past k still count
and rollouts that all rank the positive first still differ. The exponential DCG form (gain 2^rel − 1) is
trec_eval's linear form on remapped grades; for binary relevance the two are equal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .. import metrics

GAINS = ("linear", "exponential")
REWARDS = ("ndcg", "rank", "reciprocal_rank")


def ndcg_rewards(qrels: Sequence[Mapping[str, int]], rankings: Sequence[Sequence[str]], k: int,
                 gain: str = "linear") -> np.ndarray:
    """nDCG@k of each rollout's ranking against its query's judgements, shape (R,).

    Args:
        qrels: per rollout, {doc id: grade} of its query (rollouts of one query share it).
        rankings: per rollout, doc ids best first (at least the top k).
        k: cut-off.
        gain: "linear" (gain = grade, trec_eval) or "exponential" (gain = 2^grade − 1).
    """
    if gain not in GAINS:
        raise ValueError(f"gain must be one of {GAINS}, got {gain!r}")
    if len(qrels) != len(rankings):
        raise ValueError(f"{len(qrels)} qrels for {len(rankings)} rankings")
    judged = {}
    run = {}
    for r, (rel, ranked) in enumerate(zip(qrels, rankings)):
        grades = {d: (2 ** int(g) - 1 if gain == "exponential" else int(g)) for d, g in rel.items()}
        judged[str(r)] = grades
        run[str(r)] = {d: float(len(ranked) - i) for i, d in enumerate(ranked[:k])}
    scores = metrics.per_query(judged, run, (f"ndcg@{k}",))
    return np.array([scores.get(str(r), {}).get(f"ndcg@{k}", 0.0) for r in range(len(rankings))])


def positive_ranks(scores: np.ndarray, relevant: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """The rank (1-based) of each rollout's best-scored relevant document over the whole corpus, and
    its similarity margin over the best non-relevant one.

    Args:
        scores: (R, N) similarity of each rollout vector to every corpus document.
        relevant: per rollout, the corpus rows relevant to its query (none: rank N + 1, margin 0).

    Returns (ranks (R,) int, margins (R,) float): rank = 1 + the non-relevant documents scored above
    the best relevant one; margin = best relevant score − best non-relevant score (> 0 at rank 1).

    >>> positive_ranks(np.array([[0.9, 0.5, 0.7], [0.1, 0.5, 0.3]]), [[1], [1]])
    (array([3, 1]), array([-0.4,  0.2]))
    """
    s = np.asarray(scores, dtype=np.float64)
    if len(relevant) != s.shape[0]:
        raise ValueError(f"{len(relevant)} relevance lists for {s.shape[0]} rollouts")
    ranks, margins = np.zeros(s.shape[0], dtype=np.int64), np.zeros(s.shape[0])
    for i, rows in enumerate(relevant):
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:  # nothing to find: ranked past the corpus, no margin
            ranks[i] = s.shape[1] + 1
            continue
        others = np.delete(s[i], rows)
        best = s[i, rows].max()
        ranks[i] = 1 + int((others > best).sum())
        margins[i] = best - (others.max() if others.size else best - 1.0)
    return ranks, np.round(margins, 12)


def rank_rewards(ranks: np.ndarray, form: str, depth: int = 100) -> np.ndarray:
    """A dense ranking reward from the positive's rank, so ranks past 10 still count.

    "rank" (piecewise, after ConvSearch-R1): 1 at rank 1, falling linearly to 0.5 at rank 10 and
    to 0 at `depth`, 0 beyond. "reciprocal_rank": 1 / rank over the whole corpus.

    >>> rank_rewards(np.array([1, 10, 55, 100, 500]), "rank").round(3).tolist()
    [1.0, 0.5, 0.25, 0.0, 0.0]
    """
    r = np.asarray(ranks, dtype=np.float64)
    if np.any(r < 1):
        raise ValueError("ranks are 1-based")
    if form == "reciprocal_rank":
        return 1.0 / r
    if form != "rank":
        raise ValueError(f"form must be rank or reciprocal_rank, got {form!r}")
    if depth <= 10:
        raise ValueError(f"depth must be > 10, got {depth}")
    top = 1.0 - 0.5 * (r - 1) / 9
    tail = np.clip(0.5 * (depth - r) / (depth - 10), 0.0, None)
    return np.where(r <= 10, top, tail)


def margin_bonus(margins: np.ndarray, weight: float, scale: float) -> np.ndarray:
    """weight · tanh(margin / scale): a small, bounded term that still orders rollouts that all rank
    the positive first (or all miss it), so their group is not a tie."""
    return weight * np.tanh(np.asarray(margins, dtype=np.float64) / scale)


def shaped_rewards(ndcg: np.ndarray, forced: Sequence[bool], lengths: Sequence[int], format_penalty: float,
                   length_penalty: float = 0.0, length_free: int = 0) -> np.ndarray:
    """Ranking reward minus a format penalty (the embed token had to be forced) and an optional
    per-token penalty on reasoning beyond `length_free` tokens."""
    ndcg = np.asarray(ndcg, dtype=np.float64)
    forced_ = np.asarray(forced, dtype=np.float64)
    extra = np.maximum(np.asarray(lengths, dtype=np.float64) - length_free, 0.0)
    return ndcg - format_penalty * forced_ - length_penalty * extra


NORMS = ("std", "mean")


def group_advantages(rewards: np.ndarray, group: int, eps: float = 1e-6, norm: str = "std") -> np.ndarray:
    """GRPO advantages: each reward minus its group's mean, divided by the group's std ("std") or
    not ("mean", Dr. GRPO: dividing by a tiny std turns a near-tie into full-size advantages).

    `rewards` holds consecutive groups of `group` rollouts of the same query. A group whose
    rollouts all scored the same carries no signal and gets zero advantages.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    r = np.asarray(rewards, dtype=np.float64)
    if r.size % group:
        raise ValueError(f"{r.size} rewards do not form groups of {group}")
    g = r.reshape(-1, group)
    adv = g - g.mean(axis=1, keepdims=True)
    if norm == "std":
        adv = adv / (g.std(axis=1, keepdims=True) + eps)
    return adv.reshape(-1)


def tied_groups(rewards: np.ndarray, group: int, tol: float = 1e-9) -> np.ndarray:
    """(groups,) True where every rollout of a group got the same reward: no signal (dynamic sampling drops them)."""
    g = np.asarray(rewards, dtype=np.float64).reshape(-1, group)
    return np.ptp(g, axis=1) <= tol


def group_stats(ndcg: np.ndarray, group: int) -> dict[str, float]:
    """How much ranking signal a batch of groups holds: the mean within-group std, the share of
    groups whose rollouts all tied, and the share that tied because every rollout was perfect.

    A tie at nDCG 1 is a query too easy for the corpus: no group size can break it, whereas a
    tie below 1 is one that more (or more varied) rollouts might.
    """
    g = np.asarray(ndcg, dtype=np.float64)
    if g.size % group:
        raise ValueError(f"{g.size} scores do not form groups of {group}")
    g = g.reshape(-1, group)
    std = g.std(axis=1)
    tied = std < 1e-9
    return {"ndcg_group_std": float(std.mean()), "ndcg_tied_groups": float(tied.mean()),
            "ndcg_perfect_groups": float(np.mean(tied & (g[:, 0] > 1 - 1e-9)))}


def fidelity(cached: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """How well rewards on cached vectors match rewards after an exact re-encode.

    Spearman rank correlation (1.0 when both are constant and equal) and mean absolute
    difference.
    """
    from .._extras import require

    spearmanr = require("train", "scipy.stats").spearmanr

    a, b = np.asarray(cached, dtype=np.float64), np.asarray(exact, dtype=np.float64)
    mad = float(np.mean(np.abs(a - b))) if a.size else 0.0
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        rho = 1.0 if np.array_equal(a, b) else 0.0
    else:
        rho = float(spearmanr(a, b).statistic)
    return {"spearman": rho, "mean_abs_diff": mad}
