"""Stage-2 arms: does a bigger group (G 8), a longer reasoning budget (64 tokens) or a harder
training corpus (BM25 depth 30) make reasoning pay where the release's settings (G 4, 32 tokens,
depth 10) do not? Each arm continues the released RL adapter for 24 steps (rl_arms.sh here);
the `control` arm repeats the release's settings, so it, not the released run, is the
comparison, and a second control with another seed measures how much two runs of the same
settings differ. The released run resumed exactly from its step-18
checkpoint to step 48 (`rl-long48`, experiments/rl_longer/rl_longer.sh) is shown beside the restarted control.

Reads the arms' compact eval files (experiments/records/rl/arm-ARM-SET.json, with the released
adapter's `rl-SET.json` as the common start and SFT v1's `sft-SET.json` as the issue's bar) and
their training logs (experiments/rl_arms/results/logs/ARM/metrics.jsonl); writes
experiments/rl_arms/results/rl_arms.{md,json}, rl_arms.png (the effect of reasoning per model, with
intervals) and rl_arms_training.png.

    python experiments/rl_arms/rl_arms.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from statistics import median

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
from paired_tables import (forced_split, forced_split_table, ndcg, score, score_table,  # noqa: E402
                           tests_table, trace_summary)

ROOT = Path(__file__).resolve().parent / "results"
SOURCE = Path(__file__).resolve().parents[1] / "records" / "rl"
LOGS = ROOT / "logs"
# control: G 4, budget 32; control-seed1: the same with seed 1 (other training queries, order and
# rollouts), so control vs control-seed1 is how far two runs of one setting differ
# depth30: a harder training corpus (each query's BM25 top 30 + positives pooled, not top 10)
ARMS = [("control", "control"), ("group8", "G 8"), ("budget64", "budget 64"), ("depth30", "corpus depth 30"),
        ("control-seed1", "control, seed 1")]
SETS = ["scifact-d600"]
WINDOW = 6  # steps in the training plot's moving mean (12 queries)
SYSTEMS = [("sft", "off", "SFT v1"), ("rl", "off", "RL 24 (start)"), ("rl", "on", "RL 24 +R"),
           ("rl-long48", "off", "RL 48 resumed"), ("rl-long48", "on", "RL 48 resumed +R"),
           *[s for arm, name in ARMS for s in ((f"arm-{arm}", "off", f"+24 {name}"),
                                               (f"arm-{arm}", "on", f"+24 {name} +R"))]]
COMPARISONS = [*[pair for arm, _ in ARMS for pair in (
                   ((f"arm-{arm}", "on"), (f"arm-{arm}", "off")),   # does reasoning help this model?
                   ((f"arm-{arm}", "on"), ("sft", "off")),         # the bar: SFT without reasoning
                   ((f"arm-{arm}", "on"), ("rl", "on")))],          # what the 24 steps did to +R
               *[pair for arm, _ in ARMS[1:] for pair in (
                   ((f"arm-{arm}", "on"), ("arm-control", "on")),    # the arm's effect, with reasoning
                   ((f"arm-{arm}", "off"), ("arm-control", "off")))],  # and without
               # the release run resumed exactly to step 48 (experiments/rl_longer/rl_longer.sh) against the restart
               (("arm-control", "on"), ("rl-long48", "on")), (("arm-control", "off"), ("rl-long48", "off"))]


def training(arm: str) -> list[dict]:
    path = LOGS / arm / "metrics.jsonl"
    return [json.loads(line) for line in path.open()] if path.is_file() else []


def perfect(part: list[dict]) -> str:
    """Share of groups tied because every rollout scored nDCG 1 (logged since the depth-30 arm)."""
    logged = [r["ndcg_perfect_groups"] for r in part if "ndcg_perfect_groups" in r]
    return f"{sum(logged) / len(logged):.0%}" if logged else "–"


def training_table(logs: dict[str, list[dict]]) -> list[str]:
    """Means over each half of the run. Step n trains on the same queries in every arm but the
    seed-1 control, so those rows compare like with like. Seconds are a median because the first
    step includes encoding the corpus."""
    md = ["| arm | steps | reward | nDCG@10 (rollouts) | within-group std | groups tied on nDCG | KL | forced "
          "| tied at nDCG 1 | trace tokens | corpus | encodings/step | s/step (median) |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for arm, name in ARMS:
        rows = logs[arm]
        for part in (rows[: len(rows) // 2], rows[len(rows) // 2:]):
            if not part:
                continue
            mean = lambda key: sum(r[key] for r in part) / len(part)  # noqa: E731
            md.append(f"| {name} | {part[0]['step']}-{part[-1]['step']} | {mean('reward_mean'):.3f} "
                      f"| {mean('ndcg_mean'):.3f} | {mean('ndcg_group_std'):.3f} | {mean('ndcg_tied_groups'):.0%} "
                      f"| {mean('kl'):.3f} | {mean('forced_rate'):.0%} | {perfect(part)} | {mean('length_mean'):.1f} "
                      f"| {part[0]['corpus']:,} | {mean('encodings'):.0f} | {median(r['seconds'] for r in part):.0f} |")
    return md


def plot_training(logs: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    panels = [("ndcg_mean", "rollout nDCG@10"), ("ndcg_group_std", "within-group std"),
              ("ndcg_tied_groups", "groups tied"), ("length_mean", "trace tokens")]
    for ax, (key, label) in zip(axes, panels):
        for arm, name in ARMS:
            rows = logs[arm]
            if rows:  # per step the two queries' difficulty dominates: smooth over WINDOW steps
                values = [r[key] for r in rows]
                windows = [values[max(0, i - WINDOW + 1):i + 1] for i in range(len(values))]
                smooth = [sum(w) / len(w) for w in windows]
                ax.plot([r["step"] for r in rows], smooth, label=name)
        ax.set_xlabel("step of the arm (from the released adapter)")
        ax.set_title(f"{label}, mean of last {WINDOW} steps", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_effects(records: dict, path: Path) -> None:
    """The numbers that matter are differences of 0.01-0.03, which bars on a 0-1 axis hide: plot
    each model's +R minus its own direct vector, and minus SFT v1's, with 95% intervals (normal
    approximation over per-query differences)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [(system, name) for system, mode, name in SYSTEMS if mode == "off" and system != "sft"]
    sft = ndcg(records["sft"], "off")
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(models) + 1.2))
    for offset, (label, base) in ((-0.12, ("own direct", None)), (0.12, ("SFT v1 direct", sft))):
        ys, means, halves = [], [], []
        for y, (system, _) in enumerate(models):
            on, off = ndcg(records[system], "on"), base or ndcg(records[system], "off")
            if not on or not off:
                continue
            diffs = np.array([on[q] - off[q] for q in on if q in off])
            ys.append(y + offset)
            means.append(diffs.mean())
            halves.append(1.96 * diffs.std(ddof=1) / np.sqrt(len(diffs)))
        ax.errorbar(means, ys, xerr=halves, fmt="o", capsize=3, label=f"+R − {label}")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(models)), [name for _, name in models])
    ax.invert_yaxis()
    ax.set_xlabel("Δ nDCG@10, SciFact test (600 docs sampled), 95% interval")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    rows, tests, records = score(SOURCE, SETS, SYSTEMS, COMPARISONS)
    names = [n for _, _, n in SYSTEMS if any(r[n] is not None for r in rows)]
    systems = ("rl", *(f"arm-{arm}" for arm, _ in ARMS))
    traces = [f"{row['data']} {s}: {trace_summary(records[row['data']][s])}" for row in rows for s in systems
              if trace_summary(records[row["data"]][s])]
    splits = [x for row in rows for x in forced_split(row["data"], records[row["data"]], systems)]
    logs = {arm: training(arm) for arm, _ in ARMS}
    md = ["# Stage 2 arms: 24 more steps from the released RL adapter, one setting changed (test, nDCG@10)", "",
          *score_table(rows, names), "",
          "+R: greedy reasoning first, within the model's own budget. `scifact-d600`: the test queries' judged "
          "abstracts plus random others, 600 documents; scores compare only with each other.", "",
          "Reasoning traces (mean words; token forced; looping): " + "; ".join(traces), "",
          "## Paired randomisation tests (per-query nDCG@10, 10,000 sign flips)", "", *tests_table(tests), "",
          "## +R − direct, by whether the token came on its own", "", *forced_split_table(splits), "",
          "## Training (SciFact train queries, pooled corpus)", "", *training_table(logs)]
    (ROOT / "rl_arms.md").write_text("\n".join(md) + "\n")
    (ROOT / "rl_arms.json").write_text(json.dumps({"ndcg@10": rows, "tests": tests, "forced_split": splits},
                                                  indent=1) + "\n")
    plot_effects(records[SETS[0]], ROOT / "rl_arms.png")
    plot_training(logs, ROOT / "rl_arms_training.png")
    print("\n".join(md))


if __name__ == "__main__":
    main()
