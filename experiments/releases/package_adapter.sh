#!/usr/bin/env bash
# Copy a trained adapter run into the package: the files every released adapter needs (weights,
# settings, tokenizer, training log and summary) plus the run-specific ones given after DEST.
#   bash experiments/releases/package_adapter.sh RUN DEST [EXTRA_FILE ...]
set -euo pipefail
run="$1"; dest="$2"; shift 2
mkdir -p "$dest"
for f in adapter_config.json adapter_model.safetensors searchr3.json tokenizer.json tokenizer_config.json \
         chat_template.jinja metrics.jsonl train_summary.json "$@"; do
  cp "$run/$f" "$dest/$f"
  chmod 644 "$dest/$f"
done
du -sh "$dest"
