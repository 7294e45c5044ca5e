"""Stage-1 quality report: the released SFT adapter against the untrained base, BM25 and MiniLM.

Reads compact `searchr3 eval` result files from benchmarks/results/sft/ (`sft-SET.json`,
`base-SET.json`, `bm25-SET.json`, `minilm-SET.json`; see scripts/release_sft.sh) and writes
benchmarks/results/sft_quality.{md,json,png}: nDCG@10 per set and system, and paired
randomisation tests (10,000 sign flips) for the comparisons the Stage-1 issue asks about.

    python benchmarks/sft_quality.py
"""

from __future__ import annotations

import json
from pathlib import Path

from searchr3.metrics import paired_randomization_test

ROOT = Path(__file__).resolve().parent / "results"
SOURCE = ROOT / "sft"
SETS = ["scifact", "birco-arguana", "birco-wtb", "rarb-alphanli", "wiki-known-item"]
SYSTEMS = [("bm25", "off", "BM25"), ("minilm", "off", "MiniLM-L6"), ("base", "off", "base"),
           ("base", "on", "base +R"), ("sft", "off", "SFT"), ("sft", "on", "SFT +R")]
COMPARISONS = [(("sft", "off"), ("base", "off")), (("sft", "on"), ("base", "on")),
               (("sft", "on"), ("sft", "off")), (("sft", "off"), ("bm25", "off")),
               (("sft", "off"), ("minilm", "off"))]


def load(system: str, data: str) -> dict | None:
    path = SOURCE / f"{system}-{data}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def ndcg(record: dict | None, mode: str) -> dict[str, float] | None:
    if record is None or mode not in record["modes"]:
        return None
    return {q: s["ndcg@10"] for q, s in record["modes"][mode]["per_query"].items()}


def label(key: tuple[str, str]) -> str:
    return next(name for s, m, name in SYSTEMS if (s, m) == key)


def main() -> None:
    sets = [d for d in SETS if load("sft", d) is not None]
    rows, tests = [], []
    for data in sets:
        records = {s: load(s, data) for s in {s for s, _, _ in SYSTEMS}}
        row = {"data": data}
        for system, mode, name in SYSTEMS:
            scores = ndcg(records[system], mode)
            row[name] = sum(scores.values()) / len(scores) if scores else None
        sft = records["sft"]
        row["max_length"] = sft["model"].get("max_length")
        row["base_max_length"] = (records["base"] or {}).get("model", {}).get("max_length")
        for system in ("base", "sft"):
            on = (records[system] or {}).get("modes", {}).get("on", {})
            row[f"{system}_forced_share"] = on.get("forced_share")
            row[f"{system}_trace_words"] = on.get("trace_words_mean")
        rows.append(row)
        for a, b in COMPARISONS:
            sa, sb = ndcg(records[a[0]], a[1]), ndcg(records[b[0]], b[1])
            if sa and sb:
                diff, p = paired_randomization_test(sa, sb)
                tests.append({"data": data, "a": label(a), "b": label(b), "delta": diff, "p": p,
                              "queries": len(set(sa) & set(sb))})
    names = [name for _, _, name in SYSTEMS]
    md = ["# Stage 1: released SFT adapter vs base and baselines (test splits, nDCG@10)", "",
          "| data | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for row in rows:
        best = max(v for k, v in row.items() if k in names and v is not None)
        cells = [("**%.3f**" if row[n] == best else "%.3f") % row[n] if row[n] is not None else "–" for n in names]
        md.append(f"| {row['data']} | " + " | ".join(cells) + " |")
    md += ["", "+R: the query is first reasoned about by the model (greedy, 64-token budget). Documents "
           f"cut to {rows[0]['max_length'] if rows else '?'} text tokens for the SFT model; the base rows "
           f"were measured at {rows[0]['base_max_length'] if rows else '?'} (see README).", "",
           "Reasoning traces (mean words; share where the token had to be forced): "
           + "; ".join(f"{r['data']}: base {_trace(r, 'base')}, SFT {_trace(r, 'sft')}" for r in rows), "",
           "## Paired randomisation tests (per-query nDCG@10, 10,000 sign flips)", "",
           "| data | A | B | Δ (A − B) | p | queries |", "|---|---|---|---:|---:|---:|"]
    md += [f"| {t['data']} | {t['a']} | {t['b']} | {t['delta']:+.3f} | {t['p']:.4f} | {t['queries']} |"
           for t in tests]
    (ROOT / "sft_quality.md").write_text("\n".join(md) + "\n")
    (ROOT / "sft_quality.json").write_text(json.dumps({"ndcg@10": rows, "tests": tests}, indent=1) + "\n")
    plot(rows, names, ROOT / "sft_quality.png")
    print("\n".join(md))


def _trace(row: dict, system: str) -> str:
    words, forced = row[f"{system}_trace_words"], row[f"{system}_forced_share"]
    return "–" if words is None else f"{words:.0f} words, {forced:.0%} forced"


def plot(rows: list[dict], names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(rows)), 4))
    for n, name in enumerate(names):
        xs = [i + n * width for i, r in enumerate(rows) if r[name] is not None]
        ax.bar(xs, [r[name] for r in rows if r[name] is not None], width, label=name)
    ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(rows))], [r["data"] for r in rows])
    ax.set_ylabel("nDCG@10 (test)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, ncol=3)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
