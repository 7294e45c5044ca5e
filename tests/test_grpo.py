"""Stage-2 GRPO trainer on the tiny model: one step end to end, resume, reference policy, saving."""

import json

import numpy as np
import torch
import pytest

from searchr3 import SearchR3
from searchr3.data import Dataset, Document
from searchr3.train.env import EnvConfig
from searchr3.train.grpo import GRPOTrainer, RLConfig
from searchr3.train.sft import SFTConfig, SFTTrainer
from test_sft import TOPICS, _examples


def toy_dataset() -> Dataset:
    corpus = [Document(f"d{i}", "", f"A text on {t}.") for i, t in enumerate(TOPICS)]
    corpus += [Document(f"x{i}", "", f"Unrelated note number {i} about {TOPICS[i % len(TOPICS)]} and more.")
               for i in range(24)]
    queries = {f"q{i}": f"tell me about {t}" for i, t in enumerate(TOPICS)}
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(len(TOPICS))}
    return Dataset("toy", None, "train", corpus, queries, qrels)


def config(init, **kw):
    base = dict(init=str(init), data="toy:train", max_length=16, reasoning_tokens=4, group=2, batch_queries=2,
                steps=4, lr=1e-3, warmup_steps=1, eval_every=0, save_every=0, lora_r=4, w_aux=0.5)
    base.update(kw)
    return RLConfig(**base)


ENV = EnvConfig(top_k=10, reward_k=10, neighbours=2, full_every=3, drift_bound=1.0, fidelity_every=2)


def test_config_checks():
    with pytest.raises(ValueError, match="test split"):
        RLConfig(data="scifact:test")
    with pytest.raises(ValueError, match="group"):
        RLConfig(group=1)


def test_sequences_mask_only_the_policy_s_own_tokens(tiny_folder, tmp_path):
    trainer = GRPOTrainer(config(tiny_folder), ENV, tmp_path / "run", toy_dataset())
    texts, results = trainer.rollouts(["q0", "q1"])
    assert len(results) == 4 and texts[0] == texts[1]
    ids, mask, pos, gather, targets, action, floor = trainer.sequences(texts, results)
    for i, r in enumerate(results):
        n = len(r.token_ids) - int(r.stop == "budget")  # a token appended at the budget is not a choice
        assert int(action[i].sum()) == n
        assert targets[i, :len(r.token_ids) - 1].tolist() == r.token_ids[:-1]
        prompt = trainer.model.prompts.reasoning(texts[i]).ids
        assert ids[i, :len(prompt)].tolist() == prompt  # right-padded: the prompt starts each row


def test_steps_log_rewards_and_the_run_saves_a_loadable_adapter(tiny_folder, tmp_path):
    trainer = GRPOTrainer(config(tiny_folder), ENV, tmp_path / "run", toy_dataset())
    first = trainer.train_step()
    assert first["kl"] == pytest.approx(0.0, abs=1e-6)  # the policy starts as the reference
    assert 0.0 <= first["ndcg_mean"] <= 1.0 and first["corpus"] == 32
    assert first["encodings"] <= 32 and np.isfinite(first["loss"]) and np.isfinite(first["aux"])
    out = trainer.train(resume=False)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 3, 4]
    assert records[1]["full_refresh"] and records[1]["encodings"] >= 32  # every full_every=3 steps
    assert any("fidelity_spearman" in r for r in records)
    assert (out / "reward.png").is_file() and not (out / "reference").exists()
    card = (out / "README.md").read_text()
    assert "Stage-2" in card and "Steps trained: 4" in card and "encodings per step" in card
    loaded = SearchR3.from_pretrained(out, dtype="fp32", device="cpu")
    trainer.model.model.eval()
    texts = ["A text on snow and ice."]
    np.testing.assert_allclose(loaded.embed_documents(texts), trainer.model.embed_documents(texts), atol=1e-5)


def test_group_statistics_of_a_step_on_a_hand_computed_batch(tiny_folder, tmp_path):
    """Rankings cannot matter here: both documents are relevant to both queries, so every rollout of
    q0 scores nDCG 1 and every rollout of q1 (one more relevant document, not in the corpus) scores
    (1 + 1/log2 3) / (1 + 1/log2 3 + 1/log2 4)."""
    corpus = [Document("d0", "", "A text on rain and clouds."), Document("d1", "", "A text on snow and ice.")]
    data = Dataset("toy", None, "train", corpus, {"q0": "tell me about rain", "q1": "tell me about snow"},
                   {"q0": {"d0": 1, "d1": 1}, "q1": {"d0": 1, "d1": 1, "gone": 1}})
    trainer = GRPOTrainer(config(tiny_folder), ENV, tmp_path / "run", data)
    metrics = trainer.train_step()
    q1 = (1 + 1 / np.log2(3)) / (1 + 1 / np.log2(3) + 0.5)
    assert metrics["ndcg_mean"] == pytest.approx((1 + q1) / 2, abs=1e-4)
    assert metrics["ndcg_group_std"] == pytest.approx(0.0, abs=1e-9)  # each group tied...
    assert metrics["ndcg_tied_groups"] == 1.0
    assert metrics["ndcg_perfect_groups"] == 0.5  # ...but only q0's at nDCG 1


