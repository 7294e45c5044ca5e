#!/usr/bin/env bash
# Stage-1 ablation: loss terms and LoRA rank at equal steps, and steps (the released adapter).
# Each arm trains configs/sft-ablation.yaml with one change, then is evaluated on SciFact test
# (all 300 queries, direct) over a seeded 400-document sample: the 283 judged abstracts plus
# random others. No released setting was chosen from these numbers.
#   bash experiments/sft_ablation/sft_ablation.sh            # train and evaluate the missing arms (resumable), then report
#   python experiments/sft_ablation/sft_ablation.py   # the report alone, from experiments/sft_ablation/results/
set -euo pipefail
cd "$(dirname "$0")/../.."   # the repository root
SR3=${SR3:-.venv/bin/searchr3}
PY=${PY:-.venv/bin/python}
RUNS=runs/ablation
RESULTS=experiments/sft_ablation/results   # compact eval records + each arm's training log
DOCS=400
ARMS=(
  "paper:"                                              # SFT + KL + InfoNCE + triplet, all weight 1, LoRA r 16
  "no-generative:w_sft=0 w_kl=0"                        # InfoNCE + triplet only
  "sft-0.1:w_sft=0.1"                                   # the token still taught, at a tenth of the weight
  "no-triplet:w_triplet=0"
  "rank-64:lora_r=64 lora_alpha=128"                    # 4x the LoRA rank, same alpha/r scaling
)
mkdir -p "$RESULTS" runs/results

evaluate() {  # MODEL NAME
  local full=runs/results/ablation-$2-scifact-d$DOCS.json
  [ -f "$full" ] || $SR3 eval --model "$1" --data scifact --max-docs $DOCS --output "$full"
  $PY experiments/common/compact_results.py "$full" "$RESULTS/$2-scifact.json"
}

for arm in "${ARMS[@]}"; do
  name=${arm%%:*}; sets=()
  for kv in ${arm#*:}; do sets+=(--set "$kv"); done
  if [ ! -f "$RUNS/$name/searchr3.json" ]; then
    $SR3 train sft --config configs/sft-ablation.yaml --output "$RUNS/$name" --resume "${sets[@]}"
  fi
  mkdir -p "$RESULTS/$name"
  cp "$RUNS/$name/metrics.jsonl" "$RUNS/$name/train_summary.json" "$RUNS/$name/sft_config.json" "$RESULTS/$name/"
  evaluate "$RUNS/$name" "$name"
done
evaluate searchr3-smollm2-135m-sft release-190
$PY experiments/sft_ablation/sft_ablation.py
