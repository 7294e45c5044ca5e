#!/usr/bin/env bash
# How `searchr3-smollm2-135m-rl-v1` was made (run from the repository root):
#   bash experiments/releases/release_rl.sh train [NAME [KEY=VALUE...]]
#                                                  # configs/rl-cpu.yaml (+ --set overrides), ~30 min on the 2-core CPU -> runs/rl-NAME
#   bash experiments/releases/release_rl.sh package             # copy runs/rl-release's adapter into the package
#                                                               # (then python experiments/releases/store_bf16.py)
#   bash experiments/releases/release_rl.sh eval SET MODEL TAG [MAX_DOCS]
#                                                  # test split, direct and reasoning -> runs/results/TAG-SET[-dN].json
#   bash experiments/releases/release_rl.sh card                # model card with the SciFact comparison against the SFT adapter
# `train ablation-noaux w_aux=0` is the GRPO-alone ablation (same run without the auxiliary InfoNCE).
set -euo pipefail
cd "$(dirname "$0")/../.."   # the repository root
SR3=${SR3:-.venv/bin/searchr3}
NAME=searchr3-smollm2-135m-rl-v1
DEST=src/searchr3/released/$NAME
RESULTS=experiments/records/rl   # compact result files (metrics and per-query scores only)

case "${1:-}" in
  train)
    run=${2:-release}; sets=()
    for kv in "${@:3}"; do sets+=(--set "$kv"); done
    $SR3 train rl --config configs/rl-cpu.yaml --output "runs/rl-$run" --resume "${sets[@]}" ;;
  package)
    bash experiments/releases/package_adapter.sh runs/rl-release "$DEST" rl_config.json reward.png ;;
  eval)
    set="$2"; model="$3"; tag="$4"; docs="${5:-}"
    suffix=${docs:+-d$docs}
    mkdir -p "$RESULTS" runs/results
    $SR3 eval --model "$model" --data "$set" --reasoning both ${docs:+--max-docs "$docs"} \
      --output "runs/results/$tag-$set$suffix.json"
    .venv/bin/python experiments/common/compact_results.py "runs/results/$tag-$set$suffix.json" "$RESULTS/$tag-$set$suffix.json" ;;
  card)
    # SFT v1 (its start) and the released RL adapter and the GRPO-alone ablation; the traces experiment is not this model
    files=()
    for f in "$RESULTS"/sft-*.json "$RESULTS"/rl-*.json; do
      case "$f" in *-traces-*) ;; *) files+=("$f") ;; esac
    done
    $SR3 card "$DEST" --name "$NAME" --results "${files[@]}" \
      --init-label "released as searchr3-smollm2-135m-sft-v1; the name without a version has loaded sft-v2 since 2026-11-26" ;;
  *)
    echo "usage: $0 train [NAME [KEY=VALUE...]]|package|eval SET MODEL TAG [MAX_DOCS]|card" >&2; exit 2 ;;
esac
