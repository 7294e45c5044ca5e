"""Stage-2 rewards: pure functions from rankings and rollout facts to one number per rollout.

The ranking reward is nDCG@k computed by `metrics.per_query` (trec_eval), so training and
evaluation can never disagree on what nDCG is. The exponential DCG form (gain 2^rel − 1) is
trec_eval's linear form on remapped grades; for binary relevance the two are equal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .. import metrics

GAINS = ("linear", "exponential")


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


def shaped_rewards(ndcg: np.ndarray, forced: Sequence[bool], lengths: Sequence[int], format_penalty: float,
                   length_penalty: float = 0.0, length_free: int = 0) -> np.ndarray:
    """Ranking reward minus a format penalty (the embed token had to be forced) and an optional
    per-token penalty on reasoning beyond `length_free` tokens."""
    ndcg = np.asarray(ndcg, dtype=np.float64)
    forced_ = np.asarray(forced, dtype=np.float64)
    extra = np.maximum(np.asarray(lengths, dtype=np.float64) - length_free, 0.0)
    return ndcg - format_penalty * forced_ - length_penalty * extra


def group_advantages(rewards: np.ndarray, group: int, eps: float = 1e-6) -> np.ndarray:
    """GRPO advantages: each reward minus its group's mean, divided by the group's std.

    `rewards` holds consecutive groups of `group` rollouts of the same query. A group whose
    rollouts all scored the same carries no signal and gets zero advantages.
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.size % group:
        raise ValueError(f"{r.size} rewards do not form groups of {group}")
    g = r.reshape(-1, group)
    adv = (g - g.mean(axis=1, keepdims=True)) / (g.std(axis=1, keepdims=True) + eps)
    return adv.reshape(-1)


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
