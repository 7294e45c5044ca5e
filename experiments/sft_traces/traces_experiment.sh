#!/usr/bin/env bash
# Does Stage 1 on the model's own reasoning traces (the paper's KL term then applies) give Stage 2
# reasoning worth keeping? Run from the repository root, one step at a time (2-core CPU times):
#   bash experiments/sft_traces/traces_experiment.sh sft      # release recipe + reasoning_fraction 0.25, w_sft 0.1 (~90 min)
#   bash experiments/sft_traces/traces_experiment.sh rl       # configs/rl-cpu.yaml from that adapter (~20 min)
#   bash experiments/sft_traces/traces_experiment.sh eval     # both on SciFact test, 600 sampled docs, direct and +R (~12 min each)
#   python experiments/releases/rl_quality.py            # adds the `sft-traces` and `rl-traces` columns and tests
# Neither adapter is released: the Stage-1 run scored below the released one on the trainer's
# pooled wiki dev (0.780 vs 0.785 at step 190), which is how a release is chosen.
set -euo pipefail
cd "$(dirname "$0")/../.."   # the repository root
SR3=${SR3:-.venv/bin/searchr3}
SFT=runs/release-cand   # named when it was a release candidate; the RL run's saved config points here
RL=runs/rl-traces

case "${1:-}" in
  sft)
    $SR3 train sft --config configs/sft-release.yaml --output "$SFT" --resume \
      --set w_sft=0.1 --set reasoning_fraction=0.25 --set time_limit_minutes=130
    mkdir -p experiments/sft_traces/results/sft_traces
    cp "$SFT"/{sft_config.json,metrics.jsonl,train_summary.json,loss.png} experiments/sft_traces/results/sft_traces/ ;;
  rl)
    # fidelity checks off: each costs a full re-encode (~4 min) and the released run already measured them
    $SR3 train rl --config configs/rl-cpu.yaml --output "$RL" --resume --set init="$SFT" --set-env fidelity_every=0
    mkdir -p experiments/sft_traces/results/rl_traces
    cp "$RL"/{rl_config.json,metrics.jsonl,reward.png} experiments/sft_traces/results/rl_traces/ ;;
  eval)  # the released RL adapter's evaluation step: runs/results/TAG-scifact-d600.json, compacted into experiments/records/rl/
    bash experiments/releases/release_rl.sh eval scifact "$SFT" sft-traces 600
    bash experiments/releases/release_rl.sh eval scifact "$RL" rl-traces 600 ;;
  *)
    echo "usage: $0 sft|rl|eval" >&2; exit 2 ;;
esac
