#!/usr/bin/env bash
# `make demo` (about 13 minutes on 2 CPU cores): a short Stage-1 SFT of the bundled model,
# then the base and the SFT model each index the same SciFact abstracts and answer the same
# queries, with and without reasoning.
set -euo pipefail
cd "$(dirname "$0")/.."
SR3=.venv/bin/searchr3
OUT=runs/demo
DOCS=${DEMO_DOCS:-300}     # SciFact abstracts to index (all 5,183 take ~25 min per model on 2 cores)
mkdir -p "$OUT"

echo "== 1. Stage 1: a short LoRA SFT of smollm2-135m-instruct on SciFact train (configs/sft-quick.yaml)"
$SR3 train sft --config configs/sft-quick.yaml --output "$OUT/sft"
python3 - "$OUT/sft/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
dev = [(r["step"], r["dev_ndcg@10"]) for r in rows if "dev_ndcg@10" in r]
print("pooled dev nDCG@10 (birco-wtb dev sample) by step:", ", ".join(f"{s}: {v:.3f}" for s, v in dev))
PY

QUERIES=(
  "cold exposure makes atherosclerotic plaques grow"
  "green tea changes how cancer chemotherapy works"
  "a fluorescent probe for imaging actin filaments in living cells"
)
for model in smollm2-135m-instruct "$OUT/sft"; do
  name=$(basename "$model")
  echo "== 2. index the first $DOCS SciFact abstracts with $name"
  $SR3 index build --model "$model" --corpus scifact --limit "$DOCS" --max-length 128 --out "$OUT/index-$name"
  echo "== 3. $name: search without reasoning, then with reasoning"
  $SR3 search --index "$OUT/index-$name" -k 3 "${QUERIES[@]}"
  $SR3 search --index "$OUT/index-$name" -k 3 --reasoning --max-new-tokens 48 "${QUERIES[@]}"
done
echo
echo "Twenty SFT steps on a CPU only start teaching the token; configs/sft.yaml is the full recipe."
