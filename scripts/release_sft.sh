#!/usr/bin/env bash
# How `searchr3-smollm2-135m-sft` was made (run from the repository root):
#   bash scripts/release_sft.sh train     # ~75 min on the 2-core CPU -> runs/release
#   bash scripts/release_sft.sh package   # copy the adapter into the package
#   bash scripts/release_sft.sh eval SET  # test split of one bundled set, direct and reasoning
#   bash scripts/release_sft.sh card      # model card with every evaluated set, vs the base
#   python benchmarks/sft_quality.py      # the README's table and significance tests
set -euo pipefail
cd "$(dirname "$0")/.."
SR3=${SR3:-.venv/bin/searchr3}
NAME=searchr3-smollm2-135m-sft
RUN=runs/release
DEST=src/searchr3/released/$NAME
RESULTS=benchmarks/results/sft   # compact result files (metrics and per-query scores only)

case "${1:-}" in
  train)
    $SR3 train sft --config configs/sft-release.yaml --output "$RUN" ;;
  package)
    bash scripts/package_adapter.sh "$RUN" "$DEST" sft_config.json loss.png ;;
  eval)
    set="$2"; mkdir -p "$RESULTS" runs/results
    $SR3 eval --model "$NAME" --data "$set" --reasoning both --output "runs/results/sft-$set.json"
    .venv/bin/python scripts/compact_results.py "runs/results/sft-$set.json" "$RESULTS/sft-$set.json"
    # The untrained base (measured on a lent H100, max_length 512) and the baselines, from `searchr3 eval`
    # runs kept in runs/results/ (smollm2-SET.json, bm25-SET.json, minilm-SET.json).
    for pair in smollm2:base bm25:bm25 minilm:minilm; do
      src="runs/results/${pair%%:*}-$set.json"; dst="$RESULTS/${pair##*:}-$set.json"
      [ -f "$dst" ] || [ ! -f "$src" ] || .venv/bin/python scripts/compact_results.py "$src" "$dst"
    done ;;
  card)
    files=()
    for sft in "$RESULTS"/sft-*.json; do
      set=${sft#"$RESULTS"/sft-}; set=${set%.json}
      files+=("$RESULTS/base-$set.json" "$sft")
    done
    $SR3 card "$DEST" --name "$NAME" --results "${files[@]}" ;;
  *)
    echo "usage: $0 train|package|eval SET|card" >&2; exit 2 ;;
esac
