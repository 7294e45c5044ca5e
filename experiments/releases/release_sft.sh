#!/usr/bin/env bash
# How `searchr3-smollm2-135m-sft-v1` and `-sft-v2` were made (run from the repository root):
#   bash experiments/releases/release_sft.sh train     # sft-v1, from the base: ~75 min on the 2-core CPU -> runs/release
#   bash experiments/releases/release_sft.sh continue  # sft-v2, continuing sft-v1: ~65 min -> runs/sft-continue
#   bash experiments/releases/release_sft.sh package   # copy both into the package (v2 keeps v1's record in earlier/),
#                                                      # then python experiments/releases/store_bf16.py
#   bash experiments/releases/release_sft.sh eval SET [v1|v2]  # test split of one bundled set, direct and reasoning
#   bash experiments/releases/release_sft.sh card      # both model cards: every evaluated set, vs the base
#   bash experiments/releases/release_sft.sh package-v3   # sft-v3 (docs/sft-v3.md; the run is experiments/sft_v3/run,
#   bash experiments/releases/release_sft.sh card-v3      #   trained in chunks with configs/sft-v3.yaml): package, card
#   python experiments/releases/sft_quality.py   # the comparison table and significance tests
set -euo pipefail
cd "$(dirname "$0")/../.."   # the repository root
SR3=${SR3:-.venv/bin/searchr3}
NAME=searchr3-smollm2-135m-sft
FIRST=runs/release          # sft-v1: released alone until 2026-11-26; the RL adapter started from it
RUN=runs/sft-continue       # sft-v2: released because its pooled dev nDCG@10 rose over the run (0.805 -> 0.841)
DEST_V1=src/searchr3/released/$NAME-v1
DEST=src/searchr3/released/$NAME-v2
RESULTS=experiments/records/sft   # compact result files (metrics and per-query scores only)

case "${1:-}" in
  train)
    $SR3 train sft --config configs/sft-release.yaml --output "$FIRST" ;;
  continue)
    $SR3 train sft --config configs/sft-continue.yaml --output "$RUN" --resume ;;
  package)
    bash experiments/releases/package_adapter.sh "$FIRST" "$DEST_V1" sft_config.json loss.png
    bash experiments/releases/package_adapter.sh "$RUN" "$DEST" sft_config.json loss.png
    mkdir -p "$DEST/earlier"
    for f in sft_config.json metrics.jsonl train_summary.json loss.png; do
      install -m 644 "$FIRST/$f" "$DEST/earlier/$f"
    done ;;
  eval)
    set="$2"; version="${3:-v2}"; mkdir -p "$RESULTS" runs/results
    tag=sft; [ "$version" = v2 ] || tag="sft-$version"   # records: sft-SET.json (v2), sft-v1-SET.json
    $SR3 eval --model "$NAME-$version" --data "$set" --reasoning both --output "runs/results/$tag-$set.json"
    .venv/bin/python experiments/common/compact_results.py "runs/results/$tag-$set.json" "$RESULTS/$tag-$set.json"
    # The untrained base (measured on a lent H100, max_length 512) and the baselines, from `searchr3 eval`
    # runs kept in runs/results/ (smollm2-SET.json, bm25-SET.json, minilm-SET.json).
    for pair in smollm2:base bm25:bm25 minilm:minilm; do
      src="runs/results/${pair%%:*}-$set.json"; dst="$RESULTS/${pair##*:}-$set.json"
      [ -f "$dst" ] || [ ! -f "$src" ] || .venv/bin/python experiments/common/compact_results.py "$src" "$dst"
    done ;;
  card)
    files=(); first=()  # per set: the base, sft-v1 (sft-v1-SET.json, where measured), then sft-v2
    for sft in "$RESULTS"/sft-*.json; do
      set=${sft#"$RESULTS"/sft-}; set=${set%.json}
      case "$set" in v1-*) continue ;; esac
      files+=("$RESULTS/base-$set.json"); first+=("$RESULTS/base-$set.json")
      [ ! -f "$RESULTS/sft-v1-$set.json" ] || { files+=("$RESULTS/sft-v1-$set.json"); first+=("$RESULTS/sft-v1-$set.json"); }
      files+=("$sft")
    done
    $SR3 card "$DEST_V1" --name "$NAME-v1" --results "${first[@]}"
    $SR3 card "$DEST" --name "$NAME-v2" --results "${files[@]}" ;;
  package-v3)
    bash experiments/releases/package_adapter.sh experiments/sft_v3/run "src/searchr3/released/$NAME-v3" sft_config.json loss.png ;;
  card-v3)  # the dev records of the release rule (the test sets come later)
    $SR3 card "src/searchr3/released/$NAME-v3" --name "$NAME-v3" \
      --results experiments/sft_v3/dev/sft-v2.json experiments/sft_v3/dev/sft-v3.json ;;
  *)
    echo "usage: $0 train|continue|package|eval SET|card|package-v3|card-v3" >&2; exit 2 ;;
esac
