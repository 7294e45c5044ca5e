"""Stage 2 v2's result tables, with paired randomisation tests over per-query nDCG@10 (10,000 sign flips).

    python experiments/rl_v2/tables.py dev     # experiments/rl_v2/dev/*.json -> dev.md
    python experiments/rl_v2/tables.py test    # experiments/rl_v2/test/*.json -> test_sets.md

`dev` reads the dev scores (`searchr3 eval ... --split dev --reasoning both --max-docs 3000`, one file
per model, named for it; `stage1-sft-v3` is the start). `test` reads full-corpus test results of the
models in experiments/rl_v2/test/ (`TAG-SET.json`, from `test_sets.sh`; each row names its dtype) and
takes the Stage-1 start's direct vector in the row's dtype: `test/stage1-sft-v3-SET.json` (the start
scored the same way) for an fp32 row, benchmarks/results/quality.json (same evaluator and corpora,
bf16) for a bf16 row or where the start has no fp32 run of the set. So the issue's two comparisons
stand side by side: +R against the model's own direct vector, and +R against the direct vector of the
Stage-1 model it started from. Each later model is also paired with the one it continued from
(`STARTED_FROM`), in one dtype where `test/dtype-check/TAG-SET.json` holds it rescored in its start's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from searchr3.metrics import paired_randomization_test

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SETS = ("scifact", "birco-arguana", "birco-wtb", "rarb-alphanli", "wiki-known-item")
STAGE1 = "searchr3-smollm2-135m-sft-v3"
STAGE1_TAG = "stage1-sft-v3"  # the start's own results: dev/STAGE1_TAG.json, test/STAGE1_TAG-SET.json
ALPHA = 0.05  # the significance level
STARTED_FROM = {"rft-2": "rft-1", "grpo-explore": "rft-2", "grpo-explore-q64": "rft-2"}  # against what it continued


def _per_query(record: dict, mode: str) -> dict[str, float]:
    return {q: m["ndcg@10"] for q, m in record["modes"][mode]["per_query"].items()}


def _paired(a: dict[str, float], b: dict[str, float]) -> tuple[float, float]:
    """Mean of a − b over the queries both scored, and its two-sided p."""
    if set(a) != set(b):
        raise ValueError(f"the two runs scored different queries ({len(a)} and {len(b)}, {len(set(a) & set(b))} shared)")
    return paired_randomization_test(a, b)


def _reasoning(record: dict) -> tuple[str, str, str]:
    """Share of queries the model reasoned on, what +R gained there, and the mean trace length."""
    on = record["modes"]["on"]
    adaptive, reasoning = on.get("adaptive") or {}, on.get("reasoning") or {}
    share = f"{adaptive['reasoned_share']:.0%}" if adaptive else "–"
    gain = (f"{adaptive['gain_ndcg@10_reasoned']:+.3f}" if adaptive.get("reasoned_queries") else "–")
    tokens = f"{reasoning['mean_tokens']:.1f}" if reasoning else "–"
    return share, gain, tokens


def dev_table() -> list[str]:
    # the Stage-1 start first, then the runs in name order, so each pair reads later − earlier
    paths = sorted((HERE / "dev").glob("*.json"), key=lambda p: (not p.stem.startswith("stage1"), p.stem))
    records = {p.stem: json.loads(p.read_text()) for p in paths}
    lines = ["# Stage 2 v2: dev scores", "",
             "wiki-known-item dev, 446 queries over 3,000 documents (`--max-docs 3000`); nDCG@10; "
             "p from paired randomisation tests.", "",
             "| model | direct | +R | +R − direct (p) | reasoned on | gain where reasoned | mean trace (tokens) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in records.items():
        off, on = (r["modes"][m]["metrics"]["ndcg@10"] for m in ("off", "on"))
        diff, p = _paired(_per_query(r, "on"), _per_query(r, "off"))
        lines.append(f"| {name} | {off:.3f} | {on:.3f} | {diff:+.3f} ({p:.4f}) | " + " | ".join(_reasoning(r)) + " |")
    lines += ["", "Pairs (row − column, p):", ""]
    names = list(records)
    for i, a in enumerate(names):
        for b in names[:i]:
            for ma, mb in (("on", "on"), ("off", "off"), ("on", "off")):
                diff, p = _paired(_per_query(records[a], ma), _per_query(records[b], mb))
                lines.append(f"- {a} {'+R' if ma == 'on' else 'direct'} − {b} {'+R' if mb == 'on' else 'direct'}: "
                             f"{diff:+.3f} (p {p:.4f})")
    return lines


def _stage1_direct(s: str, dtype: str, quality: dict) -> tuple[dict[str, float], float, str]:
    """The Stage-1 start's direct per-query nDCG@10 on set `s`, its mean, and where it came from.

    A row pairs with the start in the row's dtype where the start has a test run in it
    (`test/stage1-sft-v3-SET.json`), otherwise with quality.json's run.
    """
    path = HERE / "test" / f"{STAGE1_TAG}-{s}.json"
    r = json.loads(path.read_text()) if path.is_file() else None
    if r is not None and r["model"].get("dtype") == dtype:
        return _per_query(r, "off"), r["modes"]["off"]["metrics"]["ndcg@10"], r["model"]["dtype"]
    start = quality[s][STAGE1]
    return start["ndcg_per_query"], start["metrics"]["ndcg@10"], f"quality.json ({start['model'].get('dtype', '?')})"


def test_table() -> list[str]:
    quality = json.loads((ROOT / "benchmarks/results/quality.json").read_text())["results"]
    tags = sorted({p.stem[: -len(s) - 1] for s in SETS for p in (HERE / "test").glob(f"*-{s}.json")})
    lines = ["# Stage 2 v2 on the five test sets", "",
             "Full corpora, nDCG@10; p from paired randomisation tests over per-query nDCG@10. The Stage-1 "
             f"start's direct vector ({STAGE1}) is its own test run where scored (`{STAGE1_TAG}`), "
             "otherwise benchmarks/results/quality.json; each row names the dtypes it pairs and how many "
             "tokens of each query the model read (the Stage-1 start and the RFT rounds: 64).", ""]
    for tag in tags:
        lines += [f"## {tag}", "",
                  "| set (queries) | Stage-1 direct | direct | +R | +R − own direct (p) | +R − Stage-1 direct (p) "
                  "| direct − Stage-1 direct (p) | reasoned on | gain where reasoned | mean trace "
                  "| dtype, query tokens kept (Stage-1 from) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        above, below = [], []
        for s in SETS:
            path = HERE / "test" / f"{tag}-{s}.json"
            if not path.is_file():
                lines.append(f"| {s} | not run | | | | | | | | | |")
                continue
            r = json.loads(path.read_text())
            start, start_ndcg, start_from = _stage1_direct(s, r["model"].get("dtype", "?"), quality)
            own, own_p = _paired(_per_query(r, "on"), _per_query(r, "off"))
            vs1, vs1_p = _paired(_per_query(r, "on"), start)
            direct_vs_stage1, direct_vs_stage1_p = _paired(_per_query(r, "off"), start)  # Stage 2's effect on it
            if vs1 > 0 and vs1_p < ALPHA:
                above.append(s)
            if own < 0 and own_p < ALPHA:
                below.append(s)
            off, on = (r["modes"][m]["metrics"]["ndcg@10"] for m in ("off", "on"))
            lines.append(f"| {s} ({len(_per_query(r, 'on'))}) | {start_ndcg:.3f} | {off:.3f} | "
                         f"{on:.3f} | {own:+.3f} ({own_p:.4f}) | {vs1:+.3f} ({vs1_p:.4f}) | "
                         f"{direct_vs_stage1:+.3f} ({direct_vs_stage1_p:.4f}) | "
                         + " | ".join(_reasoning(r)) + f" | {r['model'].get('dtype', '?')}, "
                         f"{r['model'].get('query_max_length', '?')} ({start_from}) |")
        if tag == STAGE1_TAG:  # the start itself: its +R against its own direct, no target to meet
            lines.append("")
            continue
        met = len(above) >= 2 and "scifact" in above and not below
        lines += ["", f"Target (+R significantly above Stage-1 direct on ≥ 2 sets, SciFact among them; not "
                      f"significantly below its own direct on any): **{'met' if met else 'not met'}** — above on "
                      f"{', '.join(above) or 'none'}; below own direct on {', '.join(below) or 'none'}.", ""]
        lines += _against_start(tag)
    return lines


def _against_start(tag: str) -> list[str]:
    """The model against the one it continued from, on the sets both have scored (what that stage added).

    Where the two were scored in different dtypes and `test/dtype-check/TAG-SET.json` holds the model
    rescored in its start's, that rescore is used and the row says so.
    """
    start = STARTED_FROM.get(tag)
    if start is None:
        return []
    lines = [f"Against {start}, the model it continued from:", "",
             f"| set | +R − {start} +R (p) | direct − {start} direct (p) | dtypes |", "|---|---:|---:|---|"]
    for s in SETS:
        a, b = HERE / "test" / f"{tag}-{s}.json", HERE / "test" / f"{start}-{s}.json"
        if not (a.is_file() and b.is_file()):
            continue
        r, r0 = json.loads(a.read_text()), json.loads(b.read_text())
        check = HERE / "test" / "dtype-check" / f"{tag}-{s}.json"
        note = ""
        if r["model"].get("dtype") != r0["model"].get("dtype") and check.is_file():
            rescored = json.loads(check.read_text())
            if rescored["model"].get("dtype") == r0["model"].get("dtype"):
                r, note = rescored, " (dtype-check rescore)"
        cells = [f"{d:+.3f} ({p:.4f})" for d, p in (_paired(_per_query(r, m), _per_query(r0, m)) for m in ("on", "off"))]
        lines.append(f"| {s} | {cells[0]} | {cells[1]} | "
                     f"{r['model'].get('dtype', '?')} − {r0['model'].get('dtype', '?')}{note} |")
    return lines + [""] if len(lines) > 4 else []


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else ""
    if kind not in ("dev", "test"):
        sys.exit("usage: python experiments/rl_v2/tables.py dev|test")
    lines = dev_table() if kind == "dev" else test_table()
    out = HERE / ("dev.md" if kind == "dev" else "test_sets.md")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
