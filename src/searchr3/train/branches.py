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


def decision_labels(rewards: np.ndarray, lengths: np.ndarray, forced: np.ndarray, group: int,
                    margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Per group: 1 where its reasoning rollouts (length > 0, from either branch) beat its direct ones
    by more than `margin` in mean reward, 0 where not, NaN where one kind is missing; and the gain
    (reasoning mean − direct mean, NaN where missing). A direct rollout is one that emitted the token
    at once; one that ended its turn at once (token appended, format penalty) is neither kind."""
    r = np.asarray(rewards, dtype=np.float64).reshape(-1, group)
    length = np.asarray(lengths).reshape(-1, group)
    reasoned = length > 0
    direct = (length == 0) & ~np.asarray(forced, dtype=bool).reshape(-1, group)
    labels = np.full(len(r), np.nan)
    gains = np.full(len(r), np.nan)
    for i in range(len(r)):
        if reasoned[i].any() and direct[i].any():
            gains[i] = r[i, reasoned[i]].mean() - r[i, direct[i]].mean()
            labels[i] = float(gains[i] > margin)
    return labels, gains


def decision_logps(logits: torch.Tensor, token_id: int) -> torch.Tensor:
    """(R, 2) log-probs of the first step's decision from its logits (R, V): emit the token at once, or
    anything else. Both from the logits, so log(1 − p) stays exact (and keeps its gradient) even
    where p rounds to 1 in fp32."""
    logits = logits.float()
    total = torch.logsumexp(logits, dim=-1)
    others = logits.index_fill(-1, torch.tensor([token_id], device=logits.device), float("-inf"))
    return torch.stack([logits[:, token_id] - total, torch.logsumexp(others, dim=-1) - total], dim=-1)


def decision_loss(logp_token: torch.Tensor, logp_reason: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on the first step: `logp_token` (Q,) is the log-probability of emitting the
    embed token at once and `logp_reason` (Q,) that of anything else (log(1 − p), computed from the
    logits so it keeps its gradient however sure the model is), `labels` (Q,) 1 = reason, 0 = emit
    at once, NaN = no label (left out). Zero when no query has a label."""
    known = ~torch.isnan(labels)
    if not bool(known.any()):
        return logp_token.sum() * 0.0  # keeps the graph, adds nothing
    y = labels[known].to(logp_token.dtype)
    return -(y * logp_reason[known] + (1 - y) * logp_token[known]).mean()
