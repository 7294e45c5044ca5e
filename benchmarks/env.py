"""Cost and fidelity of the Stage-2 environment's local refresh vs a full re-encode per step;
writes benchmarks/results/env.{json,md}.

SYNTHETIC STAND-INS. Encoding a 50k-document corpus with the real model takes hours on this
CPU, so the scaling curve uses a stand-in policy whose "encoder" is a matrix product:
documents are clustered 576-d vectors, queries are noisy copies of one positive each, and
every training step perturbs both a shared linear map (all vectors turn together) and each
document separately (they move apart), with the per-step drift set by `sigma`. What the
environment does (which documents it re-encodes, how it ranks, how it rewards) is the real
code; only the encoder is simulated. Encode seconds for the real model are *estimated* from
the measured CPU throughput in benchmarks/results/throughput.json, and labelled as such.

    python benchmarks/env.py            # sizes 3,064 ... 100,000 (~5 min on 2 cores)
    python benchmarks/env.py --quick    # two small sizes, for a smoke check
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from searchr3.train.env import EnvConfig, RetrievalEnv

RESULTS = Path(__file__).resolve().parent / "results"
BUNDLED = {3064: "rarb-alphanli", 3117: "birco-arguana", 5183: "scifact", 10033: "wiki-known-item"}


class StandInPolicy:
    """Clustered document vectors under a drifting linear map (see the module docstring)."""

    def __init__(self, n: int, dim: int, sigma: float, seed: int = 0):
        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((max(n // 20, 1), dim)).astype(np.float32)
        # A small spread inside clusters and noisy queries make siblings compete (mean nDCG@10 about 0.6).
        self.base = centres[rng.integers(0, len(centres), n)] + 0.1 * rng.standard_normal((n, dim)).astype(np.float32)
        self.A = np.eye(dim, dtype=np.float32)
        self.sigma, self.rng, self.dim = sigma, rng, dim

    def __call__(self, rows) -> np.ndarray:
        x = self.base[np.asarray(rows)] @ self.A
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def queries(self, docs: np.ndarray, group: int, noise: float = 2.0) -> np.ndarray:
        """`group` rollout vectors per positive: one query each, plus a little rollout spread."""
        q = self.base[docs] + noise * self.rng.standard_normal((len(docs), self.dim)).astype(np.float32)
        q = np.repeat(q, group, axis=0) + 0.2 * self.rng.standard_normal((len(docs) * group, self.dim)).astype(
            np.float32)
        x = q @ self.A
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def move(self) -> None:
        d = self.dim
        self.A += (self.sigma * self.rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)
        self.base += (self.sigma * self.rng.standard_normal(self.base.shape)).astype(np.float32)


class StaleEnv(RetrievalEnv):
    """The control: the same environment whose cache is never refreshed between fidelity checks."""

    def refresh(self, rows) -> float:
        return 0.0


def run(n: int, sigma: float, steps: int, batch: int, group: int, config: EnvConfig, seed: int = 0,
        stale: bool = False) -> dict:
    policy = StandInPolicy(n, 576, sigma, seed)
    start = time.perf_counter()
    env = (StaleEnv if stale else RetrievalEnv)([str(i) for i in range(n)], policy, config)
    setup = time.perf_counter() - start
    rng = np.random.default_rng(seed + 1)
    encodings, overhead, fid, ndcg, step_drift = [], [], [], [], []
    for _ in range(steps):
        before = policy(np.arange(min(n, 2000)))
        policy.move()
        step_drift.append(float(1 - np.mean(np.sum(before * policy(np.arange(min(n, 2000))), axis=1))))
        docs = rng.choice(n, batch, replace=False)
        qrels = [{str(d): 1} for d in docs for _ in range(group)]
        result = env.step(qrels, policy.queries(docs, group))
        encodings.append(result.encodings)
        overhead.append(result.seconds.get("select", 0.0) + result.seconds["reward"])
        ndcg.append(float(result.ndcg.mean()))
        if result.fidelity:
            fid.append(result.fidelity)
    return {"docs": n, "sigma": sigma, "steps": steps, "setup_seconds": round(setup, 2),
            "policy_drift_per_step": float(np.mean(step_drift)),
            "encodings_per_step": float(np.mean(encodings)), "encodings_max": int(max(encodings)),
            "env_overhead_seconds_per_step": float(np.mean(overhead)), "mean_ndcg": float(np.mean(ndcg)),
            "fidelity": fid,
            "spearman_min": min(f["spearman"] for f in fid) if fid else None,
            "spearman_mean": float(np.mean([f["spearman"] for f in fid])) if fid else None,
            "mean_abs_diff": float(np.mean([f["mean_abs_diff"] for f in fid])) if fid else None,
            "corpus_drift_at_check": float(np.mean([f["corpus_drift"] for f in fid])) if fid else None}


def markdown(result: dict) -> str:
    c, dps = result["config"], result["model_docs_per_s"]
    lines = ["# Stage-2 environment: local refresh vs full re-encode (SYNTHETIC stand-in policy)", "",
             f"{result['batch']} queries × {result['group']} rollouts a step; local region = positives + each "
             f"rollout's top-{c['top_k']} + {c['neighbours']} graph neighbours each; reward nDCG@{c['reward_k']}; "
             f"a full re-encode every R={c['full_every']} steps is amortised into the local column. Fidelity: "
             f"every {c['fidelity_every']} steps, rewards on the cache vs after an exact re-encode (Spearman, mean "
             "|difference|). Vectors are 576-d like SmolLM2's; the encoder is simulated (see benchmarks/env.py). "
             f"Encode time is estimated at the real model's measured CPU speed, {dps:.1f} docs/s.", "",
             "Control: the same run with a cache that is never refreshed between checks (its Spearman shows the "
             "drift is large enough to matter).", "",
             "| corpus | stand-in for | σ | drift/step | full: enc/step | local: enc/step (+N/R) | fewer × | "
             "Spearman min / mean | mean abs diff | control: Spearman mean | est. encode s/step full → local |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        amort = r["encodings_per_step"] + r["docs"] / c["full_every"]
        lines.append(
            f"| {r['docs']:,} | {BUNDLED.get(r['docs'], 'synthetic')} | {r['sigma']} | {r['policy_drift_per_step']:.1e} "
            f"| {r['docs']:,} | {r['encodings_per_step']:.0f} ({amort:.0f}) | {r['docs'] / amort:.1f} "
            f"| {r['spearman_min']:.3f} / {r['spearman_mean']:.3f} | {r['mean_abs_diff']:.4f} "
            f"| {r['stale_cache']['spearman_mean']:.3f} | {r['docs'] / dps:,.0f} → {amort / dps:,.0f} |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="*", default=[3064, 5183, 10033, 20000, 50000, 100000])
    p.add_argument("--sigmas", type=float, nargs="*", default=[0.01, 0.03, 0.1])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=8, help="queries per step")
    p.add_argument("--group", type=int, default=4, help="rollouts per query (GRPO's G)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--output", default=str(RESULTS / "env"))
    args = p.parse_args()
    if args.quick:
        args.sizes, args.sigmas, args.steps = [3064, 10033], [0.03], 10
    config = EnvConfig(top_k=20, neighbours=4, reward_k=10, full_every=100, drift_bound=1.0, fidelity_every=5)
    throughput = json.loads((RESULTS / "throughput.json").read_text())
    dps = throughput["documents"]["fp32/b8"]["docs_per_s"]
    rows = []
    for n in args.sizes:
        for sigma in args.sigmas:
            row = run(n, sigma, args.steps, args.batch, args.group, config)
            control = run(n, sigma, args.steps, args.batch, args.group, config, stale=True)
            row["stale_cache"] = {k: control[k] for k in ("spearman_min", "spearman_mean", "mean_abs_diff")}
            print(json.dumps({k: v for k, v in row.items() if k != "fidelity"}), flush=True)
            rows.append(row)
    result = {"synthetic": True, "config": config.__dict__, "batch": args.batch, "group": args.group,
              "model_docs_per_s": dps, "rows": rows}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