def test_resume_continues_exactly(tiny_folder, tmp_path, monkeypatch):
    keys = ("loss", "reward_mean", "kl", "encodings")
    straight = GRPOTrainer(config(tiny_folder), ENV, tmp_path / "a", toy_dataset())
    reference = [[s[k] for k in keys] for s in (straight.train_step() for _ in range(4))]
    first = GRPOTrainer(config(tiny_folder), ENV, tmp_path / "b", toy_dataset())
    first.train_step()
    first.train_step()
    first.save_checkpoint()
    del first
    encoded, encode = [], GRPOTrainer.encode_documents
    monkeypatch.setattr(GRPOTrainer, "encode_documents",
                        lambda self, rows: encoded.append(len(rows)) or encode(self, rows))
    resumed = GRPOTrainer(config(tiny_folder), ENV, tmp_path / "b", toy_dataset())
    assert resumed.resume() and resumed.step == 2
    assert encoded == []  # the checkpoint's vectors, not a fresh encode of the corpus
    after = [[s[k] for k in keys] for s in (resumed.train_step() for _ in range(2))]
    np.testing.assert_allclose(after, reference[2:], rtol=1e-4, atol=1e-6)


def test_starting_from_a_stage_1_adapter_keeps_it_as_the_reference(tiny_folder, tmp_path):
    sft = SFTTrainer(SFTConfig(init=str(tiny_folder), sources=["toy:train"], steps=2, batch_size=4, max_length=16,
                               lr=1e-3, warmup_steps=1, eval_every=0, save_every=0, lora_r=4),
                     tmp_path / "sft", _examples()).train()
    trainer = GRPOTrainer(config(sft, lr=5e-3), ENV, tmp_path / "rl", toy_dataset())
    assert trainer.has_reference
    steps = [trainer.train_step() for _ in range(3)]
    assert steps[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # identical to the Stage-1 policy at first
    out = trainer.train()
    loaded = SearchR3.from_pretrained(out, dtype="fp32", device="cpu")
    stage1 = SearchR3.from_pretrained(sft, dtype="fp32", device="cpu")
    texts = ["A text on rain and clouds."]
    assert not np.allclose(loaded.embed_documents(texts), stage1.embed_documents(texts), atol=1e-6)


def test_the_policy_reads_queries_at_the_length_its_start_saved(tiny_folder, tmp_path):
    sft = SFTTrainer(SFTConfig(init=str(tiny_folder), sources=["toy:train"], steps=1, batch_size=4, max_length=16,
                               query_max_length=6, lr=1e-3, warmup_steps=0, eval_every=0, save_every=0, lora_r=4),
                     tmp_path / "sft", _examples()).train()
    inherited = GRPOTrainer(config(sft, steps=1), ENV, tmp_path / "rl", toy_dataset())
    assert inherited.model.config.query_max_length == 6
    out = inherited.train()
    assert SearchR3.from_pretrained(out, dtype="fp32", device="cpu").config.query_max_length == 6  # saved with it
    chosen = GRPOTrainer(config(sft, query_max_length=12), ENV, tmp_path / "rl-12", toy_dataset())
    assert chosen.model.config.query_max_length == 12
    assert GRPOTrainer(config(tiny_folder), ENV, tmp_path / "rl-base", toy_dataset()).model.config.query_max_length is None


def test_min_reasoning_tokens_in_rollouts_and_log_probs(tiny_folder, tmp_path):
    trainer = GRPOTrainer(config(tiny_folder, reasoning_tokens=5, min_reasoning_tokens=3), ENV, tmp_path / "r",
                          toy_dataset())
    texts, results = trainer.rollouts(["q0"])
    assert all(len(r.token_ids) >= 4 for r in results)
    ids, mask, pos, gather, targets, action, floor = trainer.sequences(texts, results)
    hidden, _ = trainer.model.hidden_states(ids, mask, pos)
    logp = trainer.token_logps(hidden, gather, targets, floor)[0]
    assert bool(torch.isfinite(logp[action]).all())  # sampled tokens are possible under the barred logits
    trainer.train_step()
    out = trainer.train()
    assert SearchR3.from_pretrained(out, dtype="fp32", device="cpu").config.min_reasoning_tokens == 3


def test_per_text_seeds_make_rollouts_independent_of_batching(tiny):
    texts = ["why is the sky blue?", "tides and the moon", "volcanoes"]
    together = tiny.reason(texts, sample=True, seed=[11, 12, 13], batch_size=3)
    alone = [tiny.reason([t], sample=True, seed=[s])[0] for t, s in zip(texts, [11, 12, 13])]
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]


