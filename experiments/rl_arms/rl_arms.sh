#!/usr/bin/env bash
# Stage 2: which setting keeps reasoning from paying? Each arm continues the released RL adapter
# (24 steps) for 24 more steps with configs/rl-cpu.yaml, changing one setting:
#   control   G 4, budget 32, corpus depth 10 (the release's settings)
#   group8    G 8 (same queries per step, twice the rollouts: each group ranks 8 traces, not 4)
#   budget64  reasoning budget 64 tokens (saved with the model, so it is evaluated with 64 too)
#   depth30   a harder training corpus: each query's BM25 top 30 + positives pooled (not top 10),
#             because most tied groups tie at nDCG 1, which no group size can break
#   control-seed1  the control with seed 1: how far two runs of the same settings differ
# Each starts afresh from the packaged adapter (new optimiser, warm-up, and the adapter itself as the
# KL reference; the step-18 checkpoint of the release run is not kept with the package), so the
# control arm, not the released run, is what the others are compared with.
# Run from the repository root (measured on the 2-core CPU):
#   bash experiments/rl_arms/rl_arms.sh ARM        # train runs/arm-ARM (17 min control, 18 seed1, 21 budget64, 25 group8,
#                                      # 24 depth30 with 8 of them encoding its corpus), then SciFact test,
#                                      # 600 sampled docs, direct and +R (3 min)
#   python experiments/rl_arms/rl_arms.py       # tables, tests and plots over all arms
set -euo pipefail
cd "$(dirname "$0")/../.."   # the repository root
SR3=${SR3:-.venv/bin/searchr3}

arm=${1:-}
case "$arm" in
  control)  sets=() ;;
  group8)   sets=(--set group=8) ;;
  budget64) sets=(--set reasoning_tokens=64) ;;
  depth30)  sets=(--set corpus_depth=30) ;;
  control-seed1) sets=(--set seed=1) ;;   # run-to-run noise: another sample of 60 queries, order and rollouts
  *) echo "usage: $0 control|group8|budget64|depth30|control-seed1" >&2; exit 2 ;;
esac
run=runs/arm-$arm
$SR3 train rl --config configs/rl-cpu.yaml --init searchr3-smollm2-135m-rl --output "$run" --resume \
  --set steps=24 --set save_every=6 --set-env fidelity_every=0 ${sets[@]+"${sets[@]}"}
mkdir -p experiments/rl_arms/results/logs/"$arm"
cp "$run"/{rl_config.json,metrics.jsonl,train_summary.json} experiments/rl_arms/results/logs/"$arm"/
bash experiments/releases/release_rl.sh eval scifact "$run" "arm-$arm" 600
