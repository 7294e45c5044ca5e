#!/usr/bin/env bash
# Full-corpus test scores of a Stage 2 v2 model, direct and with reasoning (run from the repository root):
#   bash experiments/rl_v2/test_sets.sh MODEL TAG [SET...]   # default: the five bundled test sets
# Writes experiments/rl_v2/test/TAG-SET.json (metrics, per-query scores, reasoning report; no runs or
# trace texts); the full results stay in runs/results/. A set already scored is skipped, so a stopped
# run continues where it was. Then: python experiments/rl_v2/tables.py test
# Every model is scored in fp32 (DTYPE=fp32 unless set), so sets scored on different sessions' CPUs
# (some with native bf16, some without) pair with one another.
set -euo pipefail
cd "$(dirname "$0")/../.."
SR3=${SR3:-.venv/bin/searchr3}
DTYPE=${DTYPE:-fp32}
model="$1"; tag="$2"; shift 2
sets=("$@"); [ ${#sets[@]} -gt 0 ] || sets=(scifact birco-arguana birco-wtb rarb-alphanli wiki-known-item)
mkdir -p experiments/rl_v2/test runs/results
for set in "${sets[@]}"; do
  out=experiments/rl_v2/test/$tag-$set.json
  [ -f "$out" ] && { echo "$out: already scored"; continue; }
  $SR3 eval --model "$model" --data "$set" --reasoning both --dtype "$DTYPE" --output "runs/results/rl-v2-$tag-$set.json"
  .venv/bin/python experiments/common/compact_results.py "runs/results/rl-v2-$tag-$set.json" "$out"
done
