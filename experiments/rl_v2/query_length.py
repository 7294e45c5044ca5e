"""Branched GRPO with queries cut at 64 tokens, as its start (RFT round 2) and the Stage-1 model read them.

The GRPO trainer used to drop the init model's `query_max_length` (64) and read queries at `max_length`
(256), so `experiments/rl_v2/grpo-explore` saved no query length and its test scores read long queries
(BIRCO-WTB's descriptions) in full while round 2's and Stage-1's cut them. This script makes the
comparison like for like without re-encoding any corpus:

    python experiments/rl_v2/query_length.py            # -> runs/grpo-explore-q64 (a view of the adapter)
    DTYPE=fp32 bash experiments/rl_v2/test_sets.sh runs/grpo-explore-q64 grpo-explore-q64 \
        scifact birco-arguana birco-wtb rarb-alphanli
    DTYPE=bf16 bash experiments/rl_v2/test_sets.sh runs/grpo-explore-q64 grpo-explore-q64 wiki-known-item
    DTYPE=bf16 OUT=experiments/rl_v2/test/dtype-check bash experiments/rl_v2/test_sets.sh \
        runs/grpo-explore-q64 grpo-explore-q64 birco-wtb      # paired with round 2 in one dtype

It writes `runs/grpo-explore-q64`: the same adapter files (linked) with `query_max_length: 64` in its
settings. Document prompts do not depend on the query length, so for every corpus whose vectors the
vector cache holds for the 256-token variant it stores the same vectors under the 64-token variant's
key, after checking on a few documents that a fresh encode matches them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from searchr3 import SearchR3, document_text
from searchr3.cache import VectorCache
from searchr3.data import load_dataset

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "experiments/rl_v2/grpo-explore"
TARGET = ROOT / "runs/grpo-explore-q64"
QUERY_MAX_LENGTH = 64  # what RFT round 2 and the Stage-1 start saved
# the dtypes branched GRPO's test runs used (their vectors are cached), and WTB's bf16 rescore (test/dtype-check/)
SETS = [("scifact", "fp32"), ("birco-arguana", "fp32"), ("birco-wtb", "fp32"), ("rarb-alphanli", "fp32"),
        ("wiki-known-item", "bf16"), ("birco-wtb", "bf16")]
CHECK_DOCS = 8


def build_view() -> None:
    TARGET.mkdir(parents=True, exist_ok=True)
    for f in SOURCE.iterdir():
        if f.is_file() and f.name != "searchr3.json":
            link = TARGET / f.name
            link.unlink(missing_ok=True)
            link.symlink_to(f)
    meta = json.loads((SOURCE / "searchr3.json").read_text())
    meta["config"]["query_max_length"] = QUERY_MAX_LENGTH
    (TARGET / "searchr3.json").write_text(json.dumps(meta, indent=2) + "\n")


def seed_cache() -> None:
    cache = VectorCache()
    models = {}  # per dtype: the 256-token and the 64-token variant, loaded once
    for name, dtype in SETS:
        if dtype not in models:
            models[dtype] = tuple(SearchR3.from_pretrained(m, dtype=dtype, device="cpu") for m in (SOURCE, TARGET))
        long_q, short_q = models[dtype]
        assert short_q.config.query_max_length == QUERY_MAX_LENGTH and long_q.config.query_max_length is None
        texts = [document_text(d.title, d.text) for d in load_dataset(name, "test").corpus]
        src, dst = cache.path(long_q, texts), cache.path(short_q, texts)
        if not src.is_file():
            print(f"{name} ({dtype}): no cached vectors of the 256-token variant; test_sets.sh will encode it")
            continue
        cached = np.load(src)
        fresh = short_q.embed_documents(texts[:CHECK_DOCS])
        cos = float(np.min(np.sum(fresh * cached[:CHECK_DOCS], axis=1)))
        if cos < 0.999:
            raise SystemExit(f"{name}: a fresh encode differs from the cached vectors (min cosine {cos:.5f})")
        shutil.copyfile(src, dst)
        print(f"{name} ({dtype}): {len(texts)} cached document vectors reused (fresh encode of {CHECK_DOCS}: "
              f"min cosine {cos:.6f})")


if __name__ == "__main__":
    build_view()
    seed_cache()
