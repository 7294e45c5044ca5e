"""Stage-1 trainer on the tiny model: step, resume, LoRA round trip, full fine-tune rules."""

import json

import numpy as np
import pytest
import torch

from searchr3 import SearchR3
from searchr3.train.examples import Example, parse_source
from searchr3.train.loop import read_metrics
from searchr3.train.sft import SFTConfig, SFTTrainer, lr_at

TOPICS = ["rain and clouds", "stars and planets", "cells and genes", "rivers and seas", "cars and roads",
          "music and songs", "bread and flour", "snow and ice"]


def _examples():
    out = []
    for i, topic in enumerate(TOPICS):
        neg = TOPICS[(i + 3) % len(TOPICS)]
        out.append(Example("toy:train", f"q{i}", f"tell me about {topic}", f"d{i}", f"A text on {topic}.",
                           (f"d{(i + 3) % len(TOPICS)}",), (f"A text on {neg}.",), frozenset({f"d{i}"})))
    return out


def _config(tiny_folder, **kw):
    base = dict(init=str(tiny_folder), sources=["toy:train"], steps=4, batch_size=4, max_length=16, lr=1e-3,
                warmup_steps=1, eval_every=0, save_every=0, lora_r=4)
    base.update(kw)
    return SFTConfig(**base)


def test_config_and_sources_are_checked():
    with pytest.raises(ValueError, match="must divide by grad_accum"):
        SFTConfig(batch_size=6, grad_accum=4)
    with pytest.raises(ValueError, match="test split"):
        parse_source("scifact:test")
    with pytest.raises(ValueError, match="must name a split"):
        parse_source("scifact")
    c = SFTConfig(lr=1.0, warmup_steps=2, steps=12)
    assert [round(lr_at(s, c), 3) for s in (0, 1, 2, 7, 12)] == [0.5, 1.0, 1.0, 0.5, 0.0]


def test_resume_continues_exactly(tiny_folder, tmp_path):
    straight = SFTTrainer(_config(tiny_folder), tmp_path / "a", _examples())
    reference = [straight.train_step()["total"] for _ in range(4)]

    first = SFTTrainer(_config(tiny_folder), tmp_path / "b", _examples())
    first.train_step()
    first.train_step()
    first.save_checkpoint()
    del first  # the process "dies" here
    resumed = SFTTrainer(_config(tiny_folder), tmp_path / "b", _examples())
    assert resumed.resume() and resumed.step == 2
    after = [resumed.train_step()["total"] for _ in range(2)]
    np.testing.assert_allclose(after, reference[2:], rtol=1e-5)


def test_lora_run_saves_a_loadable_model(tiny_folder, tmp_path):
    trainer = SFTTrainer(_config(tiny_folder, steps=3), tmp_path / "run", _examples())
    out = trainer.train()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(np.isfinite(r[k]) for r in records for k in ("total", "sft", "kl", "infonce", "triplet"))
    assert (out / "loss.png").is_file() and (out / "adapter_model.safetensors").stat().st_size < 2_000_000
    card = (out / "README.md").read_text()  # our card, not PEFT's boilerplate
    assert "More Information Needed" not in card and "Steps trained: 3" in card and "toy:train: 8" in card
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_folder)
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 3
    trainer.model.model.eval()
    texts = ["A text on snow and ice.", "tell me about bread"]
    expected = trainer.model.embed_documents(texts)
    loaded = SearchR3.from_pretrained(out, dtype="fp32", device="cpu")
    np.testing.assert_allclose(loaded.embed_documents(texts), expected, atol=1e-5)
    base = SearchR3.from_pretrained(tiny_folder, dtype="fp32", device="cpu")
    row = loaded.embed_token_id
    moved = loaded.model.get_input_embeddings().weight[row] - base.model.get_input_embeddings().weight[row]
    assert moved.abs().max() > 0  # the new token's row trained and was saved with the adapter


