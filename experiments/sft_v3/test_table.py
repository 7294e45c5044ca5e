"""sft-v3 against the other systems on the five test sets, with paired tests (from benchmarks/results/quality.json).

    python experiments/sft_v3/test_table.py     # writes experiments/sft_v3/test_sets.md
"""

from pathlib import Path

import json

from searchr3.metrics import paired_randomization_test

ROOT = Path(__file__).resolve().parents[2]
SETS = ("scifact", "birco-arguana", "birco-wtb", "rarb-alphanli", "wiki-known-item")
V3 = "searchr3-smollm2-135m-sft-v3"
OTHERS = (("sft-v2", "searchr3-smollm2-135m-sft-v2"), ("sft-v1", "searchr3-smollm2-135m-sft-v1"),
          ("rl-v1", "searchr3-smollm2-135m-rl-v1"), ("BM25", "bm25"), ("MiniLM", "minilm"))


def main() -> None:
    results = json.loads((ROOT / "benchmarks/results/quality.json").read_text())["results"]
    lines = ["# sft-v3 on the five test sets: paired differences", "",
             "nDCG@10 of sft-v3 minus each other system, per set (paired randomisation test over per-query "
             "nDCG@10, 10,000 sign flips; p in brackets), from `benchmarks/results/quality.json`.", "",
             "| set (queries) | sft-v3 nDCG@10 | R@100 | " + " | ".join(f"− {n}" for n, _ in OTHERS) + " |",
             "|---|---:|---:|" + "---:|" * len(OTHERS)]
    means = {n: [] for n, _ in OTHERS}
    v3_means, r100 = [], []
    for s in SETS:
        row = results[s]
        v3 = row[V3]
        cells = []
        for name, key in OTHERS:
            diff, p = paired_randomization_test(v3["ndcg_per_query"], row[key]["ndcg_per_query"])
            means[name].append(row[key]["metrics"]["ndcg@10"])
            cells.append(f"{diff:+.3f} ({p:.4f})")
        v3_means.append(v3["metrics"]["ndcg@10"])
        r100.append(v3["metrics"]["recall@100"])
        lines.append(f"| {s} ({len(v3['ndcg_per_query'])}) | {v3_means[-1]:.3f} | {r100[-1]:.3f} | " + " | ".join(cells) + " |")
    mean = sum(v3_means) / len(SETS)
    lines.append(f"| **mean of the five** | **{mean:.3f}** | {sum(r100) / len(SETS):.3f} | "
                 + " | ".join(f"{mean - sum(v) / len(SETS):+.3f}" for v in means.values()) + " |")
    out = ROOT / "experiments/sft_v3/test_sets.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
