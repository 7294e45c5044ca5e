"""Losses as pure functions on tensors: InfoNCE, triplet, KL to a reference, SFT, distillation from a
teacher's similarities (Stage 1), and GRPO's clipped policy-gradient and per-token KL estimate (Stage 2).

None of these calls a model. Symbols follow the Search-R3 paper: τ (temperature), θ (margin).
Embeddings are L2-normalised, so dot products are cosine similarities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(queries: torch.Tensor, candidates: torch.Tensor, positive: torch.Tensor, tau: float = 0.05,
             exclude: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE over cosine similarities: -log softmax(s(q, d⁺)/τ) against every candidate.

    Args:
        queries: (B, H) L2-normalised query vectors.
        candidates: (N, H) L2-normalised document vectors: the batch's positives and hard
            negatives (other queries' positives act as in-batch negatives).
        positive: (B,) index in `candidates` of each query's positive.
        tau: temperature τ; 1/τ scales the cosines.
        exclude: (B, N) bool, True where a candidate must not count as a negative
            (another copy of a relevant document: a false negative). The positive itself is never excluded.

    Returns:
        Scalar mean loss over the B queries.

    >>> q = torch.tensor([[1.0, 0.0]]); d = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> round(info_nce(q, d, torch.tensor([0]), tau=1.0).item(), 4)   # -log(e / (e + 1))
    0.3133
    """
    logits = queries @ candidates.T / tau  # (B, N)
    if exclude is not None:
        keep_positive = F.one_hot(positive, candidates.shape[0]).bool()  # (B, N)
        logits = logits.masked_fill(exclude & ~keep_positive, float("-inf"))
    return F.cross_entropy(logits, positive)


def triplet(queries: torch.Tensor, candidates: torch.Tensor, positive: torch.Tensor, margin: float = 0.1,
            exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Triplet margin loss on the hardest negative: mean of max(0, θ − s(q, d⁺) + max⁻ s(q, d⁻)).

    Shapes as in `info_nce`; every candidate except the positive (and `exclude`) is a negative.

    >>> q = torch.tensor([[1.0, 0.0]]); d = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    >>> round(triplet(q, d, torch.tensor([0]), margin=0.5).item(), 4)   # 0.5 - 1 + 0.6
    0.1
    """
    sims = queries @ candidates.T  # (B, N)
    pos = sims.gather(1, positive[:, None]).squeeze(1)  # (B,)
    not_negative = F.one_hot(positive, candidates.shape[0]).bool()
    if exclude is not None:
        not_negative = not_negative | exclude
    hardest = sims.masked_fill(not_negative, float("-inf")).max(dim=1).values  # (B,)
    losses = F.relu(margin - pos + hardest)
    return torch.where(torch.isfinite(hardest), losses, torch.zeros_like(losses)).mean()


def distill_kl(queries: torch.Tensor, candidates: torch.Tensor, teacher: torch.Tensor, tau: float = 0.05,
               teacher_tau: float = 0.05, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """KL(p_T ‖ p_S) between a teacher's and the student's similarity distributions over each query's candidates.

    p_S = softmax(s(q, d)/τ) is InfoNCE's distribution over the candidates; p_T = softmax(t/τ_T) comes
    from the teacher's cosines of the same pairs. The teacher is a constant: gradient reaches only
    the student's vectors.

    Args:
        queries: (B, H) L2-normalised student query vectors.
        candidates: (N, H) L2-normalised student document vectors, as in `info_nce`.
        teacher: (B, N) the teacher's cosine similarity of each query–candidate pair.
        tau: the student's temperature τ (InfoNCE's).
        teacher_tau: the teacher's temperature τ_T.
        exclude: (B, N) bool, True where a candidate counts in neither distribution (a false
            negative: another copy of a relevant document; keep each query's positive).

    Returns:
        Scalar mean KL over the B queries: 0 when the distributions match, positive otherwise.

    >>> q = torch.tensor([[1.0, 0.0]]); d = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> distill_kl(q, d, torch.tensor([[0.5, 0.0]]), tau=1.0, teacher_tau=0.5).item()   # the same distribution
    0.0
    """
    student = (queries @ candidates.T).float() / tau  # (B, N)
    target = teacher.detach().float() / teacher_tau  # (B, N)
    if exclude is not None:  # a large finite logit, not -inf: the KL's 0·(−inf) would be NaN
        student = student.masked_fill(exclude, -1e9)
        target = target.masked_fill(exclude, -1e9)
    log_p_s = F.log_softmax(student, dim=-1)
    log_p_t = F.log_softmax(target, dim=-1)
    return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean")  # Σ p_T (log p_T − log p_S) / B


def kl_to_reference(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """Mean per-token KL(π_θ ‖ π_ref), exact over the vocabulary.

    Args:
        logits: (N, V) the trained model's next-token logits at the N assistant positions.
        ref_logits: (N, V) the frozen reference model's logits at the same positions.

    >>> x = torch.tensor([[0.0, 1.0]]); kl_to_reference(x, x).item()
    0.0
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    logp = F.log_softmax(logits.float(), dim=-1)
    logq = F.log_softmax(ref_logits.float(), dim=-1)
    return (logp.exp() * (logp - logq)).sum(dim=-1).mean()


def sft_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy on the assistant turn.

    Args:
        logits: (N, V) logits at the N positions that predict an assistant token.
        targets: (N,) the assistant token each position should predict.

    >>> round(sft_nll(torch.tensor([[0.0, 0.0]]), torch.tensor([1])).item(), 4)   # log 2
    0.6931
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), targets)