def test_time_limit_checkpoints_and_resume_redoes_the_log_after_it(tiny_folder, tmp_path):
    out = tmp_path / "run"
    SFTTrainer(_config(tiny_folder, time_limit_minutes=1e-9), out, _examples()).train()
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-000001"]  # saved at the limit
    (first,) = read_metrics(out / "metrics.jsonl")
    assert first["step"] == 1
    with open(out / "metrics.jsonl", "a") as log:  # a step after the checkpoint, then a write cut short
        log.write(json.dumps({**first, "step": 2, "total": -1.0}) + "\n" + '{"step": 3, "tot')
    summary = json.loads((out / "train_summary.json").read_text())
    (out / "train_summary.json").write_text(json.dumps({**summary, "wall_seconds": 1000.0}))
    SFTTrainer(_config(tiny_folder), out, _examples()).train(resume=True)
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4] and records[1]["total"] > 0  # step 2 redone, once
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 4 and summary["wall_seconds"] > 1000.0  # the sessions' times add up
    (tmp_path / "torn.jsonl").write_text('{"step": 1\n{"step": 2}\n')
    with pytest.raises(json.JSONDecodeError):  # only the last line may be torn; elsewhere it is damage
        read_metrics(tmp_path / "torn.jsonl")


def test_starting_from_an_adapter_continues_it(tiny_folder, tmp_path):
    first = SFTTrainer(_config(tiny_folder, steps=2), tmp_path / "first", _examples()).train()
    with pytest.warns(UserWarning, match="r 4, alpha 32: it keeps training at that rank"):
        trainer = SFTTrainer(_config(tiny_folder, init=str(first), steps=2, lora_r=8), tmp_path / "second",
                             _examples())
    start = SearchR3.from_pretrained(first, dtype="fp32", device="cpu")
    texts = ["A text on snow and ice.", "tell me about bread"]
    np.testing.assert_allclose(trainer.model.embed_documents(texts), start.embed_documents(texts), atol=1e-5)
    out = trainer.train()
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["base_model_name_or_path"] == str(tiny_folder)  # the same adapter, over the base
    trainer.model.model.eval()
    expected = trainer.model.embed_documents(texts)
    assert not np.allclose(expected, start.embed_documents(texts), atol=1e-4)  # it trained on
    loaded = SearchR3.from_pretrained(out, dtype="fp32", device="cpu")
    np.testing.assert_allclose(loaded.embed_documents(texts), expected, atol=1e-5)


def test_continuing_an_adapter_takes_traces_from_the_base(tiny_folder, tmp_path, monkeypatch):
    import searchr3.cache

    monkeypatch.setattr(searchr3.cache, "cache_dir", lambda: tmp_path)
    first = SFTTrainer(_config(tiny_folder, steps=2), tmp_path / "first", _examples()).train()
    kw = dict(reasoning_fraction=0.5, reasoning_tokens=3)
    fresh = SFTTrainer(_config(tiny_folder, **kw), tmp_path / "fresh", _examples())
    assert fresh.trace_model() is fresh.model  # from the base, the zero LoRA writes the base's traces
    continued = SFTTrainer(_config(tiny_folder, init=str(first), **kw), tmp_path / "cont", _examples())
    source = continued.trace_model()
    assert source is not continued.model
    base = SearchR3.from_pretrained(tiny_folder, dtype="fp32", device="cpu")
    base.set_max_length(16)
    assert source.fingerprint == base.fingerprint  # the plain base, so the trace cache is keyed by it
    assert continued.traces == fresh.traces


