#!/usr/bin/env bash
# `make demo` (about 15 minutes on 2 CPU cores):
#   1. a short Stage-1 SFT of the bundled model (under 10 minutes), scored on a pooled dev set
#      before and after training;
#   2. the base model, that short run and the released adapter `searchr3-smollm2-135m-sft`
#      each index the same SciFact abstracts and answer the same queries, with and without
#      reasoning.
set -euo pipefail
cd "$(dirname "$0")/.."
SR3=.venv/bin/searchr3
OUT=runs/demo
DOCS=${DEMO_DOCS:-200}     # SciFact abstracts to index (all 5,183 take ~25 min per model on 2 cores)
mkdir -p "$OUT"

echo "== 1. Stage 1: a short LoRA SFT of smollm2-135m-instruct (configs/sft-quick.yaml)"
SECONDS=0
rm -rf "$OUT/sft"
$SR3 train sft --config configs/sft-quick.yaml --output "$OUT/sft"
echo "SFT wall time: $((SECONDS / 60)) min $((SECONDS % 60)) s"
.venv/bin/python - "$OUT/sft/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
dev = [(r["step"], r["dev_ndcg@10"]) for r in rows if "dev_ndcg@10" in r]
print("pooled dev nDCG@10 by step (step 0 = the untrained base):", ", ".join(f"{s}: {v:.3f}" for s, v in dev))
PY

QUERIES=(
  "cold exposure makes atherosclerotic plaques grow"
  "green tea changes how cancer chemotherapy works"
  "a fluorescent probe for imaging actin filaments in living cells"
)
for model in smollm2-135m-instruct "$OUT/sft" searchr3-smollm2-135m-sft; do
  name=$(basename "$model")
  echo "== 2. index the first $DOCS SciFact abstracts with $name"
  $SR3 index build --model "$model" --corpus scifact --limit "$DOCS" --max-length 128 --out "$OUT/index-$name"
  echo "== 3. $name: search without reasoning, then with reasoning"
  $SR3 search --index "$OUT/index-$name" -k 3 "${QUERIES[@]}"
  $SR3 search --index "$OUT/index-$name" -k 3 --reasoning --max-new-tokens 48 "${QUERIES[@]}"
done
echo
echo "A few CPU minutes only start teaching the token; searchr3-smollm2-135m-sft is the released"
echo "Stage-1 adapter (its model card: src/searchr3/released/searchr3-smollm2-135m-sft/README.md)."
