#!/usr/bin/env bash
# Is the released Stage-2 run (24 steps) short of steps? Continue it to 96 steps and evaluate on the way.
# Run from the repository root, one step at a time (2-core CPU times):
#   bash scripts/rl_longer.sh train    # copy runs/rl-release, resume from its step-18 checkpoint to step 96 (~70 min)
#   bash scripts/rl_longer.sh eval     # steps 48 and 96 on SciFact test, 600 sampled docs, direct and +R (~12 min each)
#   (cd benchmarks && python rl_headroom.py --model ../runs/rl-long --label rl-96-steps)   # ~14 min
#   python benchmarks/rl_quality.py    # adds the `rl-long48` and `rl-long96` columns and tests
#   bash scripts/rl_longer.sh epochs   # training reward by epoch (30 steps = each of the 60 queries once)
#   bash scripts/rl_longer.sh beta0    # the KL arm: from the same step-18 checkpoint to step 48 with beta 0,
#                                      # then evaluated like step 48 above (~25 + 10 min)
# The resume is exact (same data order and RNG states), so steps 19-24 repeat the released run and
# the rest continue it with the same settings. Fidelity checks every 24 steps instead of 12 (each
# is a full re-encode, ~4 min); that changes nothing in the first 24 steps.
set -euo pipefail
cd "$(dirname "$0")/.."
SR3=${SR3:-.venv/bin/searchr3}
RUN=runs/rl-long

case "${1:-}" in
  train)
    if [ ! -d "$RUN" ]; then
      cp -r runs/rl-release "$RUN"
      rm -f "$RUN/adapter_model.safetensors"   # the step-24 adapter; training rewrites it
    fi
    $SR3 train rl --config configs/rl-cpu.yaml --output "$RUN" --resume \
      --set steps=96 --set save_every=24 --set-env fidelity_every=24
    mkdir -p benchmarks/results/rl_long
    cp "$RUN"/{rl_config.json,metrics.jsonl,reward.png,train_summary.json} benchmarks/results/rl_long/ ;;
  eval)
    # the checkpoints keep the latest two (48 and 72) once the run is done
    [ -d "$RUN-48" ] || cp -r "$RUN/checkpoints/step-000048/model" "$RUN-48"
    bash scripts/release_rl.sh eval scifact "$RUN" rl-long96 600
    bash scripts/release_rl.sh eval scifact "$RUN-48" rl-long48 600 ;;
  beta0)
    if [ ! -d runs/rl-beta0 ]; then
      cp -r runs/rl-release runs/rl-beta0
      rm -f runs/rl-beta0/adapter_model.safetensors
    fi
    $SR3 train rl --config configs/rl-cpu.yaml --output runs/rl-beta0 --resume \
      --set steps=48 --set save_every=0 --set beta=0 --set-env fidelity_every=0
    mkdir -p benchmarks/results/rl_beta0
    cp runs/rl-beta0/{rl_config.json,metrics.jsonl,reward.png,train_summary.json} benchmarks/results/rl_beta0/
    bash scripts/release_rl.sh eval scifact runs/rl-beta0 rl-beta0-48 600 ;;
  epochs)
    .venv/bin/python - benchmarks/results/rl_long/metrics.jsonl <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
per_epoch = 30  # max_queries 60 / batch_queries 2


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
