#!/usr/bin/env bash
# Copy a trained adapter run into the package: the files every released adapter needs (weights,
# settings, training log and summary) plus the run-specific ones given after DEST. The tokenizer
# is the shared src/searchr3/released/tokenizer/ when the run's is identical (searchr3.json then
# names it); otherwise the run's own files are copied. Then store the weights in bf16
# (experiments/releases/store_bf16.py checks that reloading keeps every vector).
#   bash experiments/releases/package_adapter.sh RUN DEST [EXTRA_FILE ...]
set -euo pipefail
run="$1"; dest="$2"; shift 2
shared=src/searchr3/released/tokenizer
mkdir -p "$dest"
for f in adapter_config.json adapter_model.safetensors searchr3.json metrics.jsonl train_summary.json "$@"; do
  cp "$run/$f" "$dest/$f"
  chmod 644 "$dest/$f"
done
own=0
for f in tokenizer.json tokenizer_config.json chat_template.jinja; do
  cmp -s "$run/$f" "$shared/$f" || own=1
done
if [ "$own" = 0 ]; then
  .venv/bin/python - "$dest/searchr3.json" <<'PY'
import json, sys
path = sys.argv[1]
meta = json.load(open(path))
meta["tokenizer"] = "../tokenizer"
json.dump(meta, open(path, "w"), indent=2)
PY
else
  for f in tokenizer.json tokenizer_config.json chat_template.jinja; do install -m 644 "$run/$f" "$dest/$f"; done
fi
du -sh "$dest"
