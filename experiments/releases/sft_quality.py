"""Stage-1 quality report: the released SFT adapter against the untrained base, BM25 and MiniLM,
and against its first release (`sft-v1`: the adapter after the first of its two runs, which the
RL adapter started from).

Reads compact `searchr3 eval` result files from experiments/records/sft/ (`sft-SET.json`,
`sft-v1-SET.json`, `base-SET.json`, `bm25-SET.json`, `minilm-SET.json`; see
release_sft.sh here) and writes
experiments/releases/results/sft_quality.{md,json,png}: nDCG@10 per set and system, and paired
randomisation tests (10,000 sign flips) for the comparisons the Stage-1 issue asks about, and
how the second run's change (SFT − SFT v1) varies with query length (quartiles of words).

    python experiments/releases/sft_quality.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from searchr3.data import load_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
from paired_tables import ndcg, plot, score, score_table, tests_table  # noqa: E402

ROOT = Path(__file__).resolve().parent / "results"
SOURCE = Path(__file__).resolve().parents[1] / "records" / "sft"
SETS = ["scifact", "birco-arguana", "birco-wtb", "rarb-alphanli", "wiki-known-item"]
SYSTEMS = [("bm25", "off", "BM25"), ("minilm", "off", "MiniLM-L6"), ("base", "off", "base"),
           ("base", "on", "base +R"), ("sft-v1", "off", "SFT v1"), ("sft-v1", "on", "SFT v1 +R"),
           ("sft", "off", "SFT"), ("sft", "on", "SFT +R")]
COMPARISONS = [(("sft", "off"), ("base", "off")), (("sft", "on"), ("base", "on")),
               (("sft", "on"), ("sft", "off")), (("sft", "off"), ("bm25", "off")),
               (("sft", "off"), ("minilm", "off")), (("sft", "off"), ("sft-v1", "off")),
               (("sft", "on"), ("sft-v1", "on"))]


def main() -> None:
    sets = [d for d in SETS if any((SOURCE / f"{s}-{d}.json").is_file() for s in ("sft", "sft-v1"))]
    rows, tests, records = score(SOURCE, sets, SYSTEMS, COMPARISONS)
    for row in rows:
        sft, base = records[row["data"]]["sft"] or records[row["data"]]["sft-v1"], records[row["data"]]["base"]
        row["max_length"] = sft["model"].get("max_length")
        row["base_max_length"] = (base or {}).get("model", {}).get("max_length")
        for system in ("base", "sft-v1", "sft"):
            on = (records[row["data"]][system] or {}).get("modes", {}).get("on", {})
            row[f"{system}_forced_share"] = on.get("forced_share")
            row[f"{system}_trace_words"] = on.get("trace_words_mean")
    names = [name for _, _, name in SYSTEMS]
    md = ["# Stage 1: released SFT adapter vs base and baselines (test splits, nDCG@10)", "", *score_table(rows, names)]
    md += ["", "+R: the query is first reasoned about by the model (greedy, 64-token budget). Documents "
           f"cut to {rows[0]['max_length'] if rows else '?'} text tokens for the SFT model; the base rows "
           f"were measured at {rows[0]['base_max_length'] if rows else '?'} (see README).", "",
           "Reasoning traces (mean words; share where the token had to be forced): "
           + "; ".join(f"{r['data']}: base {_trace(r, 'base')}, SFT v1 {_trace(r, 'sft-v1')}, SFT {_trace(r, 'sft')}"
                       for r in rows), "",
           "## Paired randomisation tests (per-query nDCG@10, 10,000 sign flips)", "", *tests_table(tests)]
    by_length = [length_split(d, records[d]) for d in sets]
    by_length = [x for x in by_length if x]
    if by_length:
        md += ["", "## SFT − SFT v1 by query length (quartiles of words, equal-length queries split by id; "
               "Spearman of words vs Δ)", "",
               "| data | Q1 | Q2 | Q3 | Q4 | Spearman ρ (p) |", "|---|---|---|---|---|---:|"]
        md += [f"| {x['data']} | " + " | ".join(f"{b['min_words']}–{b['max_words']} w: {b['delta']:+.3f} ({b['queries']})"
                                                for b in x["quartiles"])
               + f" | {x['spearman']:+.2f} ({x['p']:.2f}) |" for x in by_length]
    (ROOT / "sft_quality.md").write_text("\n".join(md) + "\n")
    (ROOT / "sft_quality.json").write_text(json.dumps({"ndcg@10": rows, "tests": tests, "by_query_length": by_length},
                                                      indent=1) + "\n")
    plot(rows, names, ROOT / "sft_quality.png")
    print("\n".join(md))


def length_split(data: str, records: dict) -> dict | None:
    """Per-query SFT − SFT v1 (direct) in quartiles of query length: is the second run's change
    about long queries (cut at 128 tokens, unlike every training query)?"""
    a, b = ndcg(records["sft"], "off"), ndcg(records["sft-v1"], "off")
    if not (a and b):
        return None
    queries = load_dataset(data, "test").queries
    qids = sorted(set(a) & set(b))
    words = np.array([len(queries[q].split()) for q in qids])
    delta = np.array([a[q] - b[q] for q in qids])
    order = np.argsort(words, kind="stable")
    quartiles = [{"min_words": int(words[part].min()), "max_words": int(words[part].max()), "queries": len(part),
                  "delta": float(delta[part].mean())} for part in np.array_split(order, 4)]
    rho, p = spearmanr(words, delta)
    return {"data": data, "quartiles": quartiles, "spearman": float(rho), "p": float(p)}


def _trace(row: dict, system: str) -> str:
    words, forced = row[f"{system}_trace_words"], row[f"{system}_forced_share"]
    return "–" if words is None else f"{words:.0f} words, {forced:.0%} forced"


if __name__ == "__main__":
    main()
