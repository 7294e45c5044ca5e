"""A round of retrieval-filtered reasoning on the tiny model: candidates, choice, fine-tune, resume."""

import doctest
import json

import numpy as np
import pytest

from searchr3 import SearchR3
from searchr3.data import Document, write_dataset
from searchr3.train import rft
from searchr3.train.rft import RFTConfig, RFTRound, choose, round_data, train_rft
from searchr3.train.sft_config import SFTConfig

TOPICS = ["rain", "snow", "wind", "tides", "volcanoes", "glaciers", "deserts", "forests"]


def _source(folder):
    corpus = [Document(f"d{i}", t.title(), f"A text on {t} and what causes {t}.") for i, t in enumerate(TOPICS)]
    corpus += [Document(f"x{i}", "", f"A note number {i} on {TOPICS[i % 8]} and other things.") for i in range(16)]
    write_dataset(folder, corpus, {f"q{i}": f"what causes {t}" for i, t in enumerate(TOPICS)},
                  {"train": {f"q{i}": {f"d{i}": 1} for i in range(len(TOPICS))}})
    return f"{folder}:train"


def _configs(tiny_folder, source, **kw):
    base = dict(init=str(tiny_folder), sources=[source], queries=6, corpus_sample=12, candidates=1, base_candidates=1,
                reasoning_tokens=4, keep_margin=0.0, batch_queries=4, dedup_against=[])
    base.update(kw)
    sft = SFTConfig(max_length=16, steps=2, batch_size=4, lr=1e-3, warmup_steps=1, eval_every=0, save_every=1,
                    lora_r=4)
    return RFTConfig(**base), sft


def test_choose_and_the_corpus_sample(tmp_path):
    assert doctest.testmod(rft).failed == 0
    assert choose(np.array([0.5, 0.49, 0.51]), empty=0, margin=0.02) == 0  # a gain under the margin: no trace
    assert choose(np.array([0.5, 0.6, 0.55]), empty=0, margin=0.02) == 1
    source = _source(tmp_path / "s")
    config, sft = _configs(None, source, queries=3, corpus_sample=5)
    data = round_data(source, config)
    assert len(data.queries) == 3 and len(data.corpus) == 5  # a seeded sample of queries, over a sampled corpus
    assert {d for q in data.qrels for d in data.qrels[q]} <= {d.id for d in data.corpus}  # that keeps the positives
    with pytest.raises(ValueError, match="test split"):
        RFTConfig(sources=["scifact:test"])


def test_a_round_scores_candidates_keeps_the_best_and_fine_tunes_on_both_forms(tiny_folder, tmp_path):
    source = _source(tmp_path / "s")
    config, sft = _configs(tiny_folder, source)
    out = train_rft(config, sft, tmp_path / "round")
    records = [json.loads(line) for line in (out / "rft" / "candidates.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(len(r["candidates"]) == 3 for r in records)
    for r in records:
        assert [c["from"] for c in r["candidates"]] == ["empty", "self", "base"]
        rewards = [c["reward"] for c in r["candidates"]]
        assert r["kept"] == choose(np.array(rewards), 0, 0.0)
        assert all(c["ids"][-1] == r["candidates"][0]["ids"][0] for c in r["candidates"])  # each ends in the token
    report = json.loads((out / "rft" / "round.json").read_text())["selection"]["all"]
    assert report["queries"] == 6 and report["reasoning_share"] == pytest.approx(
        sum(r["kept"] != 0 for r in records) / 6)
    model = SearchR3.from_pretrained(out, dtype="fp32", device="cpu")
    assert model.embed_queries(["what causes rain"]).shape == (1, model.dim)
    assert model.config.reasoning_tokens == 4  # it reasons at inference with the budget its traces were cut at

    round_ = RFTRound(config, sft, tmp_path / "other")
    examples, traces = round_.examples(records)
    keys = sorted(e.query_id for e in examples)
    assert len(examples) == 12 and sum(k.endswith("|direct") for k in keys) == 6  # each query twice
    assert set(traces) == {k for k in keys if not k.endswith("|direct")}
    assert all(traces[f"{source}|{r['query_id']}"] == r["candidates"][r["kept"]]["ids"] for r in records)


def test_a_stopped_round_resumes_without_regenerating(tiny_folder, tmp_path, monkeypatch):
    source = _source(tmp_path / "s")
    config, sft = _configs(tiny_folder, source, keep_margin=10.0)  # nothing beats empty by 10: no traces kept
    out = train_rft(config, sft, tmp_path / "round")
    report = json.loads((out / "rft" / "round.json").read_text())["selection"]["all"]
    assert report["reasoning_share"] == 0.0 and report["kept_from"]["empty"] == 6

    def no_generation(*args, **kwargs):
        raise AssertionError("candidates regenerated")

    monkeypatch.setattr(SearchR3, "reason", no_generation)
    monkeypatch.setattr(SearchR3, "embed_documents", no_generation)
    for cached in (out / "rft").glob("corpus-*.npz"):  # a finished source needs no corpus vectors (not committed)
        cached.unlink()
    candidates = out / "rft" / "candidates.jsonl"
    with candidates.open("a") as f:
        f.write('{"source": "cut short by a kil')  # a run stopped while writing a batch
    again = train_rft(config, sft, tmp_path / "round", resume=True)
    assert json.loads((again / "train_summary.json").read_text())
    assert len(candidates.read_text().splitlines()) == 6  # the partial line dropped, nothing regenerated
    with pytest.raises(ValueError, match="other settings .*seed"):  # a different round cannot continue this one
        train_rft(RFTConfig(**{**config.__dict__, "seed": 1}), sft, tmp_path / "round", resume=True)
