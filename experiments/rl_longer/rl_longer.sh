#!/usr/bin/env bash
# Is the released Stage-2 run (24 steps) short of steps? Continue it to 96 steps and evaluate on the way.
# Run from the repository root, one step at a time (2-core CPU times):
#   bash experiments/rl_longer/rl_longer.sh train    # copy runs/rl-release, resume from its step-18 checkpoint to step 96 (~70 min)
#   bash experiments/rl_longer/rl_longer.sh eval     # steps 48 and 96 on SciFact test, 600 sampled docs, direct and +R (~12 min each)
#   python experiments/rl_headroom/rl_headroom.py --model runs/rl-long --label rl-96-steps   # ~14 min
#   python experiments/releases/rl_quality.py    # adds the `rl-long48` and `rl-long96` columns and tests
#   bash experiments/rl_longer/rl_longer.sh epochs   # training reward by epoch (30 steps = each of the 60 queries once)
#   bash experiments/rl_longer/rl_longer.sh beta0    # the KL arm: from the same step-18 checkpoint to step 48 with beta 0,
#                                      # then evaluated like step 48 above (~20 + 7 min)
# The resume is exact (same data order and RNG states), so steps 19-24 repeat the released run and
# the rest continue it with the same settings. Fidelity checks every 24 steps instead of 12 (each
# is a full re-encode, ~4 min); that changes nothing in the first 24 steps.
set -euo pipefail
cd "$(dirname "$0")/../.."   # the repository root
SR3=${SR3:-.venv/bin/searchr3}
RUN=runs/rl-long

# continue_release RUN RESULTS KEY=VALUE...: resume a copy of the released run (from its latest
# checkpoint, step 18) with these overrides, and keep its logs in experiments/rl_longer/results/RESULTS
continue_release() {
  local run=$1 results=experiments/rl_longer/results/$2; shift 2
  if [ ! -d "$run" ]; then
    cp -r runs/rl-release "$run"
    rm -f "$run/adapter_model.safetensors"   # the step-24 adapter; training rewrites it
  fi
  local sets=()
  for kv in "$@"; do case "$kv" in env.*) sets+=(--set-env "${kv#env.}") ;; *) sets+=(--set "$kv") ;; esac; done
  $SR3 train rl --config configs/rl-cpu.yaml --output "$run" --resume "${sets[@]}"
  mkdir -p "$results"
  cp "$run"/{rl_config.json,metrics.jsonl,reward.png,train_summary.json} "$results"/
}

case "${1:-}" in
  train)
    continue_release "$RUN" rl_long steps=96 save_every=24 env.fidelity_every=24 ;;
  eval)
    # the checkpoints keep the latest two (48 and 72) once the run is done
    [ -d "$RUN-48" ] || cp -r "$RUN/checkpoints/step-000048/model" "$RUN-48"
    bash experiments/releases/release_rl.sh eval scifact "$RUN" rl-long96 600
    bash experiments/releases/release_rl.sh eval scifact "$RUN-48" rl-long48 600 ;;
  beta0)
    continue_release runs/rl-beta0 rl_beta0 steps=48 save_every=0 beta=0 env.fidelity_every=0
    bash experiments/releases/release_rl.sh eval scifact runs/rl-beta0 rl-beta0-48 600 ;;
  epochs)
    .venv/bin/python - experiments/rl_longer/results/rl_long <<'PY'
import json, sys
from pathlib import Path
results = Path(sys.argv[1])
rows = [json.loads(line) for line in (results / "metrics.jsonl").open()]
queries = json.loads((results / "train_summary.json").read_text())["queries"]
per_epoch = queries // json.loads((results / "rl_config.json").read_text())["rl"]["batch_queries"]


def tied(part):  # logged from step 19 on (the released run's first 18 steps predate it)
    logged = [r["ndcg_tied_groups"] for r in part if "ndcg_tied_groups" in r]
    return f"{sum(logged) / len(logged):.0%} (steps {len(logged)})" if logged else "-"


print("| steps | reward | nDCG@10 (rollouts) | KL | forced | trace tokens | groups tied on nDCG |")
print("|---|---:|---:|---:|---:|---:|---:|")
for start in range(0, len(rows), per_epoch):
    part = rows[start:start + per_epoch]
    mean = lambda key: sum(r[key] for r in part) / len(part)
    print(f"| {part[0]['step']}-{part[-1]['step']} | {mean('reward_mean'):.3f} | {mean('ndcg_mean'):.3f} | "
          f"{mean('kl'):.3f} | {mean('forced_rate'):.0%} | {mean('length_mean'):.1f} | {tied(part)} |")
PY
    ;;
  *)
    echo "usage: $0 train|eval|epochs|beta0" >&2; exit 2 ;;
esac
