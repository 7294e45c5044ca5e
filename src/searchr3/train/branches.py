"""Exploration branches for Stage 2: compare reasoning with the direct vector even when the policy
has stopped reasoning.

A policy taught *when not to reason* (the RFT rounds) emits the embed token first with probability
~0.97; under top-p 0.95 that token is the whole nucleus, every rollout of a group is the direct
vector, the group ties and GRPO learns nothing. So each group keeps `G − b` rollouts drawn by the
policy itself (the *natural* branch: mostly the direct vector) and adds `b` drawn with the token
barred for their first few steps (the *exploring* branch). Two signals come out of a group:

- the reasoning's content: advantages taken within each branch, so exploring traces compete with each
  other and are not all pushed down because direct happened to win;
- the decision: whether this query's reasoning beat its direct vector (mean reward, by a margin),
  a label for the first step's probability of the token (`decision_loss`).

Rollouts are laid out per group as [natural..., exploring...]. Pure functions, no model.
"""

from __future__ import annotations

import numpy as np
import torch

from . import reward


def branch_advantages(rewards: np.ndarray, group: int, exploring: int, norm: str = "mean") -> np.ndarray:
    """Advantages within each branch of each group (a branch of one rollout gets 0: nothing to compare)."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.size % group:
        raise ValueError(f"{r.size} rewards do not form groups of {group}")
    if not 0 <= exploring < group:
        raise ValueError(f"exploring members must be 0 to {group - 1}, got {exploring}")
    g = r.reshape(-1, group)
    out = np.zeros_like(g)
    for lo, hi in ((0, group - exploring), (group - exploring, group)):
        if hi - lo >= 2:
            out[:, lo:hi] = reward.group_advantages(g[:, lo:hi].reshape(-1), hi - lo, norm=norm).reshape(-1, hi - lo)
    return out.reshape(-1)


def decision_labels(rewards: np.ndarray, lengths: np.ndarray, group: int, margin: float) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """Per group: 1 where its reasoning rollouts (length > 0) beat its direct ones (length 0) by more
    than `margin` in mean reward, 0 where not, NaN where one kind is missing; and the gain (reasoning
    mean − direct mean, NaN where missing)."""
    r = np.asarray(rewards, dtype=np.float64).reshape(-1, group)
    reasoned = np.asarray(lengths).reshape(-1, group) > 0
    labels = np.full(len(r), np.nan)
    gains = np.full(len(r), np.nan)
    for i, (row, mask) in enumerate(zip(r, reasoned)):
        if mask.any() and (~mask).any():
            gains[i] = row[mask].mean() - row[~mask].mean()
            labels[i] = float(gains[i] > margin)
    return labels, gains


def decision_loss(logp_token: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on the first step: `logp_token` (Q,) is the log-probability of emitting the
    embed token at once, `labels` (Q,) 1 = reason, 0 = emit at once, NaN = no label (left out).
    Zero when no query has a label."""
    known = ~torch.isnan(labels)
    if not bool(known.any()):
        return logp_token.sum() * 0.0  # keeps the graph, adds nothing
    logp, y = logp_token[known], labels[known].to(logp_token.dtype)
    # log(1 − p) computed stably from log p
    log_reason = torch.log(-torch.expm1(logp.clamp(max=-1e-7)))
    return -(y * log_reason + (1 - y) * logp).mean()
