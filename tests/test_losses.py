"""Stage-1 losses against hand-computed values."""

import math

import pytest
import torch

from searchr3.losses import distill_kl, grpo_kl, grpo_policy_loss, info_nce, kl_to_reference, sft_nll, triplet
from searchr3.readout import embed_token_states


def _unit(*rows):
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_info_nce_by_hand():
    q = _unit([1.0, 0.0], [0.0, 1.0])
    d = _unit([1.0, 0.0], [0.0, 1.0], [0.6, 0.8])
    tau = 0.5
    loss = info_nce(q, d, torch.tensor([0, 1]), tau)
    s = [[1.0, 0.0, 0.6], [0.0, 1.0, 0.8]]
    expected = sum(-math.log(math.exp(s[i][i] / tau) / sum(math.exp(x / tau) for x in s[i])) for i in range(2)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_info_nce_excludes_false_negatives_but_never_the_positive():
    q = _unit([1.0, 0.0])
    d = _unit([1.0, 0.0], [0.6, 0.8], [0.0, 1.0])
    exclude = torch.tensor([[True, True, False]])  # doc 1 is another relevant doc; doc 0 is the positive
    loss = info_nce(q, d, torch.tensor([0]), 1.0, exclude)
    assert loss.item() == pytest.approx(-math.log(math.e / (math.e + 1)), rel=1e-5)


def test_triplet_uses_hardest_negative_and_respects_exclusion():
    q = _unit([1.0, 0.0])
    d = _unit([0.8, 0.6], [0.6, 0.8], [0.9, math.sqrt(1 - 0.81)])
    pos = torch.tensor([0])
    assert triplet(q, d, pos, margin=0.2).item() == pytest.approx(0.2 - 0.8 + 0.9, abs=1e-5)
    exclude = torch.tensor([[False, False, True]])
    assert triplet(q, d, pos, margin=0.2, exclude=exclude).item() == pytest.approx(0.0, abs=1e-6)  # 0.2-0.8+0.6
    only_positive = triplet(q, d[:1], pos, margin=0.2)
    assert only_positive.item() == 0.0  # no negative at all: no loss, no NaN


def test_kl_and_sft_by_hand():
    p = torch.tensor([[math.log(0.75), math.log(0.25)]])
    r = torch.tensor([[math.log(0.5), math.log(0.5)]])
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert kl_to_reference(p, r).item() == pytest.approx(expected, rel=1e-5)
    assert kl_to_reference(p, p).item() == pytest.approx(0.0, abs=1e-7)
    assert sft_nll(p, torch.tensor([0])).item() == pytest.approx(-math.log(0.75), rel=1e-5)
    empty = torch.zeros(0, 2, requires_grad=True)
    assert sft_nll(empty, torch.zeros(0, dtype=torch.long)).item() == 0.0
    assert kl_to_reference(empty, empty).item() == 0.0


def test_losses_have_finite_gradients():
    q = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1).requires_grad_()
    d = torch.nn.functional.normalize(torch.randn(8, 8), dim=-1).requires_grad_()
    exclude = torch.zeros(4, 8, dtype=torch.bool)
    exclude[0, 5] = True
    total = info_nce(q, d, torch.arange(4), 0.05, exclude) + triplet(q, d, torch.arange(4), 0.1, exclude)
    total = total + distill_kl(q, d, torch.rand(4, 8), 0.05, 0.05, exclude)
    total.backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(d.grad).all()


