"""The real Stage-2 environment, measured from a GRPO run's log (issue 20, item 6).

A run trained with `env.fidelity_every` > 0 logs, per step, the documents the environment
re-encoded (`encodings`, full refreshes included) and, on fidelity steps, how its rewards on the
cache compare with the rewards after an exact re-encode (`fidelity_spearman`,
`fidelity_mean_abs_diff`, `fidelity_corpus_drift`). This script turns that log into the table the
issue asks for: encodings per step against a full re-encode of the corpus, and reward fidelity at
the drift the run really had.

    python experiments/env_real/summarise.py runs/rl-real   # writes experiments/env_real/results.{json,md}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def summarise(run: Path) -> dict:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "encodings" in r]
    if not steps:
        raise SystemExit(f"{run}/metrics.jsonl has no training steps")
    corpus = steps[0]["corpus"]
    local = [r["encodings"] for r in steps if not r.get("full_refresh")]
    checks = [r for r in steps if "fidelity_spearman" in r]
    per_step = float(np.mean([r["encodings"] for r in steps]))  # full refreshes amortised
    return {"run": str(run), "corpus": corpus, "steps": len(steps),
            "encodings_per_step": per_step, "encodings_per_local_step": float(np.mean(local)) if local else None,
            "full_refreshes": sum(bool(r.get("full_refresh")) for r in steps),
            "fewer_than_full": corpus / per_step if per_step else None,
            "stale_admitted_per_step": float(np.mean([r.get("stale_admitted", 0) for r in steps])),
            "fidelity": [{"step": r["step"], "spearman": r["fidelity_spearman"],
                          "mean_abs_diff": r["fidelity_mean_abs_diff"],
                          "corpus_drift": r.get("fidelity_corpus_drift")} for r in checks]}


def markdown(s: dict) -> str:
    lines = [f"Run `{s['run']}`: {s['steps']} steps over a corpus of {s['corpus']:,} documents.", "",
             "| encodings/step (full refreshes amortised) | local steps only | full re-encode | fewer | "
             "stale documents admitted/step |", "|---:|---:|---:|---:|---:|",
             f"| {s['encodings_per_step']:.0f} | {s['encodings_per_local_step'] or 0:.0f} | {s['corpus']:,} | "
             f"{s['fewer_than_full']:.1f}× | {s['stale_admitted_per_step']:.1f} |", ""]
    if s["fidelity"]:
        lines += ["| step | reward Spearman vs exact | mean abs diff | corpus drift (1 − cos) |", "|---:|---:|---:|---:|"]
        lines += [f"| {f['step']} | {f['spearman']:.3f} | {f['mean_abs_diff']:.4f} | {f['corpus_drift']:.2e} |"
                  for f in s["fidelity"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    summary = summarise(Path(sys.argv[1]))
    (HERE / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (HERE / "results.md").write_text(markdown(summary))
    print(markdown(summary))
