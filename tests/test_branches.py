"""Stage-2 exploration branches: advantages within each branch, the reason-or-not decision, and a
GRPO step on the tiny model with exploring rollouts."""

import math

import numpy as np
import pytest
import torch

from searchr3.decoding import LogitsProcessor
from searchr3.train.branches import branch_advantages, decision_labels, decision_logps, decision_loss
from searchr3.train.grpo import GRPOTrainer, RLConfig
from searchr3.train.loop import changed_settings
from test_grpo import ENV, config, toy_dataset


def test_advantages_are_taken_within_each_branch():
    # one group of 4: two natural rollouts (direct, 0.9 each), two exploring (0.5, 0.7)
    adv = branch_advantages(np.array([0.9, 0.9, 0.5, 0.7]), group=4, exploring=2, norm="mean")
    np.testing.assert_allclose(adv, [0.0, 0.0, -0.1, 0.1])  # exploring traces compete with each other only
    # a branch of one rollout has nothing to compare with
    np.testing.assert_allclose(branch_advantages(np.array([0.2, 0.4, 0.9]), 3, 2), [0.0, -0.25, 0.25])
    # no exploring members: plain GRPO advantages over the whole group
    np.testing.assert_allclose(branch_advantages(np.array([1.0, 0.0]), 2, 0), [0.5, -0.5])
    with pytest.raises(ValueError, match="exploring"):
        branch_advantages(np.zeros(4), 4, 4)


def test_decision_labels_compare_mean_reasoning_with_direct():
    rewards = np.array([0.5, 0.8, 0.6,    # direct 0.5, reasoning mean 0.7: reason
                        0.9, 0.8, 0.95,   # direct 0.9, reasoning mean 0.875: emit at once
                        0.4, 0.5, 0.6,    # every rollout reasoned: no direct to compare, no label
                        0.5, 0.5, 0.505,   # reasoning gains 0.005, under the margin: emit at once
                        0.0, 0.9, 0.7])    # turn ended at once (forced, penalised): not direct
    lengths = np.array([0, 5, 7, 0, 3, 4, 2, 2, 2, 0, 0, 3, 0, 0, 4])
    forced = np.zeros(15, dtype=bool)
    forced[12] = True
    labels, gains = decision_labels(rewards, lengths, forced, group=3, margin=0.01)
    assert labels[0] == 1.0 and labels[1] == 0.0 and math.isnan(labels[2]) and labels[3] == 0.0
    np.testing.assert_allclose(gains[[0, 1, 3, 4]], [0.2, -0.025, 0.005, -0.2])  # the last: 0.7 vs direct 0.9 only
    assert math.isnan(gains[2])


def test_decision_loss_is_binary_cross_entropy_on_the_first_step():
    p = torch.tensor([0.9, 0.2, 0.5])
    labels = torch.tensor([1.0, 0.0, float("nan")])  # reason, emit at once, no label
    expected = -(math.log(1 - 0.9) + math.log(0.2)) / 2
    assert decision_loss(p.log(), (1 - p).log(), labels).item() == pytest.approx(expected, rel=1e-5)
    logp = torch.tensor([math.log(0.9)], requires_grad=True)
    decision_loss(logp, torch.log(-torch.expm1(logp)), torch.tensor([1.0])).backward()
    assert logp.grad.item() > 0  # descending it lowers the probability of emitting the token at once
    assert decision_loss(logp, logp, torch.tensor([float("nan")])).item() == 0.0


def test_a_sure_model_still_learns_to_reason():
    """Where the token leads by more than fp32 can tell from 1 (p rounds to 1), log(1 − p) taken from
    the logits keeps a finite loss and a gradient that lowers p."""
    logits = torch.zeros(2, 50)
    logits[0, 7] = 40.0  # p(token) = 1 − 49·e^−40: exactly 1 in fp32
    logits[1, 7] = 2.0
    logits.requires_grad_(True)
    first = decision_logps(logits, token_id=7)
    assert first[0, 0].item() == 0.0  # log p rounds to 0 ...
    assert first[0, 1].item() == pytest.approx(math.log(49) - 40, abs=1e-4)  # ... log(1 − p) is exact
    torch.testing.assert_close(first[1].exp().sum(), torch.tensor(1.0))
    loss = decision_loss(first[:, 0], first[:, 1], torch.tensor([1.0, float("nan")]))
    assert loss.item() == pytest.approx(40 - math.log(49), rel=1e-4)
    loss.backward()
    assert logits.grad[0, 7] > 0 and logits.grad[1].abs().sum() == 0  # lowers the token's lead; no label, no push


