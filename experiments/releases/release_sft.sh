#!/usr/bin/env bash
# How `searchr3-smollm2-135m-sft` was made (run from the repository root):
#   bash experiments/releases/release_sft.sh train     # first run, from the base: ~75 min on the 2-core CPU -> runs/release
#   bash experiments/releases/release_sft.sh continue  # second run, continuing that adapter: ~65 min -> runs/sft-continue
#   bash experiments/releases/release_sft.sh package   # copy the adapter into the package, the first run's record in earlier/
#   bash experiments/releases/release_sft.sh eval SET  # test split of one bundled set, direct and reasoning
#   bash experiments/releases/release_sft.sh card      # model card with every evaluated set, vs the base
#   python experiments/releases/sft_quality.py   # the comparison table and significance tests
set -euo pipefail
cd "$(dirname "$0")/../.."   # the repository root
SR3=${SR3:-.venv/bin/searchr3}
NAME=searchr3-smollm2-135m-sft
FIRST=runs/release          # released alone until 2026-11-26 ("v1"); the RL adapter started from it
RUN=runs/sft-continue       # chosen because its pooled dev nDCG@10 rose over the run (0.805 -> 0.841)
DEST=src/searchr3/released/$NAME
RESULTS=experiments/records/sft   # compact result files (metrics and per-query scores only)

case "${1:-}" in
  train)
    $SR3 train sft --config configs/sft-release.yaml --output "$FIRST" ;;
  continue)
    $SR3 train sft --config configs/sft-continue.yaml --output "$RUN" --resume ;;
  package)
    bash experiments/releases/package_adapter.sh "$RUN" "$DEST" sft_config.json loss.png
    mkdir -p "$DEST/earlier"
    for f in sft_config.json metrics.jsonl train_summary.json loss.png; do
      install -m 644 "$FIRST/$f" "$DEST/earlier/$f"
    done ;;
  eval)
    set="$2"; mkdir -p "$RESULTS" runs/results
    $SR3 eval --model "$NAME" --data "$set" --reasoning both --output "runs/results/sft-$set.json"
    .venv/bin/python experiments/common/compact_results.py "runs/results/sft-$set.json" "$RESULTS/sft-$set.json"
    # The untrained base (measured on a lent H100, max_length 512) and the baselines, from `searchr3 eval`
    # runs kept in runs/results/ (smollm2-SET.json, bm25-SET.json, minilm-SET.json).
    for pair in smollm2:base bm25:bm25 minilm:minilm; do
      src="runs/results/${pair%%:*}-$set.json"; dst="$RESULTS/${pair##*:}-$set.json"
      [ -f "$dst" ] || [ ! -f "$src" ] || .venv/bin/python experiments/common/compact_results.py "$src" "$dst"
    done ;;
  card)
    files=()  # per set: the base, the first run (sft-v1-SET.json, where measured), then this adapter
    for sft in "$RESULTS"/sft-*.json; do
      set=${sft#"$RESULTS"/sft-}; set=${set%.json}
      case "$set" in v1-*) continue ;; esac
      files+=("$RESULTS/base-$set.json")
      [ ! -f "$RESULTS/sft-v1-$set.json" ] || files+=("$RESULTS/sft-v1-$set.json")
      files+=("$sft")
    done
    $SR3 card "$DEST" --name "$NAME" --results "${files[@]}" ;;
  *)
    echo "usage: $0 train|continue|package|eval SET|card" >&2; exit 2 ;;
esac
