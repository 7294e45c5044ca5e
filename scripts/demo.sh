#!/usr/bin/env bash
# `make demo`: the whole Search-R3 pipeline in under 20 minutes on 2 CPU cores.
#   1. Stage 1: a short LoRA SFT of the bundled model (configs/sft-quick.yaml), scored on a
#      pooled dev set before and after training.
#   2. Stage 2: a short GRPO run with the local-refresh environment (configs/rl-quick.yaml). It
#      starts from the released Stage-1 adapter `searchr3-smollm2-135m-sft`, not from step 1's
#      few-minute adapter, to keep within time and give RL a model worth refining.
#   3. Evaluation on SciFact test (a seeded sample of queries over a sampled corpus: their
#      judged abstracts plus random others) against BM25 and MiniLM, with and without
#      reasoning: a table with significance marks, a bar chart and the reward curve.
#   4. Search as a user would: an index of the first 200 SciFact abstracts built with the default
#      model (the released Stage-1 adapter), then one query, dense and hybrid (fused with BM25).
set -euo pipefail
cd "$(dirname "$0")/.."
SR3=.venv/bin/searchr3
OUT=runs/demo
QUERIES=${DEMO_QUERIES:-40}   # SciFact test queries
DOCS=${DEMO_DOCS:-200}        # sampled corpus (all 5,183 abstracts take ~35 min per model on 2 cores)
mkdir -p "$OUT"
START=$SECONDS

echo "== 1. Stage 1: a short LoRA SFT of smollm2-135m-instruct (configs/sft-quick.yaml)"
rm -rf "$OUT/sft"
$SR3 train sft --config configs/sft-quick.yaml --output "$OUT/sft"
.venv/bin/python - "$OUT/sft/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
dev = [(r["step"], r["dev_ndcg@10"]) for r in rows if "dev_ndcg@10" in r]
print("pooled dev nDCG@10 by step (step 0 = the untrained base):", ", ".join(f"{s}: {v:.3f}" for s, v in dev))
PY
echo "Stage 1 done after $(( (SECONDS - START) / 60 )) min $(( (SECONDS - START) % 60 )) s"

echo "== 2. Stage 2: a short GRPO run from searchr3-smollm2-135m-sft (configs/rl-quick.yaml)"
rm -rf "$OUT/rl"
$SR3 train rl --config configs/rl-quick.yaml --output "$OUT/rl"
.venv/bin/python - "$OUT/rl/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for r in rows:
    fid = f", fidelity Spearman {r['fidelity_spearman']:.3f} vs exact re-encode" if "fidelity_spearman" in r else ""
    print(f"step {r['step']}: reward {r['reward_mean']:.3f} ± {r['reward_std']:.3f}, nDCG {r['ndcg_mean']:.3f}, "
          f"forced {r['forced_rate']:.0%}, {r['encodings']} of {r['corpus']} documents re-encoded{fid}")
PY
echo "Stage 2 done after $(( (SECONDS - START) / 60 )) min $(( (SECONDS - START) % 60 )) s"

echo "== 3. SciFact test: $QUERIES queries over $DOCS sampled abstracts"
results=()
for model in bm25 minilm searchr3-smollm2-135m-sft "$OUT/rl"; do
  name=$(basename "$model")
  reasoning=both; case $model in bm25|minilm) reasoning=off ;; esac
  $SR3 eval --model "$model" --data scifact --max-queries "$QUERIES" --max-docs "$DOCS" \
    --reasoning $reasoning --output "$OUT/eval-$name.json" > /dev/null
  results+=("$OUT/eval-$name.json")
done
$SR3 report "${results[@]}" --output "$OUT/report.md"
.venv/bin/python - "$OUT/eval-rl.json" <<'PY'
import json, sys
traces = json.load(open(sys.argv[1]))["modes"]["on"]["traces"]
for qid in sorted(traces)[:2]:
    print(f"reasoning of the Stage-2 model on query {qid}: {traces[qid]['trace']!r}")
PY

echo "== 4. Search with the default model: index 200 abstracts, then one query, dense and hybrid"
rm -rf "$OUT/index"
$SR3 index build --corpus scifact --limit 200 --out "$OUT/index" > /dev/null
QUERY="Which cells does the immune system use to fight infection?"
echo "dense:";  $SR3 search --index "$OUT/index" -k 3 "$QUERY"
echo "hybrid:"; $SR3 search --index "$OUT/index" -k 3 --hybrid "$QUERY"
echo
echo "Reward curve: $OUT/rl/reward.png; Stage-1 losses: $OUT/sft/loss.png; the table's chart: $OUT/report.png"
echo "Whole pipeline: $(( (SECONDS - START) / 60 )) min $(( (SECONDS - START) % 60 )) s"
echo "A few CPU minutes per stage only show the pipeline working; the released adapters"
echo "(src/searchr3/released/*/README.md) are the trained models."
