#!/usr/bin/env bash
# A second epoch for the released Stage-1 adapter (configs/sft-continue.yaml). Run from the
# repository root, one step at a time (2-core CPU times):
#   bash scripts/sft_continue.sh train      # 190 more steps of the released LoRA (~75 min) -> runs/sft-continue
#   bash scripts/sft_continue.sh eval SET   # test split, direct and +R -> benchmarks/results/sft_continue/
# Released only if its pooled wiki dev nDCG@10 at the last step beats the released adapter's at
# step 0 of the same run (the same dev sample); the test split does not take part in the choice.
set -euo pipefail
cd "$(dirname "$0")/.."
SR3=${SR3:-.venv/bin/searchr3}
RUN=runs/sft-continue
RESULTS=benchmarks/results/sft_continue

case "${1:-}" in
  train)
    $SR3 train sft --config configs/sft-continue.yaml --output "$RUN" --resume
    mkdir -p "$RESULTS"
    cp "$RUN"/{sft_config.json,metrics.jsonl,train_summary.json,loss.png} "$RESULTS"/ ;;
  eval)
    set="$2"; mkdir -p "$RESULTS" runs/results
    $SR3 eval --model "$RUN" --data "$set" --reasoning both --output "runs/results/sft-continue-$set.json"
    .venv/bin/python scripts/compact_results.py "runs/results/sft-continue-$set.json" "$RESULTS/sft-continue-$set.json" ;;
  *)
    echo "usage: $0 train|eval SET" >&2; exit 2 ;;
esac