def test_two_processes_match_one(tiny_folder, tmp_path):
    """Rollouts and environment encoding sharded over 2 CPU processes: same rewards, loss and update."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    single = GRPOTrainer(config(tiny_folder, batch_queries=4), ENV, tmp_path / "single", toy_dataset())
    metrics = single.train_step()
    grads = torch.cat([p.grad.flatten() for p in single.model.model.parameters() if p.requires_grad])
    here = Path(__file__).parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(here / "dist_grpo_worker.py"), str(tiny_folder), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world"] == 2 and result["wrapped"] == "DistributedDataParallel"  # accelerate's DDP
    for name in ("reward_mean", "reward_std", "ndcg_mean", "encodings", "forced_rate", "length_mean"):
        assert result["metrics"][name] == pytest.approx(metrics[name], rel=1e-4, abs=1e-6), name
    for name in ("loss", "policy", "kl", "aux", "grad_norm"):
        assert result["metrics"][name] == pytest.approx(metrics[name], rel=1e-3, abs=1e-5), name
    # The averaged, clipped gradient the optimiser stepped on, not the parameters after AdamW's first
    # step: that update is about lr·sign(g), so entries with a near-zero gradient flip with rounding
    # (see test_distributed.py).
    other = torch.load(tmp_path / "grads.pt")
    assert float(torch.nn.functional.cosine_similarity(other, grads, dim=0)) > 0.9999


def _scored_rollouts(trainer):
    """Rollouts of q0 and q1, the trainer's log-probs of their tokens, and the model's plain logits
    (an independent path through the LM head) over the same sequences."""
    texts, results = trainer.rollouts(["q0", "q1"])
    ids, mask, pos, gather, targets, action, floor = trainer.sequences(texts, results)
    with torch.no_grad():
        hidden, _ = trainer.model.hidden_states(ids, mask, pos)
        ours = trainer.token_logps(hidden, gather, targets, floor)[0]
        logits = trainer.model.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
    return texts, results, ids, action, ours, logits


def test_log_probs_are_read_where_each_token_was_chosen(tiny_folder, tmp_path):
    """token_logps against the model's own LM-head logits at position t-1 (an independent path)."""
    trainer = GRPOTrainer(config(tiny_folder, temperature=0.7), ENV, tmp_path / "r", toy_dataset())
    texts, results, ids, action, ours, logits = _scored_rollouts(trainer)
    for i, r in enumerate(results):
        start = len(trainer.model.prompts.reasoning(texts[i]).ids)
        for t in range(int(action[i].sum())):
            expected = torch.log_softmax(logits[i, start + t - 1] / 0.7, dim=-1)[ids[i, start + t]]
            if r.stop == "token" or t < len(r.token_ids) - 1:
                assert ours[i, t].item() == pytest.approx(expected.item(), abs=1e-4)


def test_which_tokens_are_the_policy_s_choices(tiny_folder, tmp_path):
    from searchr3 import Reasoning

    trainer = GRPOTrainer(config(tiny_folder), ENV, tmp_path / "r", toy_dataset())
    embed, eos = trainer.model.embed_token_id, trainer.model.tokenizer.eos_token_id
    v = np.zeros(trainer.model.dim, dtype=np.float32)
    results = [Reasoning("a", False, [100, embed], v, "token"),  # emitted the token: 2 choices
               Reasoning("a b", True, [100, 101, embed], v, "budget"),  # budget ran out: the token is ours
               Reasoning("a", True, [100, embed], v, "eos")]  # ended its turn: that choice was end-of-turn
    ids, mask, pos, gather, targets, action, floor = trainer.sequences(["x"] * 3, results)
    assert action.sum(dim=1).tolist() == [2, 2, 2]
    assert targets[0, :2].tolist() == [100, embed]
    assert targets[1, :2].tolist() == [100, 101]
    assert targets[2, :2].tolist() == [100, eos]
    assert ids[2, int(mask[2].sum()) - 1].item() == embed  # the read-out still happens at the token


