"""Stage-1 losses against hand-computed values."""

import math

import pytest
import torch

from searchr3.losses import info_nce, kl_to_reference, sft_nll, triplet


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
    total.backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(d.grad).all()


def test_docstring_examples_hold():
    import doctest

    import searchr3.losses
    import searchr3.metrics

    for module in (searchr3.losses, searchr3.metrics):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
