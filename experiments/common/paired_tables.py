"""Shared by the quality reports: per-set nDCG@10 tables, paired significance tests and bar charts
from compact `searchr3 eval` result files named `SYSTEM-SET.json` in one folder."""

from __future__ import annotations

import json
from pathlib import Path

from searchr3.metrics import paired_randomization_test

System = tuple[str, str, str]  # (file prefix, reasoning mode "off"/"on", column name)


def load(folder: Path, system: str, data: str) -> dict | None:
    path = folder / f"{system}-{data}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def ndcg(record: dict | None, mode: str) -> dict[str, float] | None:
    if record is None or mode not in record["modes"]:
        return None
    return {q: s["ndcg@10"] for q, s in record["modes"][mode]["per_query"].items()}


def score(folder: Path, sets: list[str], systems: list[System],
          comparisons: list[tuple[tuple[str, str], tuple[str, str]]]) -> tuple[list[dict], list[dict], dict]:
    """Mean nDCG@10 per set and system, paired tests for each comparison, and the records read."""
    names = {(s, m): n for s, m, n in systems}
    rows, tests, records = [], [], {}
    for data in sets:
        records[data] = {s: load(folder, s, data) for s in dict.fromkeys(s for s, _, _ in systems)}
        row = {"data": data}
        for system, mode, name in systems:
            scores = ndcg(records[data][system], mode)
            row[name] = sum(scores.values()) / len(scores) if scores else None
        rows.append(row)
        for a, b in comparisons:
            sa, sb = ndcg(records[data][a[0]], a[1]), ndcg(records[data][b[0]], b[1])
            if sa and sb:
                diff, p = paired_randomization_test(sa, sb)
                tests.append({"data": data, "a": names[a], "b": names[b], "delta": diff, "p": p,
                              "queries": len(set(sa) & set(sb))})
    return rows, tests, records


def score_table(rows: list[dict], names: list[str]) -> list[str]:
    """Markdown rows, the best score of each set in bold."""
    md = ["| data | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for row in rows:
        best = max(v for k, v in row.items() if k in names and v is not None)
        cells = [("**%.3f**" if row[n] == best else "%.3f") % row[n] if row[n] is not None else "–" for n in names]
        md.append(f"| {row['data']} | " + " | ".join(cells) + " |")
    return md


def tests_table(tests: list[dict]) -> list[str]:
    md = ["| data | A | B | Δ (A − B) | p | queries |", "|---|---|---|---:|---:|---:|"]
    return md + [f"| {t['data']} | {t['a']} | {t['b']} | {t['delta']:+.3f} | {t['p']:.4f} | {t['queries']} |"
                 for t in tests]


def trace_summary(record: dict | None) -> str | None:
    """Mean words of the reasoning traces, the share where the token was forced, and the share that
    loops (one word over 30% of a trace of 4+ words), where the record has them."""
    on = (record or {}).get("modes", {}).get("on", {})
    if "trace_words_mean" not in on:
        return None
    text = f"{on['trace_words_mean']:.0f} words, {on['forced_share']:.0%} forced"
    if "trace_top_word_share" in on:
        loops = [s > 0.3 and on["trace_words"][q] >= 4 for q, s in on["trace_top_word_share"].items()]
        text += f", {sum(loops) / len(loops):.0%} looping"
    return text


def forced_split(data: str, records: dict, systems: tuple[str, ...]) -> list[dict]:
    """Per-query effect of reasoning, split by whether the model emitted the token itself or the
    budget ran out and it was appended (the compact files keep each query's `trace_forced`)."""
    out = []
    for system in systems:
        rec = records.get(system)
        on, off = ((rec or {}).get("modes", {}).get(m, {}) for m in ("on", "off"))
        if "trace_forced" not in on or "per_query" not in off:
            continue
        for forced, token in ((True, "forced at the budget"), (False, "emitted by the model")):
            qids = [q for q, f in on["trace_forced"].items() if f == forced and q in off["per_query"]]
            if not qids:
                continue
            a = {q: on["per_query"][q]["ndcg@10"] for q in qids}
            b = {q: off["per_query"][q]["ndcg@10"] for q in qids}
            delta, p = paired_randomization_test(a, b)
            out.append({"data": data, "system": system, "token": token, "queries": len(qids),
                        "direct": sum(b.values()) / len(b), "reasoning": sum(a.values()) / len(a),
                        "delta": delta, "p": p})
    return out


def forced_split_table(splits: list[dict]) -> list[str]:
    md = ["| data | model | token | queries | direct | +R | Δ | p |", "|---|---|---|---:|---:|---:|---:|---:|"]
    return md + [f"| {x['data']} | {x['system']} | {x['token']} | {x['queries']} | {x['direct']:.3f} "
                 f"| {x['reasoning']:.3f} | {x['delta']:+.3f} | {x['p']:.4f} |" for x in splits]


def plot(rows: list[dict], names: list[str], path: Path, ylabel: str = "nDCG@10 (test)") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.8 / len(names)
    colours = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")  # the default cycle repeats after 10
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(rows)), 4))
    for n, name in enumerate(names):
        xs = [i + n * width for i, r in enumerate(rows) if r[name] is not None]
        ax.bar(xs, [r[name] for r in rows if r[name] is not None], width, label=name, color=colours(n))
    ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(rows))], [r["data"] for r in rows])
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.2)  # room for the legend above the bars
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.legend(fontsize=8, ncol=3, loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