def test_distill_kl_by_hand_and_with_excluded_candidates():
    q = _unit([1.0, 0.0])
    d = _unit([1.0, 0.0], [0.0, 1.0])
    teacher = torch.tensor([[0.2, 0.6]])
    p_t = torch.softmax(teacher[0] / 0.5, 0)
    p_s = torch.softmax(torch.tensor([1.0, 0.0]) / 0.5, 0)
    expected = float((p_t * (p_t / p_s).log()).sum())
    assert distill_kl(q, d, teacher, tau=0.5, teacher_tau=0.5).item() == pytest.approx(expected, rel=1e-5)
    assert expected > 0.1
    # An excluded candidate is in neither distribution: whatever either side scores it, the KL over
    # the others is unchanged, and finite.
    d3 = torch.cat([d, _unit([0.6, 0.8])])
    exclude = torch.tensor([[False, False, True]])
    for t in (0.9, -0.9):
        loss = distill_kl(q, d3, torch.tensor([[0.2, 0.6, t]]), tau=0.5, teacher_tau=0.5, exclude=exclude)
        assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_distill_kl_on_the_tiny_model_is_zero_when_distributions_match_and_only_the_student_learns(tiny):
    """Student vectors from the tiny random model (with grad); the teacher's scores are a constant."""
    m = tiny
    m.model.train()
    q_ids, q_mask, q_pos = m.collate([m.prompts.query(t).ids for t in ["rain", "stars", "genes"]], side="right")
    d_ids, d_mask, d_pos = m.collate([m.prompts.document(t).ids for t in ["clouds", "planets", "cells", "roads"]],
                                     side="right")
    queries = embed_token_states(m.hidden_states(q_ids, q_mask, q_pos)[0], q_ids, m.embed_token_id)  # (3, H)
    docs = embed_token_states(m.hidden_states(d_ids, d_mask, d_pos)[0], d_ids, m.embed_token_id)  # (4, H)
    student = queries @ docs.T  # (3, 4)
    # A teacher whose cosines are the student's at twice the temperature: the same distribution.
    same = (2 * student).detach().requires_grad_()
    assert distill_kl(queries, docs, same, tau=0.05, teacher_tau=0.1).item() == pytest.approx(0.0, abs=1e-5)
    teacher = torch.tensor([[0.9, 0.1, 0.0, 0.2], [0.1, 0.8, 0.3, 0.0], [0.0, 0.2, 0.7, 0.1]], requires_grad=True)
    loss = distill_kl(queries, docs, teacher, tau=0.05, teacher_tau=0.05)
    assert loss.item() > 0
    loss.backward()
    assert teacher.grad is None  # the teacher is a constant
    grads = [p.grad for p in m.model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)  # the student's weights get a gradient


def test_docstring_examples_hold():
    import doctest

    import searchr3.losses
    import searchr3.metrics

    for module in (searchr3.losses, searchr3.metrics):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_grpo_policy_loss_by_hand():
    old = torch.log(torch.tensor([[0.5, 0.5], [0.4, 0.2]]))
    new = torch.log(torch.tensor([[0.75, 0.5], [0.2, 0.9]]))  # ratios [1.5, 1.0], [0.5, 4.5]
    mask = torch.tensor([[True, True], [True, False]])  # rollout 2 generated one token
    adv = torch.tensor([1.0, -1.0])
    # row 1 (A=+1): min(1.5, 1.2)=1.2 and 1.0 -> mean 1.1; row 2 (A=-1): min(-0.5, -0.8) = -0.8
    loss = grpo_policy_loss(new, old, adv, mask, clip_eps=0.2)
    assert loss.item() == pytest.approx(-(1.1 + -0.8) / 2, rel=1e-5)
    # A rollout with no generated token contributes zero, not NaN.
    empty = grpo_policy_loss(new, old, adv, torch.tensor([[True, True], [False, False]]), 0.2)
    assert empty.item() == pytest.approx(-(1.1 + 0.0) / 2, rel=1e-5)


def test_grpo_policy_gradient_points_up_for_positive_advantage():
    logp = torch.log(torch.tensor([[0.5]])).requires_grad_()
    grpo_policy_loss(logp, logp.detach(), torch.tensor([1.0]), torch.tensor([[True]])).backward()
    assert logp.grad.item() < 0  # descending the loss raises the token's log-prob


def test_grpo_kl_by_hand():
    logp = torch.log(torch.tensor([[0.5, 0.25]]))
    ref = torch.log(torch.tensor([[0.25, 0.25]]))
    r = math.log(0.5)  # ref - logp on the first token; 0 on the second
    expected = ((math.exp(r) - r - 1) + 0.0) / 2
    assert grpo_kl(logp, ref, torch.tensor([[True, True]])).item() == pytest.approx(expected, rel=1e-5)
    assert grpo_kl(logp, ref, torch.tensor([[False, True]])).item() == pytest.approx(0.0, abs=1e-7)
