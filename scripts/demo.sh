#!/usr/bin/env bash
# `make demo`: index part of a bundled corpus with the bundled base model, then search it
# with and without reasoning. Later stages (SFT, RL, evaluation) extend this script.
set -euo pipefail
cd "$(dirname "$0")/.."
SR3=.venv/bin/searchr3
OUT=runs/demo
DOCS=${DEMO_DOCS:-500}     # SciFact abstracts to index (all 5,183 take ~30 min on 2 CPU cores)
mkdir -p "$OUT"

echo "== 1. index the first $DOCS SciFact abstracts with smollm2-135m-instruct (untrained base)"
$SR3 index build --model smollm2-135m-instruct --corpus scifact --limit "$DOCS" \
    --config configs/quickstart.yaml --max-length 128 --out "$OUT/index"

QUERIES=(
  "cold exposure makes atherosclerotic plaques grow"
  "green tea changes how cancer chemotherapy works"
  "a fluorescent probe for imaging actin filaments in living cells"
)
echo "== 2. search without reasoning (one forward pass per query)"
$SR3 search --index "$OUT/index" --config configs/quickstart.yaml -k 3 "${QUERIES[@]}"
echo "== 3. search with reasoning (the model analyses each query, then emits <|embed_token|>)"
$SR3 search --index "$OUT/index" --config configs/quickstart.yaml -k 3 --reasoning "${QUERIES[@]}"
echo
echo "The base model has never been taught the embed token: expect weak rankings here."
echo "Stage 1 (SFT) and Stage 2 (RL) are what make it a retriever."
