#!/bin/bash
# Here, before the device calls: the tracked tree is 175 MB and a call carries 64 MiB, the GGUF base
# alone 98 MB. Moves the large tracked files the run does not need to $STASH (restore.sh puts them
# back) and fills three carried folders, one per call: .h1 (wheels, GGUF part a), .h2 (part b),
# .h3 (part c, the data, the Stage-1 adapter, the tokenizer, the wiki set built here).
set -euo pipefail
cd "$(dirname "$0")/../../.."
STASH=${STASH:-/work/h200-stash}
grep -qx '/.h[123]/' .git/info/exclude || printf '/.h1/\n/.h2/\n/.h3/\n' >> .git/info/exclude
rm -rf .h1 .h2 .h3 && mkdir -p .h1/whl .h2 .h3
gguf=$(.venv/bin/python -c "from searchr3.assets import BUNDLED_MODELS as B, package_file
m = B['smollm2-135m-instruct']; print(package_file(m.package, m.filename, m.install))")
sha256sum "$gguf" | cut -d' ' -f1 > .h3/gguf.sha256
split -b 38000000 -d -a 1 "$gguf" /tmp/gguf.part.
mv /tmp/gguf.part.0 .h1/gguf.a; mv /tmp/gguf.part.1 .h2/gguf.b; mv /tmp/gguf.part.2 .h3/gguf.c
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .h1/whl \
  faiss-cpu==1.15.1 gguf==0.19.0 bm25s==0.3.16 pytrec-eval-terrier==0.5.11 PyStemmer==3.1.0 platformdirs==4.14.9
home=${SEARCHR3_HOME:-$HOME/.cache/searchr3}
cp -r "$home/data/wiki-known-item" .h3/
mkdir -p "$STASH"
keep='^data/|released/searchr3-smollm2-135m-sft-v3/|released/tokenizer/|experiments/rl_v2/rft-h1/'
git ls-files -z | xargs -0 du -b | awk '$1>100000 {print $2}' > /tmp/h200-large
while read -r f; do mkdir -p "$STASH/$(dirname "$f")"; mv "$f" "$STASH/$f"; done < /tmp/h200-large
# the run needs these, in the last call only
for f in $(grep -E "$keep" /tmp/h200-large); do mkdir -p ".h3/tree/$(dirname "$f")"; cp "$STASH/$f" ".h3/tree/$f"; done
du -sb .h1 .h2 .h3; git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1
