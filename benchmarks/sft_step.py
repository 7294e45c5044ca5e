"""Seconds per Stage-1 training step in fp32 and in bf16 autocast; writes benchmarks/results/sft_step.{json,md}.

One fixed batch of SciFact train examples (query, positive, one BM25 negative; documents at the
config's length), the config's full loss and LoRA, on the real bundled model: the same step
`searchr3 train sft` takes. bf16 autocast is timed only where the CPU has native bf16
(`avx512_bf16` or AMX in /proc/cpuinfo): without it bf16 matmuls run 6-8x slower and the
trainer's `bf16: auto` leaves it off. The token warm-up's step (L_token on the queries, no
backward through the model) is timed too. Each mode takes one untimed step first (oneDNN set-up).
Run it on an otherwise idle machine: a second heavy job makes both numbers meaningless.

    python benchmarks/sft_step.py                                  # batch 8, 5 timed steps a mode
    python benchmarks/sft_step.py --steps 1 --batch 2 --output /tmp/sft_step   # a smoke check
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from searchr3.precision import cpu_supports_bf16
from searchr3.train.examples import build_examples
from searchr3.train.loop import hardware_description
from searchr3.train.sft import SFTConfig, SFTTrainer
from searchr3.train.sft_config import load_sft_config

RESULTS = Path(__file__).resolve().parent / "results"


def time_steps(config: SFTConfig, examples: list, steps: int) -> dict:
    """Mean and spread of `steps` timed optimiser steps after one untimed one."""
    with tempfile.TemporaryDirectory() as out:
        trainer = SFTTrainer(config, out, examples)
        trainer.train_step()
        seconds, tokens, padding = [], [], []
        for _ in range(steps):
            start = time.perf_counter()
            record = trainer.train_step()
            seconds.append(time.perf_counter() - start)
            tokens.append(record["tokens"])
            padding.append(record["padding"])
        hardware = hardware_description(trainer.model.device)
    mean = statistics.mean(seconds)
    return {"steps": steps, "seconds_mean": mean, "seconds_min": min(seconds),
            "seconds_sd": statistics.stdev(seconds) if steps > 1 else 0.0,
            "tokens_per_step": statistics.mean(tokens), "tokens_per_s": statistics.mean(tokens) / mean,
            "padding": statistics.mean(padding), "hardware": hardware}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/sft.yaml", help="the recipe whose loss, LoRA and lengths are timed")
    p.add_argument("--source", default="scifact:train", help="where the fixed batch comes from")
    p.add_argument("--batch", type=int, default=8, help="examples per step")
    p.add_argument("--steps", type=int, default=5, help="timed steps per mode")
    p.add_argument("--output", default=str(RESULTS / "sft_step"))
    args = p.parse_args()
    recipe = load_sft_config(args.config)
    base = dataclasses.replace(recipe, sources=[args.source], source_weights={}, batch_size=args.batch, grad_accum=1, steps=10_000,
                               reasoning_fraction=0.0, eval_every=0, save_every=0, time_limit_minutes=None,
                               token_warmup_steps=0)
    examples = build_examples([args.source], base.negatives, base.neg_rank_min, base.neg_rank_max, args.batch,
                              base.seed).examples  # exactly one batch: every step sees the same examples
    native = cpu_supports_bf16()
    modes = {"fp32": dataclasses.replace(base, bf16="off")}
    if native:
        modes["bf16 autocast"] = dataclasses.replace(base, bf16="on")
    modes["token warm-up, fp32"] = dataclasses.replace(base, bf16="off", token_warmup_steps=9_999)
    if native:
        modes["token warm-up, bf16 autocast"] = dataclasses.replace(base, bf16="on", token_warmup_steps=9_999)
    rows = {}
    for name, config in modes.items():
        print(f"{name}: {args.steps} timed steps of {args.batch} ...", flush=True)
        rows[name] = time_steps(config, examples, args.steps)
        print(json.dumps(rows[name]), flush=True)
    result = {"machine": {"hardware": next(iter(rows.values()))["hardware"], "cores": os.cpu_count(),
                          "torch": torch.__version__, "python": platform.python_version(), "native_bf16": native},
              "config": args.config, "source": args.source, "batch": args.batch, "max_length": base.max_length,
              "query_max_length": base.query_max_length, "negatives": base.negatives, "lora_r": base.lora_r,
              "loss_weights": {k: getattr(base, k) for k in ("w_sft", "w_kl", "w_infonce", "w_triplet", "w_token")},
              "modes": rows}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    m, modes = result["machine"], result["modes"]
    fp32 = modes["fp32"]["seconds_mean"]
    lines = ["# Stage-1 step time: fp32 vs bf16 autocast", "",
             f"Machine: {m['hardware']}, {m['cores']} cores, torch {m['torch']}; native bf16: {m['native_bf16']}"
             + ("" if m["native_bf16"] else " (bf16 not timed: without native support it is several times slower)")
             + ".", "",
             f"One fixed batch of {result['batch']} `{result['source']}` examples ({result['negatives']} BM25 negative "
             f"each), documents at {result['max_length']} text tokens, queries at "
             f"{result['query_max_length'] or result['max_length']}; LoRA r {result['lora_r']}; loss weights "
             + ", ".join(f"{k} {v}" for k, v in result["loss_weights"].items())
             + f" ({result['config']}). Mean of the timed steps after one untimed step.", "",
             "| mode | steps | s / step (mean ± sd) | min s | real tokens / step | tokens/s | padding | vs fp32 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in modes.items():
        lines.append(f"| {name} | {r['steps']} | {r['seconds_mean']:.2f} ± {r['seconds_sd']:.2f} | "
                     f"{r['seconds_min']:.2f} | {r['tokens_per_step']:,.0f} | {r['tokens_per_s']:,.0f} | "
                     f"{100 * r['padding']:.0f}% | {fp32 / r['seconds_mean']:.2f}× |")
    lines += ["", "The token warm-up's tokens are the queries' only (it embeds no documents)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
