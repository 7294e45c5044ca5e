"""Stage-2 quality report: does reasoning help after RL? The released RL adapter against the
SFT adapter it started from (`sft`: the first release of `searchr3-smollm2-135m-sft`, "SFT v1"), each with and without reasoning, plus BM25 and MiniLM, and the
GRPO-alone ablation where it was run, the Stage-1 variant trained on the model's own
reasoning traces (`sft-traces`, with KL to the base on them) with the RL run started from it
(`rl-traces`), and the released run continued from 24 to 48 and 96 steps (`rl-long48`, `rl-long96`)
and from 18 to 48 steps without the KL term (`rl-beta0-48`).

Reads compact `searchr3 eval` result files from experiments/records/rl/ (`SYSTEM-SET.json`,
SYSTEM in sft, rl, rl-noaux, sft-traces, rl-traces, rl-long48, rl-long96, rl-beta0-48, bm25, minilm; see release_rl.sh here) and writes
experiments/releases/results/rl_quality.{md,json,png} with paired randomisation tests (10,000 sign flips).
SET may name a sampled corpus (`scifact-d600`: the test queries' judged abstracts plus random
others, 600 in all): scores on it are higher than on the full corpus and compare only with
each other.

    python experiments/releases/rl_quality.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
from paired_tables import (forced_split, forced_split_table, plot, score, score_table,  # noqa: E402
                           tests_table, trace_summary)

ROOT = Path(__file__).resolve().parent / "results"
SOURCE = Path(__file__).resolve().parents[1] / "records" / "rl"
SYSTEMS = [("bm25", "off", "BM25"), ("minilm", "off", "MiniLM-L6"), ("sft", "off", "SFT v1"), ("sft", "on", "SFT v1 +R"),
           ("rl", "off", "RL"), ("rl", "on", "RL +R"), ("rl-noaux", "off", "RL (GRPO alone)"),
           ("rl-noaux", "on", "RL (GRPO alone) +R"), ("sft-traces", "off", "SFT on traces"),
           ("sft-traces", "on", "SFT on traces +R"), ("rl-traces", "off", "RL from it"), ("rl-traces", "on", "RL from it +R"),
           ("rl-long48", "off", "RL 48 steps"), ("rl-long48", "on", "RL 48 steps +R"),
           ("rl-long96", "off", "RL 96 steps"), ("rl-long96", "on", "RL 96 steps +R"),
           ("rl-beta0-48", "off", "RL 48 steps, β 0"), ("rl-beta0-48", "on", "RL 48 steps, β 0 +R")]
# file prefixes that are not the released adapters (rl-longN: the released run continued to step N;
# rl-beta0-48: the same from step 18 to 48 without the KL term)
VARIANTS = ("rl-noaux", "sft-traces", "rl-traces", "rl-long48", "rl-long96", "rl-beta0-48")
COMPARISONS = [(("rl", "on"), ("rl", "off")), (("rl", "on"), ("sft", "off")), (("rl", "on"), ("sft", "on")),
               (("rl", "off"), ("sft", "off")), (("sft", "on"), ("sft", "off")),
               (("rl", "on"), ("rl-noaux", "on")), (("rl-noaux", "on"), ("rl-noaux", "off")),
               (("rl", "on"), ("bm25", "off")), (("rl", "on"), ("minilm", "off")),
               (("sft-traces", "on"), ("sft-traces", "off")), (("sft-traces", "on"), ("sft", "on")),
               (("sft-traces", "off"), ("sft", "off")), (("rl-traces", "on"), ("rl-traces", "off")),
               (("rl-traces", "on"), ("sft-traces", "off")), (("rl-traces", "on"), ("sft-traces", "on")),
               (("rl-traces", "on"), ("sft", "off")), (("rl-traces", "on"), ("rl", "on")),
               *[pair for n in ("rl-long48", "rl-long96") for pair in (
                   ((n, "on"), (n, "off")), ((n, "on"), ("sft", "off")), ((n, "on"), ("sft", "on")),
                   ((n, "on"), ("rl", "on")), ((n, "off"), ("sft", "off")))],
               (("rl-beta0-48", "on"), ("rl-beta0-48", "off")), (("rl-beta0-48", "on"), ("rl-long48", "on")),
               (("rl-beta0-48", "off"), ("rl-long48", "off")), (("rl-beta0-48", "on"), ("sft", "off"))]


def main() -> None:
    sets = sorted(p.name[len("rl-"):-len(".json")] for p in SOURCE.glob("rl-*.json")
                  if not p.name.startswith(tuple(v + "-" for v in VARIANTS)))
    rows, tests, records = score(SOURCE, sets, SYSTEMS, COMPARISONS)
    names = [n for s, m, n in SYSTEMS if any(r[n] is not None for r in rows)]
    for row in rows:
        for system in ("sft", "rl", *VARIANTS):
            summary = trace_summary(records[row["data"]][system])
            if summary:
                row[f"{system}_trace"] = summary
        rl = records[row["data"]]["rl"]
        row["docs"], row["queries"] = rl["data"]["docs"], rl["data"]["queries_evaluated"]
    md = ["# Stage 2: RL adapter vs the SFT adapter it started from (test splits, nDCG@10)", "",
          *score_table(rows, names), "",
          "+R: the query is first reasoned about (greedy; the RL model keeps its minimum of "
          "reasoning tokens). Corpus sizes: " + "; ".join(f"{r['data']}: {r['docs']:,} documents, "
                                                          f"{r['queries']} queries" for r in rows), "",
          "Reasoning traces (mean words; share where the token had to be forced; share where one word "
          "is over 30% of a trace of 4+ words): "
          + "; ".join(f"{r['data']} {s}: {r[s + '_trace']}" for r in rows for s in ("sft", "rl", *VARIANTS)
                      if s + "_trace" in r), "",
          "## Paired randomisation tests (per-query nDCG@10, 10,000 sign flips)", "", *tests_table(tests)]
    splits = [split for row in rows for split in forced_split(row["data"], records[row["data"]], ("rl", *VARIANTS))]
    if splits:
        md += ["", "## Where reasoning costs: +R − direct per query, by whether the token came on its own", "",
               *forced_split_table(splits)]
    (ROOT / "rl_quality.md").write_text("\n".join(md) + "\n")
    (ROOT / "rl_quality.json").write_text(json.dumps({"ndcg@10": rows, "tests": tests, "forced_split": splits},
                                                     indent=1) + "\n")
    plot(rows, names, ROOT / "rl_quality.png")
    print("\n".join(md))


if __name__ == "__main__":
    main()
