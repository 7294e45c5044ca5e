#!/usr/bin/env bash
# Full-corpus test scores of a Stage 2 v2 model, direct and with reasoning (run from the repository root):
#   bash experiments/rl_v2/test_sets.sh MODEL TAG [SET...]   # default: the five bundled test sets
# Writes experiments/rl_v2/test/TAG-SET.json (metrics, per-query scores, reasoning report; no runs or
# trace texts); the full results stay in runs/results/. A set already scored is skipped, so a stopped
# run continues where it was. Then: python experiments/rl_v2/tables.py test
# DTYPE (default fp32) sets the precision: the record names it, and tables.py pairs each row with the
# Stage-1 start in the same dtype (branched GRPO was scored in fp32, the RFT rounds in bf16). OUT (default
# experiments/rl_v2/test) is where the compact records go (test/dtype-check: a rescore in another dtype).
set -euo pipefail
cd "$(dirname "$0")/../.."
SR3=${SR3:-.venv/bin/searchr3}
DTYPE=${DTYPE:-fp32}
model="$1"; tag="$2"; shift 2
sets=("$@"); [ ${#sets[@]} -gt 0 ] || sets=(scifact birco-arguana birco-wtb rarb-alphanli wiki-known-item)
OUT=${OUT:-experiments/rl_v2/test}
mkdir -p "$OUT" runs/results
for set in "${sets[@]}"; do
  out=$OUT/$tag-$set.json
  [ -f "$out" ] && { echo "$out: already scored"; continue; }
  $SR3 eval --model "$model" --data "$set" --reasoning both --dtype "$DTYPE" --output "runs/results/rl-v2-$tag-$DTYPE-$set.json"
  .venv/bin/python experiments/common/compact_results.py "runs/results/rl-v2-$tag-$DTYPE-$set.json" "$out"
done
