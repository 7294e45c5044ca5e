"""Stage-1 ablation report: which loss terms, how much LoRA rank and how many steps the SFT model needs.

Reads experiments/sft_ablation/results/ (written by sft_ablation.sh here): for each arm a compact
`searchr3 eval` record (`ARM-scifact.json`) and, for the short runs, the training log and summary
(`ARM/metrics.jsonl`, `ARM/train_summary.json`, `ARM/sft_config.json`). Writes
experiments/sft_ablation/results/sft_ablation.{md,json,png}: SciFact test nDCG@10 per arm, paired randomisation
tests against the paper's recipe, and each run's final loss terms and time.

    python experiments/sft_ablation/sft_ablation.py
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from searchr3.train.sft_config import load_sft_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
from paired_tables import plot, score, score_table, tests_table  # noqa: E402

ROOT = Path(__file__).resolve().parent / "results"
SOURCE = ROOT
BASE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sft-ablation.yaml"
# (file prefix, column name); each short run's change is read from its saved config
ARMS = [("paper", "paper (30 steps)"), ("no-generative", "no SFT/KL"), ("sft-0.1", "w_sft 0.1"),
        ("no-triplet", "no triplet"), ("rank-64", "LoRA r 64"), ("release-190", "paper (190 steps)")]
RELEASE_CHANGE = "the released adapter: same recipe, 190 steps"
TERMS = ["sft", "kl", "infonce", "triplet"]
LAST = 10  # steps averaged for the final loss terms


def run_summary(arm: str) -> dict:
    """Time, speed and final loss terms of a short run (empty for the released adapter)."""
    folder = SOURCE / arm
    if not (folder / "metrics.jsonl").is_file():
        return {}
    steps = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [s for s in steps if "total" in s]
    tail = steps[-LAST:]
    summary = json.loads((folder / "train_summary.json").read_text())
    out = {"steps": summary["steps"], "wall_minutes": summary["wall_seconds"] / 60,
           "tokens_per_s": sum(s["tokens"] for s in steps) / sum(s["seconds"] for s in steps)}
    out.update({t: sum(s[t] for s in tail) / len(tail) for t in TERMS})
    out["grad_norm"] = sum(s["grad_norm"] for s in steps) / len(steps)  # before clipping to max_grad_norm
    out["max_grad_norm"] = json.loads((folder / "sft_config.json").read_text())["max_grad_norm"]
    return out


def change(arm: str) -> str:
    """Settings where a short run's saved config differs from configs/sft-ablation.yaml."""
    saved = SOURCE / arm / "sft_config.json"
    if not saved.is_file():
        return RELEASE_CHANGE
    base, run = asdict(load_sft_config(BASE_CONFIG)), json.loads(saved.read_text())
    # a setting added after the run (e.g. w_token) is absent from its saved config: it did not differ
    diff = [f"{k} {run[k]}" for k in base if k in run and run[k] != base[k]]
    return ", ".join(diff) or "none: SFT + KL + InfoNCE + triplet, weights 1, LoRA r 16"


def main() -> None:
    arms = [a for a in ARMS if (SOURCE / f"{a[0]}-scifact.json").is_file()]
    systems = [(prefix, "off", name) for prefix, name in arms]
    comparisons = [((prefix, "off"), ("paper", "off")) for prefix, _ in arms if prefix != "paper"]
    rows, tests, records = score(SOURCE, ["scifact"], systems, comparisons)
    if not rows:
        raise SystemExit(f"no results in {SOURCE}; run experiments/sft_ablation/sft_ablation.sh")
    docs = next(r for r in records["scifact"].values() if r)["data"].get("max_docs")
    rows[0]["data"] = f"scifact ({docs} docs sampled)"
    names = [name for _, name in arms]
    runs = {prefix: run_summary(prefix) for prefix, _ in arms}
    md = ["# Stage 1 ablation: loss terms, LoRA rank and steps", "",
          f"SciFact test, all 300 queries, direct (no reasoning), over a seeded {docs}-document sample "
          "(the judged abstracts plus random others): scores are higher than on the full corpus and compare "
          "only with each other. Every short run starts from the untrained base with the same data, order, "
          "seed and schedule (`configs/sft-ablation.yaml`, 30 steps of 8) and changes one thing. "
          "No released setting was chosen from these numbers.", "", *score_table(rows, names), "",
          "| arm | change | steps | minutes | tokens/s | grad norm | " + " | ".join(f"L_{t}" for t in TERMS) + " |",
          "|---|---|---:|---:|---:|---:|" + "---:|" * len(TERMS)]
    for prefix, name in arms:
        r = runs[prefix]
        cells = ([str(r["steps"]), f"{r['wall_minutes']:.1f}", f"{r['tokens_per_s']:.0f}", f"{r['grad_norm']:.1f}"]
                 + [f"{r[t]:.3f}" for t in TERMS]) if r else ["190", "see card"] + [""] * (2 + len(TERMS))
        md.append(f"| {name} | {change(prefix)} | " + " | ".join(cells) + " |")
    clip = next((r["max_grad_norm"] for r in runs.values() if r), None)
    md += ["", f"L_*: mean of the last {LAST} steps (unweighted, so a term with weight 0 is still shown). "
           f"Grad norm: mean over the run before clipping to {clip}; a large one means one term's gradient "
           "sets the update's direction (AdamW then sizes each parameter's step, so the other terms' share "
           "is what they lose). L_KL is 0 in every arm: with "
           "`reasoning_fraction: 0` a query's assistant turn is the token alone, where KL does not apply, "
           "so removing SFT and KL removes only the SFT term.", "",
           "## Paired randomisation tests against the paper's recipe at 30 steps (per-query nDCG@10)", "",
           *tests_table(tests)]
    (ROOT / "sft_ablation.md").write_text("\n".join(md) + "\n")
    (ROOT / "sft_ablation.json").write_text(json.dumps({"ndcg@10": rows, "runs": runs, "tests": tests}, indent=1) + "\n")
    plot(rows, names, ROOT / "sft_ablation.png", ylabel="nDCG@10 (SciFact test, sampled corpus)")
    print("\n".join(md))


if __name__ == "__main__":
    main()
