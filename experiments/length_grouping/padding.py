"""How much of a Stage-1 batch is padding, with and without grouping by length?

Counts tokens only (the tokenizer and the prompt assembly, no model): builds the training
examples of a config's sources as `searchr3 train sft` does, then for each batch size and
`length_window` lays out the epochs exactly as the trainer orders them
(`searchr3.train.batching.epoch_batches`) and pads each batch as `SearchR3.collate` does (queries
and documents separately, to a multiple of 16). Padding fraction = 1 − real tokens / padded
token slots. Also reports how often a batch's examples come from one source, since grouping by
length also groups by source (short definitions with short definitions), which changes the
in-batch negatives InfoNCE sees. Queries are in direct form (no self-generated traces).
Writes experiments/length_grouping/results/padding.{json,md}.

    python experiments/length_grouping/padding.py                     # configs/sft.yaml's sources
    python experiments/length_grouping/padding.py --max-per-source 50 # a quick check
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from searchr3.assets import resolve_model
from searchr3.fingerprint import tokenizer_folder
from searchr3.prompts import EMBED_TOKEN, PromptBuilder
from searchr3.train.batching import epoch_batches, example_slots, padded, prompt_lengths
from searchr3.train.examples import build_examples
from searchr3.train.sft_config import load_sft_config

OUT = Path(__file__).resolve().parent / "results"
MULTIPLE = 16  # EmbedConfig.pad_to_multiple's default


def epoch_stats(lengths: list[tuple[int, tuple[int, ...]]], sources: list[str], batches: list[list[int]]) -> dict:
    """Real and padded token slots of one epoch, and the mean share of a batch's most common source."""
    real = slots = 0
    purity = []
    for batch in batches:
        q = [lengths[i][0] for i in batch]
        d = [n for i in batch for n in lengths[i][1]]
        real += sum(q) + sum(d)
        slots += padded(q, MULTIPLE) + padded(d, MULTIPLE)
        purity.append(Counter(sources[i] for i in batch).most_common(1)[0][1] / len(batch))
    return {"real": real, "slots": slots, "purity": float(np.mean(purity))}


def row(stats: list[dict], batch_size: int, window: int, key: str, examples: int) -> dict:
    real, slots = sum(s["real"] for s in stats), sum(s["slots"] for s in stats)
    return {"batch_size": batch_size, "length_window": window, "key": key, "padding_fraction": 1 - real / slots,
            "slots_per_example": slots / (len(stats) * (examples // batch_size) * batch_size),
            "majority_source_share": float(np.mean([s["purity"] for s in stats]))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/sft.yaml")
    p.add_argument("--max-per-source", type=int, help="override the config's cap (a quick check)")
    p.add_argument("--batch-sizes", type=int, nargs="*", default=[8, 16, 32])
    p.add_argument("--windows", type=int, nargs="*", default=[0, 4, 16, 64, 100_000])
    p.add_argument("--epochs", type=int, default=3, help="epochs averaged per setting (each a new shuffle)")
    p.add_argument("--output", default=str(OUT / "padding"))
    args = p.parse_args()
    c = load_sft_config(args.config)
    cap = args.max_per_source or c.max_per_source
    examples = build_examples(c.sources, c.negatives, c.neg_rank_min, c.neg_rank_max, cap, c.seed).examples
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(resolve_model(c.init)), local_files_only=True)
    tokenizer.add_tokens([EMBED_TOKEN], special_tokens=True)
    prompts = PromptBuilder(tokenizer, c.max_length, c.query_max_length)
    lengths = prompt_lengths(examples, prompts)
    sources = [e.source for e in examples]
    keys = {"slots": [example_slots(q, d) for q, d in lengths],  # what the trainer sorts by
            "total": [q + sum(d) for q, d in lengths]}  # the plain token total, for comparison
    rows = []
    for bs in args.batch_sizes:
        for window in args.windows:
            for name, key in keys.items() if window else [("-", keys["slots"])]:
                stats = [epoch_stats(lengths, sources, epoch_batches(key, bs, window, c.seed * 1000 + e))
                         for e in range(args.epochs)]
                rows.append(row(stats, bs, window, name, len(examples)))
                print(json.dumps(rows[-1]), flush=True)
    per_source = {s: {"examples": n,
                      "query_tokens_mean": float(np.mean([q for (q, _), x in zip(lengths, sources) if x == s])),
                      "document_tokens_mean": float(np.mean([t for (_, d), x in zip(lengths, sources) if x == s
                                                             for t in d]))}
                  for s, n in Counter(sources).items()}
    result = {"config": args.config, "sources": c.sources, "max_per_source": cap, "negatives": c.negatives,
              "max_length": c.max_length, "query_max_length": c.query_max_length, "pad_to_multiple": MULTIPLE,
              "examples": len(examples), "epochs": args.epochs, "per_source": per_source, "rows": rows}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    lines = ["# Padding in Stage-1 batches, by length_window", "",
             f"Sources {', '.join(result['sources'])} (cap {result['max_per_source']}), {result['examples']:,} "
             f"examples, {result['negatives']} negative(s) each; documents cut to {result['max_length']} text tokens, "
             f"queries to {result['query_max_length'] or result['max_length']}; prompts padded to a multiple of "
             f"{result['pad_to_multiple']}; mean over {result['epochs']} epochs. Window 0 = random batches; "
             "a window ≥ the epoch sorts the whole epoch.", "",
             "| source | examples | query prompt tokens | document prompt tokens |", "|---|---:|---:|---:|"]
    lines += [f"| {s} | {v['examples']:,} | {v['query_tokens_mean']:.0f} | {v['document_tokens_mean']:.0f} |"
              for s, v in result["per_source"].items()]
    lines += ["", "Sort key: `slots` = the trainer's (`example_slots`: query + documents × longest document), "
              "`total` = query + documents' tokens. Majority source: the mean share of a batch's examples "
              "from its most common source.", "",
              "| batch | length_window | key | padding | token slots / example | majority source |",
              "|---:|---:|---|---:|---:|---:|"]
    lines += [f"| {r['batch_size']} | {r['length_window']:,} | {r['key']} | {100 * r['padding_fraction']:.1f}% | "
              f"{r['slots_per_example']:.0f} | {100 * r['majority_source_share']:.0f}% |" for r in result["rows"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