def test_several_updates_per_batch_and_queries_without_positives(tiny_folder, tmp_path):
    data = toy_dataset()
    data.qrels["q_lost"] = {"not-in-corpus": 1}
    data.queries["q_lost"] = "a query whose document is missing"
    trainer = GRPOTrainer(config(tiny_folder, updates=2, max_grad_norm=1e-4), ENV, tmp_path / "r", data)
    assert "q_lost" not in trainer.query_ids
    params = [p for p in trainer.model.model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    metrics = trainer.train_step()
    assert np.isfinite(metrics["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(params, before))
    assert {int(trainer.optimizer.state[p]["step"]) for p in params} == {2}  # two optimiser steps on one batch
    # The clip binds (the first update's norm, logged, is above it), and the gradient the last update
    # stepped on (left in .grad) was clipped to it. AdamW is nearly blind to the gradient's scale, so
    # the parameters alone would not show a missing clip.
    assert metrics["grad_norm"] > 1e-3
    clipped = torch.cat([p.grad.flatten() for p in params if p.grad is not None]).norm()
    assert float(clipped) == pytest.approx(1e-4, rel=1e-3)


def test_top_p_rollouts_are_scored_under_the_distribution_they_were_drawn_from(tiny_folder, tmp_path):
    """With top-p < 1 the loss's log-probs are those of the truncated distribution the sampler drew from."""
    trainer = GRPOTrainer(config(tiny_folder, temperature=0.8, top_p=0.5, reasoning_tokens=6), ENV, tmp_path / "r",
                          toy_dataset())
    texts, results, ids, action, ours, logits = _scored_rollouts(trainer)
    truncated = False
    for i, r in enumerate(results):
        start = len(trainer.model.prompts.reasoning(texts[i]).ids)
        for t in range(int(action[i].sum())):
            p = torch.softmax(logits[i, start + t - 1] / 0.8, dim=-1)
            sorted_p, order = p.sort(descending=True)
            nucleus = order[(sorted_p.cumsum(0) - sorted_p) < 0.5]
            token = int(ids[i, start + t])
            if r.stop == "token" or t < len(r.token_ids) - 1:  # a sampled choice, not an appended token
                assert token in nucleus.tolist()
                assert ours[i, t].item() == pytest.approx(float(torch.log(p[token] / p[nucleus].sum())), abs=1e-4)
                truncated |= len(nucleus) < p.numel() and ours[i, t].item() > float(torch.log(p[token])) + 1e-4
    assert truncated  # the plain softmax would have scored a different (wider) distribution


def test_dynamic_sampling_replaces_tied_groups_and_logs_the_share_dropped(tiny_folder, tmp_path, monkeypatch):
    trainer = GRPOTrainer(config(tiny_folder, resample_rounds=2), ENV, tmp_path / "r", toy_dataset())
    monkeypatch.setattr(trainer, "batch_at", lambda step: ["q0", "q1"])
    step = trainer.env.step

    def q0_always_ties(qrels, vectors, forced, lengths):
        result = step(qrels, vectors, forced, lengths)
        result.rewards[[i for i, rel in enumerate(qrels) if rel == {"d0": 1}]] = 0.5
        return result

    monkeypatch.setattr(trainer.env, "step", q0_always_ties)
    groups = trainer.collect()
    queries = [g.query for g in groups.chosen]
    assert "q0" not in queries and queries[0] == "q1" and len(queries) == 2  # q0 replaced by a fresh draw
    assert groups.stats["rounds"] == 2 and groups.dropped_share == pytest.approx(1 / 3)
    metrics = trainer.train_step()
    assert metrics["dropped_share"] == pytest.approx(1 / 3) and metrics["rounds"] == 2
    assert {"clip_fraction", "approx_kl", "rank_median", "stale_admitted"} <= set(metrics)


def test_when_every_group_ties_the_batch_is_filled_and_carries_no_policy_gradient(tiny_folder, tmp_path):
    # near-greedy sampling: the G rollouts of a query are the same text, so their rewards tie
    trainer = GRPOTrainer(config(tiny_folder, temperature=1e-4, resample_rounds=1, w_aux=0.0), ENV, tmp_path / "r",
                          toy_dataset())
    metrics = trainer.train_step()
    assert metrics["dropped_share"] == 1.0 and metrics["rounds"] == 2
    assert metrics["policy"] == pytest.approx(0.0, abs=1e-9) and metrics["reward_std"] >= 0
