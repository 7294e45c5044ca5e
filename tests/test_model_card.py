"""Model cards are built from a run's own files; the CLI lists released models and rewrites cards."""

import json

from searchr3 import RELEASED_MODELS, registered_names
from searchr3.cli import main
from searchr3.model_card import write_model_card
from searchr3.runtime import tune_malloc


def _record(model, scores):
    per_query = {f"q{i}": {"ndcg@10": s, "recall@10": s, "recall@100": s, "mrr@10": s} for i, s in enumerate(scores)}
    mean = {m: sum(s[m] for s in per_query.values()) / len(per_query) for m in ("ndcg@10", "recall@10",
                                                                              "recall@100", "mrr@10")}
    return {"data": {"name": "toy", "split": "test", "fingerprint": "f"}, "model": {"spec": model, "name": model},
            "modes": {"off": {"metrics": mean, "per_query": per_query, "timing": {"total_seconds": 1.0}}}}


def _run_folder(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "searchr3.json").write_text(json.dumps({"base": "smollm2-135m-instruct"}))
    (folder / "sft_config.json").write_text(json.dumps({"sources": ["scifact:train", "wiki-known-item:train"],
                                                        "lora_r": 16, "steps": 2, "dev": "wiki-known-item:dev"}))
    rows = [{"step": 0, "dev_ndcg@10": 0.25},
            {"step": 1, "sft": 2.0, "kl": 0.0, "infonce": 1.0, "triplet": 0.1, "total": 3.1, "tokens": 100,
             "seconds": 2.0},
            {"step": 2, "sft": 1.0, "kl": 0.0, "infonce": 0.5, "triplet": 0.0, "total": 1.5, "tokens": 300,
             "seconds": 2.0, "dev_ndcg@10": 0.5}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_card_states_what_the_run_measured(tmp_path):
    folder = _run_folder(tmp_path)
    base, trained = tmp_path / "base.json", tmp_path / "trained.json"
    base.write_text(json.dumps(_record("base", [0.0] * 12)))
    trained.write_text(json.dumps(_record("trained", [1.0] * 12)))
    card = write_model_card(folder, "my-model", [base, trained]).read_text()
    assert card.startswith("---\nlibrary_name: searchr3")
    assert 'SearchR3.from_pretrained("my-model")' in card
    assert "Steps trained: 2" in card and "400 tokens, 100 tokens/s" in card
    assert "by step: 0: 0.250, 2: 0.500" in card
    assert "| toy/test | trained | off | 1.000 ▲ |" in card and "| 12 | – | 1 |" in card  # significance vs the first (base) row
    assert "non-commercial" in card  # SciFact's licence is surfaced


def test_card_quotes_the_hand_written_narrative(tmp_path):
    folder = _run_folder(tmp_path)
    assert "## How it was made" not in write_model_card(folder, "my-model").read_text()
    (folder / "how_made.md").write_text("Chosen on dev by a rule set **before** the run.\n")
    card = write_model_card(folder, "my-model").read_text()
    assert "## How it was made\n\nChosen on dev by a rule set **before** the run.\n" in card
    assert card.index("## How it was made") < card.index("## Training")


def test_card_of_a_continued_adapter_shows_every_run(tmp_path):
    folder = _run_folder(tmp_path)
    (tmp_path / "first").mkdir()
    earlier = _run_folder(tmp_path / "first")
    config = json.loads((folder / "sft_config.json").read_text())
    (folder / "sft_config.json").write_text(json.dumps({**config, "init": "my-model"}))
    (folder / "train_summary.json").write_text(json.dumps({"wall_seconds": 600}))
    (earlier / "train_summary.json").write_text(json.dumps({"wall_seconds": 1200}))
    earlier.rename(folder / "earlier")
    card = write_model_card(folder, "my-model").read_text()
    assert "2 runs, each continuing the adapter of the one before: 4 steps, 30 min of wall time in all" in card
    assert "### Earlier run 1" in card and card.count("Steps trained: 2") == 2
    assert "`my-model` (as first released: the earlier run below)" in card
    assert "![loss curves](loss.png)" in card and "![loss curves](earlier/loss.png)" in card


def test_rl_card_can_say_which_release_it_started_from(tmp_path):
    folder = tmp_path / "rl"
    folder.mkdir()
    (folder / "searchr3.json").write_text(json.dumps({"base": "smollm2-135m-instruct"}))
    (folder / "rl_config.json").write_text(json.dumps({
        "rl": {"init": "my-sft", "data": "scifact:train", "batch_queries": 2, "group": 4},
        "env": {"reward_k": 10}}))
    rows = [{"step": s, "reward_mean": 0.1 * s, "kl": 0.01, "forced_rate": 0.5, "length_mean": 9.0,
             "encodings": 60, "corpus": 500} for s in (1, 2)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plain = write_model_card(folder, "my-rl").read_text()
    assert "Stage-2 model: `my-sft` further trained" in plain and "| init | `my-sft` |" in plain
    card = write_model_card(folder, "my-rl", init_label="its first run").read_text()
    assert "Stage-2 model: `my-sft` (its first run) further trained" in card
    assert "| init | `my-sft` (its first run) |" in card and "Steps trained: 2" in card


def test_cli_lists_released_models_and_rewrites_cards(tmp_path, capsys):
    assert "searchr3-smollm2-135m-sft-v3" in RELEASED_MODELS and "searchr3-smollm2-135m-sft" in registered_names()
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct\tbase model" in out and "searchr3-smollm2-135m-sft-v1\tadapter over" in out
    assert "searchr3-smollm2-135m-sft\talias of searchr3-smollm2-135m-sft-v3 (the default model)" in out
    assert "searchr3-smollm2-135m-rl\talias of searchr3-smollm2-135m-rl-v1" in out
    folder = _run_folder(tmp_path)
    assert main(["card", str(folder), "--name", "x"]) == 0 and "# x" in (folder / "README.md").read_text()
    assert main(["card", str(tmp_path)]) == 2
    assert "not a searchr3 model folder" in capsys.readouterr().err


def test_malloc_tuning_takes_on_glibc():
    assert tune_malloc() is True