def _masked_mean_per_sequence(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each row's unmasked tokens, then over rows (GRPO's 1/|o_i| Σ_t, then 1/G Σ_i).

    Rows without a token (a rollout that emitted the embed token at once) count as zero.
    """
    per_row = torch.where(mask, values, torch.zeros_like(values)).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    return per_row.mean()


def grpo_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                     clip_eps: float = 0.2) -> torch.Tensor:
    """PPO-style clipped surrogate on generated tokens, with one advantage per rollout (GRPO).

    loss = −mean_i mean_t min(ρ_it·A_i, clip(ρ_it, 1−ε, 1+ε)·A_i), ρ = exp(logp − old_logp).

    Args:
        logp: (R, T) log-probs of the generated tokens under the current policy (with grad).
        old_logp: (R, T) the same under the policy that sampled them (no grad).
        advantages: (R,) group-normalised advantages.
        mask: (R, T) True on generated tokens (padding and the prompt are False).
        clip_eps: ε.

    >>> lp = torch.log(torch.tensor([[0.5]])); m = torch.tensor([[True]])
    >>> grpo_policy_loss(lp, lp, torch.tensor([2.0]), m).item()   # ρ = 1: −A
    -2.0
    """
    ratio = torch.exp(logp - old_logp)
    a = advantages[:, None].to(logp.dtype)
    surrogate = torch.minimum(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)
    return -_masked_mean_per_sequence(surrogate, mask)


def grpo_kl(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token KL(π_θ ‖ π_ref) estimate on the sampled tokens (Schulman's k3, as GRPO uses):
    exp(r) − r − 1 with r = ref_logp − logp; non-negative, zero when the policies agree.

    >>> lp = torch.log(torch.tensor([[0.5]])); grpo_kl(lp, lp, torch.tensor([[True]])).item()
    0.0
    """
    r = ref_logp - logp
    return _masked_mean_per_sequence(torch.exp(r) - r - 1, mask)


@torch.no_grad()
def policy_drift(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor, clip_eps: float) -> dict[str, float]:
    """How far an update moved the policy on the sampled tokens: the share of tokens whose ratio the
    clip cut (|ρ − 1| > ε) and the approximate KL(old ‖ new) (k3: ρ − 1 − log ρ, mean over tokens).

    >>> lp = torch.log(torch.tensor([[0.5, 0.5]])); new = torch.log(torch.tensor([[0.5, 0.8]]))
    >>> {k: round(v, 3) for k, v in policy_drift(new, lp, torch.tensor([[True, True]]), 0.2).items()}
    {'clip_fraction': 0.5, 'approx_kl': 0.065}
    """
    if not bool(mask.any()):
        return {"clip_fraction": 0.0, "approx_kl": 0.0}
    log_ratio = (logp - old_logp)[mask].double()
    ratio = log_ratio.exp()
    return {"clip_fraction": float(((ratio - 1).abs() > clip_eps).double().mean()),
            "approx_kl": float((ratio - 1 - log_ratio).mean())}
