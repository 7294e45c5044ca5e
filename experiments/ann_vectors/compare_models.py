"""Does it matter whose vectors the ANN benchmark expands? Two models' document vectors of the
same corpora: shape statistics, and HNSW/IVF recall on the same expansion.

`benchmarks/ann.py` was run (2026-12-05) on the vectors of the Stage-2 v2 candidate
(experiments/rl_v2/grpo-explore, fp32), which its test-set evaluation had just cached, rather
than on the default model's: encoding the corpora again would have cost about an hour on two
cores. This script checks that choice on the two smallest bundled corpora: for each model, the
real vectors' statistics (`ann.spread`), then the same expansion (`ann.expand`) to `--size`
vectors searched by the same test queries through the service's HNSW graph and IVF-Flat.

    python experiments/ann_vectors/compare_models.py
Writes experiments/ann_vectors/compare_models.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "benchmarks"))
import ann  # noqa: E402  (the benchmark's own functions, so both runs measure alike)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs=2, default=["searchr3-smollm2-135m-sft", "experiments/rl_v2/grpo-explore"])
    parser.add_argument("--dtypes", nargs=2, default=["auto", "fp32"])
    parser.add_argument("--sets", nargs="+", default=["rarb-alphanli", "birco-wtb"])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    from searchr3.index import EF_CONSTRUCTION, HNSW_M

    report = {"sets": args.sets, "size": args.size, "models": []}
    for name, dtype in zip(args.models, args.dtypes):
        docs, queries, info = ann.real_vectors(name, tuple(args.sets), dtype)
        rng = np.random.default_rng(0)
        queries = queries[rng.choice(len(queries), min(args.queries, len(queries)), replace=False)]
        base, _ = ann.expand(docs, args.size, seed=0)
        rows = ann.bench_size(base, queries, [(HNSW_M, EF_CONSTRUCTION)], ivf=True)
        report["models"].append({**info, "spread_real": ann.spread(docs, rng, 20_000), "rows": rows})
        write(report)


def write(report: dict) -> None:
    (HERE / "compare_models.json").write_text(json.dumps(report, indent=2) + "\n")
    models = report["models"]
    fmt = lambda x: " / ".join(f"{y:.3f}" for y in x) if isinstance(x, list) else f"{x:.3f}"  # noqa: E731
    lines = ["# Whose vectors the ANN benchmark expands: two models compared", "",
             f"Corpora: {', '.join(report['sets'])}; real document vectors expanded to {report['size']:,} as "
             "`benchmarks/ann.py` does (same seed), searched by the same sample of real test queries.", "",
             "| statistic | " + " | ".join(f"{m['model']} ({m['dtype']})" for m in models) + " |",
             "|---|" + "---:|" * len(models)]
    for key in ("cosine_to_mean_p50", "pair_cosine_p5_p50_p95", "nn_cosine_p5_p50_p95", "top10_pc_variance_share"):
        lines.append(f"| {key} | " + " | ".join(fmt(m["spread_real"][key]) for m in models) + " |")
    lines += ["", "| index | setting | " + " | ".join(f"{m['model']}: recall@10, p50 ms" for m in models) + " |",
              "|---|---|" + "---|" * len(models)]
    keys = ("M", "ef_construction", "efSearch", "nlist", "pq_bytes", "nprobe")
    settings = [(r["index"], tuple((k, r[k]) for k in keys if k in r)) for r in models[0]["rows"]]
    for index, setting in settings:
        cells = []
        for m in models:
            row = next((r for r in m["rows"] if r["index"] == index
                        and tuple((k, r[k]) for k in keys if k in r) == setting), None)
            cells.append(f"{row['recall@10']:.3f}, {row['p50_ms']:.2f}" if row else "–")
        label = ", ".join(f"{k} {v}" for k, v in setting) or "–"
        lines.append(f"| {index} | {label} | " + " | ".join(cells) + " |")
    (HERE / "compare_models.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