def test_full_finetune_moves_only_the_token_row_of_embeddings(tiny_folder, tmp_path):
    trainer = SFTTrainer(_config(tiny_folder, lora_r=0, steps=2, lr=1e-2), tmp_path / "full", _examples())
    before = trainer.model.model.get_input_embeddings().weight.detach().clone()
    layer_before = trainer.model.model.model.layers[0].mlp.up_proj.weight.detach().clone()
    trainer.train_step()
    after = trainer.model.model.get_input_embeddings().weight.detach()
    changed = (after != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == [trainer.model.embed_token_id]
    assert not torch.equal(layer_before, trainer.model.model.model.layers[0].mlp.up_proj.weight)


def test_reasoning_examples_use_self_traces_and_kl(tiny_folder, tmp_path, monkeypatch):
    import searchr3.cache

    monkeypatch.setattr(searchr3.cache, "cache_dir", lambda: tmp_path)
    trainer = SFTTrainer(_config(tiny_folder, reasoning_fraction=0.5, reasoning_tokens=3), tmp_path / "r",
                         _examples())
    assert len(trainer.traces) == 4
    reasoned = next(e for e in trainer.examples if e.query_id in trainer.traces)
    prompt = trainer.query_prompt(reasoned)
    assert prompt.ids[-1] == trainer.model.embed_token_id
    assert len(prompt.ids) - prompt.assistant_start == len(trainer.traces[reasoned.query_id]) == 4
    terms = trainer.losses([e for e in trainer.examples if e.query_id in trainer.traces][:4])
    assert terms["kl"].item() >= 0 and torch.isfinite(terms["total"])
    direct = trainer.losses([e for e in trainer.examples if e.query_id not in trainer.traces][:4])
    assert direct["kl"].item() == 0.0  # a direct query's only assistant token is the new token: no KL there
    # L_token is L_SFT at the token alone: the same for direct queries, apart from it once traces dilute it
    assert direct["token"].item() == pytest.approx(direct["sft"].item(), rel=1e-6)
    assert terms["token"].item() != pytest.approx(terms["sft"].item(), rel=1e-3)
    weighted = SFTTrainer(_config(tiny_folder, reasoning_fraction=0.5, reasoning_tokens=3, w_token=2.0),
                          tmp_path / "w", _examples())
    again = weighted.losses([e for e in weighted.examples if e.query_id in weighted.traces][:4])
    assert again["total"].item() == pytest.approx(terms["total"].item() + 2.0 * terms["token"].item(), rel=1e-5)


def test_the_trained_lengths_are_saved_with_the_model(tiny_folder, tmp_path):
    trainer = SFTTrainer(_config(tiny_folder, steps=1, max_length=16, query_max_length=5), tmp_path / "run",
                         _examples())
    assert trainer.query_prompt(trainer.examples[0]).truncated  # "tell me about ..." is cut to 5 tokens
    assert not trainer.model.prompts.document(trainer.examples[0].positive).truncated
    loaded = SearchR3.from_pretrained(trainer.train(), dtype="fp32", device="cpu")
    assert (loaded.config.max_length, loaded.config.query_length) == (16, 5)


def test_epoch_batches_group_by_length_and_stay_random():
    import doctest
    import random

    from searchr3.train import batching

    assert doctest.testmod(batching).failed == 0
    rng = random.Random(1)
    lengths = [rng.randint(10, 300) for _ in range(203)]
    plain = batching.epoch_batches(lengths, 8, 0, seed=5)
    order = list(range(203))
    random.Random(5).shuffle(order)
    assert plain == [order[i:i + 8] for i in range(0, 200, 8)]  # without a window: the trainer's old order
    grouped = batching.epoch_batches(lengths, 8, 5, seed=5)
    assert len(grouped) == 25 and all(len(b) == 8 for b in grouped)
    assert sorted(i for b in grouped for i in b) == sorted(order[:200])  # the same examples, each once
    for start in range(0, 200, 40):  # each window's examples stay in its own batches...
        window = set(order[start:start + 40])
        assert sum(set(b) <= window for b in grouped) == 5
    assert grouped != sorted(grouped, key=lambda b: -lengths[b[0]])  # ...but batches come in random order

    def waste(batches):
        return sum(batching.padded([lengths[i] for i in b]) - sum(lengths[i] for i in b) for b in batches)

    assert waste(grouped) < 0.5 * waste(plain)
    assert batching.epoch_batches(lengths, 8, 5, seed=5) == grouped  # a resumed run sees the same epoch
    assert batching.epoch_batches(lengths, 8, 5, seed=6) != grouped
    assert batching.padded([3, 17, 5], multiple=16) == 96


def test_length_window_batches_long_with_long(tiny_folder, tmp_path):
    examples = [Example(e.source, e.query_id, e.query, e.positive_id, e.positive * (6 if i % 2 else 1), e.negative_ids,
                        tuple(n * (6 if i % 2 else 1) for n in e.negatives), e.relevant_ids)
                for i, e in enumerate(_examples())]  # odd examples have documents six times as long
    grouped = SFTTrainer(_config(tiny_folder, length_window=2, max_length=64), tmp_path / "g", examples)
    batches = [{e.query_id for e in grouped.batch_at(step)} for step in range(2)]
    long, short = {f"q{i}" for i in range(1, 8, 2)}, {f"q{i}" for i in range(0, 8, 2)}
    assert batches in ([long, short], [short, long])
    plain = SFTTrainer(_config(tiny_folder, max_length=64), tmp_path / "p", examples)
    pad = [sum(t.train_step()["padding"] for _ in range(2)) for t in (grouped, plain)]
    assert pad[0] < pad[1]


def test_token_warmup_trains_the_token_row_alone_then_the_full_loss(tiny_folder, tmp_path):
    trainer = SFTTrainer(_config(tiny_folder, steps=4, token_warmup_steps=2, token_warmup_lr=1e-2), tmp_path / "w",
                         _examples())
    params = dict(trainer.model.model.named_parameters())
    (row,) = [n for n, p in params.items() if p.requires_grad and "lora" not in n]  # the token's trainable row
    lora = {n: p.detach().clone() for n, p in params.items() if "lora" in n and p.requires_grad}
    start = params[row].detach().clone()
    first = trainer.losses(trainer.batch_at(0))["token"].item()
    warm = [trainer.train_step() for _ in range(2)]
    assert all("infonce" not in r and r["lr"] == 1e-2 for r in warm)  # no documents: cheap steps
    assert all(torch.equal(p, lora[n]) for n, p in params.items() if n in lora)  # LoRA did not move...
    assert not torch.equal(params[row], start)  # ...the token's row did
    assert all(p.grad is None for n, p in params.items() if n in lora)
    assert trainer.losses(trainer.batch_at(0))["token"].item() < first  # and it learned the token
    full = trainer.train_step()
    assert {"infonce", "triplet", "sft", "kl"} <= set(full) and full["lr"] == pytest.approx(1e-3)
    assert any(not torch.equal(p, lora[n]) for n, p in params.items() if n in lora)  # now LoRA trains too
    c = SFTConfig(lr=1.0, token_warmup_steps=3, token_warmup_lr=0.1, warmup_steps=2, steps=15)
    assert [round(lr_at(s, c), 3) for s in (0, 2, 3, 4, 5, 10, 15)] == [0.1, 0.1, 0.5, 1.0, 1.0, 0.5, 0.0]
    with pytest.raises(ValueError, match="token_warmup_steps 4 leaves none of the 4 steps"):
        SFTConfig(steps=4, token_warmup_steps=4)


def test_token_warmup_in_a_run_and_a_full_finetune(tiny_folder, tmp_path):
    out = SFTTrainer(_config(tiny_folder, steps=3, token_warmup_steps=2), tmp_path / "run", _examples()).train()
    records = read_metrics(out / "metrics.jsonl")
    assert ["infonce" in r for r in records] == [False, False, True]
    assert (out / "loss.png").is_file() and "Steps trained: 3" in (out / "README.md").read_text()

    full = SFTTrainer(_config(tiny_folder, lora_r=0, steps=2, token_warmup_steps=1, lr=1e-2), tmp_path / "f",
                      _examples())
    before = {n: p.detach().clone() for n, p in full.model.model.named_parameters()}
    full.train_step()
    changed = {n for n, p in full.model.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"model.embed_tokens.weight"}  # tied with the LM head; only the token's row in it
    emb = full.model.model.get_input_embeddings().weight
    moved = (emb != before["model.embed_tokens.weight"]).any(dim=1).nonzero().flatten().tolist()
    assert moved == [full.model.embed_token_id]


def test_distillation_arm_adds_the_teachers_kl_and_only_the_student_trains(tiny_folder, tmp_path):
    plain = SFTTrainer(_config(tiny_folder), tmp_path / "plain", _examples())
    assert plain.teacher is None  # w_distill 0 loads no teacher
    batch = plain.batch_at(0)
    without = plain.losses(batch)
    assert without["distill"].item() == 0.0
    arm = SFTTrainer(_config(tiny_folder, w_distill=0.5, teacher_tau=0.1), tmp_path / "arm", _examples())
    terms = arm.losses(batch)
    assert terms["distill"].item() > 0  # a random student and MiniLM disagree
    assert terms["total"].item() == pytest.approx(without["total"].item() + 0.5 * terms["distill"].item(), rel=1e-5)
    # MiniLM encodes each text once; it is frozen, so the gradient reaches only the student
    texts = {e.query for e in batch} | {e.positive for e in batch} | {t for e in batch for t in e.negatives}
    assert set(arm.teacher.cache) == texts
    terms["total"].backward()
    assert all(not p.requires_grad and p.grad is None for p in arm.teacher.model.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in arm.model.model.parameters())
    assert arm.train_step()["distill"] > 0  # logged with the other terms


def test_a_run_committed_without_checkpoints_continues_from_its_saved_folder(tiny_folder, tmp_path, monkeypatch):
    import shutil

    import searchr3.cache
    from searchr3.train import sft

    monkeypatch.setattr(searchr3.cache, "cache_dir", lambda: tmp_path)
    out = tmp_path / "chunked"
    kw = dict(steps=4, reasoning_fraction=0.5, reasoning_tokens=3)
    SFTTrainer(_config(tiny_folder, time_limit_minutes=1e-9, **kw), out, _examples()).train()  # chunk 1: one step
    shutil.rmtree(out / "checkpoints")  # what a git commit of the folder keeps: weights, log, settings, traces
    assert (out / sft.TRACES).is_file()
    saved = SearchR3.from_pretrained(out, dtype="fp32", device="cpu")
    texts = ["A text on snow and ice.", "tell me about bread"]

    straight = SFTTrainer(_config(tiny_folder, **kw), tmp_path / "straight", _examples())  # for the data order

    def no_generation(*args, **kwargs):
        raise AssertionError("the traces are in the run folder")

    monkeypatch.setattr(searchr3.cache.ReasoningCache, "reason", no_generation)
    with pytest.raises(ValueError, match=r"other settings \(lr\)"):  # a chunk may not change what is trained
        SFTTrainer(_config(tiny_folder, lr=5e-3, **kw), out, _examples()).train(resume=True)
    chunk = SFTTrainer(_config(tiny_folder, **kw), out, _examples())
    assert chunk.resume() and chunk.step == 1
    np.testing.assert_allclose(chunk.model.embed_documents(texts), saved.embed_documents(texts), atol=1e-5)
    assert [e.query_id for e in chunk.batch_at(1)] == [e.query_id for e in straight.batch_at(1)]  # the data goes on
    SFTTrainer(_config(tiny_folder, **kw), out, _examples()).train(resume=True)
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4]  # one log across the chunks
    assert [r["lr"] for r in records] == pytest.approx([lr_at(s, _config(tiny_folder, **kw)) for s in range(4)])
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 4
    assert (out / sft.TRACES).is_file()  # kept by the final save