def test_a_per_row_minimum_length_scores_like_its_own_processor():
    logits = torch.randn(2, 3, 50)
    steps = torch.arange(3)
    plain = LogitsProcessor(embed_token_id=7, eos_token_id=3, temperature=0.9, top_p=0.8)
    barred = LogitsProcessor(embed_token_id=7, eos_token_id=3, temperature=0.9, top_p=0.8, min_tokens=2)
    mixed = plain.log_probs(logits, steps, min_tokens=torch.tensor([[0], [2]]))
    torch.testing.assert_close(mixed[0], plain.log_probs(logits[0], steps))
    torch.testing.assert_close(mixed[1], barred.log_probs(logits[1], steps))
    full = LogitsProcessor(embed_token_id=7, eos_token_id=3).log_probs(logits, steps, min_tokens=torch.tensor([[0], [2]]))
    assert torch.isinf(full[1, :2, [3, 7]]).all() and torch.isfinite(full[1, 2, [3, 7]]).all()  # barred, then free
    assert torch.isfinite(full[0]).all()


def test_config_checks_the_branches():
    with pytest.raises(ValueError, match="at least one rollout"):
        RLConfig(group=4, explore_members=4, explore_min_tokens=2)
    with pytest.raises(ValueError, match="explore_min_tokens"):
        RLConfig(group=4, explore_members=2, explore_min_tokens=0)
    with pytest.raises(ValueError, match="explore_min_tokens"):
        RLConfig(group=4, reasoning_tokens=8, explore_members=2, explore_min_tokens=9)
    with pytest.raises(ValueError, match="must exceed min_reasoning_tokens"):
        RLConfig(group=4, min_reasoning_tokens=8, explore_members=2, explore_min_tokens=8)
    with pytest.raises(ValueError, match="explore_members is 0"):
        RLConfig(group=4, explore_min_tokens=8)
    with pytest.raises(ValueError, match="w_decide needs min_reasoning_tokens 0"):
        RLConfig(group=4, min_reasoning_tokens=4, w_decide=0.5)


def test_a_step_with_exploring_rollouts_and_the_decision_loss(tiny_folder, tmp_path):
    cfg = config(tiny_folder, group=3, reasoning_tokens=5, explore_members=2, explore_min_tokens=3,
                 w_decide=1.0, resample_rounds=0)
    trainer = GRPOTrainer(cfg, ENV, tmp_path / "r", toy_dataset())
    texts, results = trainer.rollouts(["q0", "q1"])
    assert [trainer.floor(i) for i in range(6)] == [0, 3, 3, 0, 3, 3]
    for i, r in enumerate(results):
        if i % 3:  # exploring: the token and end of turn are barred for the first 3 steps
            assert len(r.token_ids) >= 4 and r.token_ids.count(trainer.model.embed_token_id) == 1
    ids, mask, pos, gather, targets, action, floor = trainer.sequences(texts, results)
    assert floor.squeeze(1).tolist() == [0, 3, 3, 0, 3, 3]
    with torch.no_grad():
        hidden, _ = trainer.model.hidden_states(ids, mask, pos)
        logp, first = trainer.token_logps(hidden, gather, targets, floor)
        plain = trainer.model.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
    assert bool(torch.isfinite(logp[action]).all())  # each token scored under the minimum it was drawn with
    start = len(trainer.model.prompts.reasoning(texts[0]).ids)
    expected = torch.log_softmax(plain[0, start - 1], dim=-1)[trainer.model.embed_token_id]
    assert first[0, 0].item() == pytest.approx(expected.item(), abs=1e-4)  # the plain first-step decision
    torch.testing.assert_close(first.exp().sum(-1), torch.ones(len(first)))  # token or anything else
    params = [p for p in trainer.model.model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    metrics = trainer.train_step()
    assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["decide"])
    assert 0.0 < metrics["p_token_first"] < 1.0
    assert any(not torch.equal(a, b) for a, b in zip(params, before))


def test_settings_compare_section_by_section_and_new_settings_that_are_off_continue():
    saved = {"rl": {"lr": 1e-5, "time_limit_minutes": 100}, "env": {"top_k": 20}}
    assert changed_settings(saved, {"rl": {"lr": 1e-5, "time_limit_minutes": 60}, "env": {"top_k": 20}},
                            frozenset({"time_limit_minutes"})) == []
    assert changed_settings(saved, {"rl": {"lr": 2e-5, "time_limit_minutes": 100}, "env": {"top_k": 20}}) == ["rl.lr"]
    # a setting the saved run did not know: unchanged while off, a change once on
    assert changed_settings(saved, {"rl": {"lr": 1e-5, "time_limit_minutes": 100, "explore_members": 0},
                                    "env": {"top_k": 20}}) == []
    assert changed_settings(saved, {"rl": {"lr": 1e-5, "time_limit_minutes": 100, "explore_members": 2},
                                    "env": {"top_k": 20}}) == ["rl.explore_members"]
