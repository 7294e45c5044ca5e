#!/usr/bin/env bash
# How `searchr3-smollm2-135m-rl` was made (run from the repository root):
#   bash scripts/release_rl.sh train [NAME W_AUX]  # configs/rl-cpu.yaml, ~25 min on the 2-core CPU -> runs/rl-NAME
#   bash scripts/release_rl.sh package             # copy runs/rl-release's adapter into the package
#   bash scripts/release_rl.sh eval SET MODEL TAG [MAX_DOCS]
#                                                  # test split, direct and reasoning -> runs/results/TAG-SET[-dN].json
#   bash scripts/release_rl.sh card                # model card with the SciFact comparison against the SFT adapter
# `train ablation-noaux 0` is the GRPO-alone ablation (same run without the auxiliary InfoNCE).
set -euo pipefail
cd "$(dirname "$0")/.."
SR3=${SR3:-.venv/bin/searchr3}
NAME=searchr3-smollm2-135m-rl
DEST=src/searchr3/released/$NAME
RESULTS=benchmarks/results/rl   # compact result files (metrics and per-query scores only)

case "${1:-}" in
  train)
    run=${2:-release}; w_aux=${3:-}
    config=configs/rl-cpu.yaml
    if [ -n "$w_aux" ]; then
      config=runs/rl-cpu-$run.yaml
      sed "s/^  w_aux: .*/  w_aux: $w_aux/" configs/rl-cpu.yaml > "$config"
    fi
    $SR3 train rl --config "$config" --output "runs/rl-$run" --resume ;;
  package)
    bash scripts/package_adapter.sh runs/rl-release "$DEST" rl_config.json reward.png ;;
  eval)
    set="$2"; model="$3"; tag="$4"; docs="${5:-}"
    suffix=${docs:+-d$docs}
    mkdir -p "$RESULTS" runs/results
    $SR3 eval --model "$model" --data "$set" --reasoning both ${docs:+--max-docs "$docs"} \
      --output "runs/results/$tag-$set$suffix.json"
    .venv/bin/python scripts/compact_results.py "runs/results/$tag-$set$suffix.json" "$RESULTS/$tag-$set$suffix.json" ;;
  card)
    $SR3 card "$DEST" --name "$NAME" --results "$RESULTS"/sft-*.json "$RESULTS"/rl-*.json ;;
  *)
    echo "usage: $0 train [NAME W_AUX]|package|eval SET MODEL TAG [MAX_DOCS]|card" >&2; exit 2 ;;
esac