def test_weighted_sources_mix_exactly_the_examples_the_steps_use(tiny_folder, tmp_path, monkeypatch):
    from searchr3.train import sft

    seen = {}

    def fake_build(*args, total=None, **kwargs):
        seen["total"] = total
        from searchr3.train.examples import TrainingSet
        return TrainingSet(_examples() * 3, {})

    monkeypatch.setattr(sft, "build_examples", fake_build)
    monkeypatch.setattr(sft, "data_key", lambda *args: {})  # "toy" is no data folder
    SFTTrainer(_config(tiny_folder, steps=5, batch_size=4), tmp_path / "m")
    assert seen["total"] == 20


def test_a_later_chunk_reads_the_built_examples_back(tiny_folder, tmp_path, monkeypatch):
    from searchr3.train import sft

    from searchr3.data import Document, write_dataset

    corpus = [Document(f"d{i}", f"Topic {i}", f"A text on topic {i}.") for i in range(8)]
    write_dataset(tmp_path / "set", corpus, {f"q{i}": f"tell me about topic {i}" for i in range(8)},
                  {"train": {f"q{i}": {f"d{i}": 1} for i in range(8)}})
    config = _config(tiny_folder, steps=5, batch_size=4, sources=[f"{tmp_path / 'set'}:train"], dedup_against=[])
    first = SFTTrainer(config, tmp_path / "m")
    assert (tmp_path / "m" / sft.EXAMPLES).is_file()

    def no_build(*args, **kwargs):
        raise AssertionError("examples rebuilt although the run folder holds them")

    monkeypatch.setattr(sft, "build_examples", no_build)
    assert SFTTrainer(config, tmp_path / "m").examples == first.examples
    with pytest.raises(AssertionError, match="rebuilt"):  # other data settings: the file is not used
        SFTTrainer(_config(tiny_folder, steps=6, batch_size=4, sources=config.sources, dedup_against=[]),
                   tmp_path / "m")
