"""Is there anything for GRPO to find? Sampled reasoning rollouts against the direct vector, on test.

GRPO can only move a policy towards rollouts it already samples. So, for one model, sample G
reasoning rollouts per test query exactly as Stage 2 does (temperature, top-p, the model's own
budget and minimum of reasoning tokens), rank the corpus with each rollout's vector and score it
with the reward function itself (`train.reward.ndcg_rewards`, nDCG@10). Then compare, per query:

- direct: the vector without reasoning (what reasoning has to beat);
- greedy +R: what `searchr3 eval --reasoning on` scores;
- sampled mean: the expected reward of the current policy;
- best of G: the ceiling a policy concentrated on its best current sample would reach. Part of
  it is selection on noise (the max of G draws beats their mean even when traces carry no
  information), so it bounds the headroom from above;
- selection gain, and its noise control: best of G minus the mean of G, for the rollouts and
  for G copies of the direct vector moved in random directions by the rollouts' own spread
  (each copy pair's cosine equals the rollouts' mean pairwise cosine). If the rollouts' gain is
  no larger than the control's, their variation ranks documents no better than random
  variation of the same size, and the reward teaches the policy about noise, not reasoning.
  The control's noise is isotropic, while the rollouts' variation may lie along directions that
  matter for ranking, so the comparison is indicative, not exact;
- tied groups: the share of queries whose G rollouts all score the same nDCG@10, where the
  ranking reward teaches nothing (with the format penalty added, as Stage 2 rewards, fewer tie:
  then only whether the token was forced separates the rollouts);
- emitted vs forced: in groups holding both, is a rollout that ended its trace itself better
  than one whose token was appended at the budget (the direction the format penalty pushes)?
  Descriptive: trace length and the query's difficulty differ between the two.

    python experiments/rl_headroom/rl_headroom.py --model searchr3-smollm2-135m-rl --label rl
    python experiments/rl_headroom/rl_headroom.py --model runs/release --label sft-v1 --min-reasoning-tokens 8 --reasoning-tokens 32
    python experiments/rl_headroom/rl_headroom.py --report     # rewrite the Markdown from the JSON

Each run adds (or replaces) its label in experiments/rl_headroom/results/rl_headroom.json and rewrites
rl_headroom.md. Corpus vectors and greedy traces come from the evaluation caches.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from searchr3 import SearchR3
from searchr3.cache import ReasoningCache, VectorCache
from searchr3.data import load_dataset
from searchr3.evaluate import RetrievalEvaluator
from searchr3.metrics import paired_randomization_test
from searchr3.prompts import document_text
from searchr3.train.reward import ndcg_rewards

ROOT = Path(__file__).resolve().parent / "results"
K = 10  # the reward's and the tables' cut-off


def rank(query_vectors: np.ndarray, doc_vectors: np.ndarray, doc_ids: list[str], depth: int) -> list[list[str]]:
    """Doc ids best first for each query vector, ties broken by doc id as the evaluator breaks them."""
    scores = SearchR3.similarity(query_vectors, doc_vectors).numpy()
    ids = np.array(doc_ids)
    return [[doc_ids[j] for j in np.lexsort((ids, -row))[:depth]] for row in scores]


def noise_control(direct: np.ndarray, rollouts: np.ndarray, seed: int) -> np.ndarray:
    """(N, G, H) unit vectors: G copies of each query's direct vector, each moved in a random
    direction orthogonal to it, so far that two copies have the rollouts' mean pairwise cosine.

    Two copies at cosine c to the direct vector, with independent high-dimensional noise, have
    pairwise cosine ≈ c², so c = sqrt(mean pairwise cosine of the query's rollouts).
    """
    g = rollouts.shape[1]
    gram = np.einsum("ngh,nkh->ngk", rollouts, rollouts)
    pairwise = (gram.sum(axis=(1, 2)) - np.trace(gram, axis1=1, axis2=2)) / (g * (g - 1))
    cos = np.sqrt(np.clip(pairwise, 1e-6, 1.0))  # (N,)
    noise = np.random.default_rng(seed).standard_normal(rollouts.shape)
    noise -= (noise * direct[:, None]).sum(-1, keepdims=True) * direct[:, None]  # orthogonal to direct
    noise /= np.linalg.norm(noise, axis=-1, keepdims=True)
    scale = np.sqrt(1.0 / cos**2 - 1.0)[:, None, None]
    out = direct[:, None] + scale * noise
    return (out / np.linalg.norm(out, axis=-1, keepdims=True)).astype(np.float32)


def measure(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    dataset = load_dataset(args.data, "test")
    evaluator = RetrievalEvaluator(dataset, args.max_queries)
    if args.max_docs:
        dataset = dataset.sample(evaluator.query_ids, args.max_docs)
    qids = evaluator.query_ids
    texts = [dataset.queries[q] for q in qids]
    qrels = [dataset.qrels[q] for q in qids]
    model = SearchR3.from_pretrained(args.model)
    if args.reasoning_tokens is not None:
        model.config.reasoning_tokens = args.reasoning_tokens
    if args.min_reasoning_tokens is not None:
        model.config.min_reasoning_tokens = args.min_reasoning_tokens
    doc_ids = [d.id for d in dataset.corpus]
    docs = VectorCache().embed_documents(model, [document_text(d.title, d.text) for d in dataset.corpus],
                                         show_progress=True)
    depth = min(K, len(doc_ids))

    def score(vectors: np.ndarray, rels) -> np.ndarray:
        return ndcg_rewards(rels, rank(vectors, docs, doc_ids, depth), K)

    direct_vectors = model.embed_queries(texts, show_progress=True)
    direct = score(direct_vectors, qrels)
    greedy_results = ReasoningCache().reason(model, texts, show_progress=True)
    greedy = score(model.stack(greedy_results), qrels)
    G = args.group
    # one seed per (query, rollout): a rollout does not depend on its batch-mates
    seeds = [args.seed * 1_000_003 + i * G + g for i in range(len(qids)) for g in range(G)]
    sampled_results = model.reason([t for t in texts for _ in range(G)], sample=True, seed=seeds,
                                   temperature=args.temperature, top_p=args.top_p, show_progress=True)
    group_qrels = [r for r in qrels for _ in range(G)]
    rollout_vectors = model.stack(sampled_results)
    sampled = score(rollout_vectors, group_qrels).reshape(-1, G)
    forced = np.array([r.forced for r in sampled_results]).reshape(-1, G)
    words = np.array([len(r.trace.split()) for r in sampled_results]).reshape(-1, G)
    noisy = noise_control(direct_vectors, rollout_vectors.reshape(len(qids), G, -1), args.seed)
    control = score(noisy.reshape(len(qids) * G, -1), group_qrels).reshape(-1, G)

    def as_map(a: np.ndarray) -> dict[str, float]:
        return {q: float(v) for q, v in zip(qids, a)}

    best, mean = sampled.max(axis=1), sampled.mean(axis=1)
    gain, control_gain = best - mean, control.max(axis=1) - control.mean(axis=1)
    shaped = sampled - args.format_penalty * forced
    tests = {}
    for name, a, b in [("greedy +R vs direct", greedy, direct), ("sampled mean vs direct", mean, direct),
                       ("best of G vs direct", best, direct),
                       ("selection gain (best − mean of G): rollouts vs noise control", gain, control_gain)]:
        diff, p = paired_randomization_test(as_map(a), as_map(b))
        tests[name] = {"delta": diff, "p": p}
    mixed = [i for i in range(len(qids)) if 0 < forced[i].sum() < G]
    emitted_vs_forced = None
    if mixed:
        e = {qids[i]: float(sampled[i][~forced[i]].mean()) for i in mixed}
        f = {qids[i]: float(sampled[i][forced[i]].mean()) for i in mixed}
        diff, p = paired_randomization_test(e, f)
        emitted_vs_forced = {"queries": len(mixed), "emitted": float(np.mean(list(e.values()))),
                             "forced": float(np.mean(list(f.values()))), "delta": diff, "p": p}

    def tied(a: np.ndarray) -> float:
        return float((a.max(axis=1) == a.min(axis=1)).mean())

    # the first g rollouts of each query (the control's spread is still measured on all G)
    by_size = [{"g": g, "best": float(sampled[:, :g].max(axis=1).mean()),
                "noise control": float(control[:, :g].max(axis=1).mean()),
                "tied": tied(sampled[:, :g]), "tied shaped": tied(shaped[:, :g])} for g in range(1, G + 1)]
    return {
        "model": args.model, "fingerprint": model.fingerprint, "data": dataset.name,
        "docs": len(doc_ids), "queries": len(qids), "max_docs": args.max_docs, "group": G,
        "temperature": args.temperature or model.config.temperature, "top_p": args.top_p or model.config.top_p,
        "reasoning_tokens": model.config.reasoning_tokens, "min_reasoning_tokens": model.config.min_reasoning_tokens,
        "ndcg@10": {"direct": float(direct.mean()), "greedy +R": float(greedy.mean()),
                    "sampled mean": float(mean.mean()), "best of G": float(best.mean()),
                    "worst of G": float(sampled.min(axis=1).mean()),
                    "noise control mean": float(control.mean()),
                    "noise control best of G": float(control.max(axis=1).mean())},
        "selection_gain": float(gain.mean()), "noise_control_selection_gain": float(control_gain.mean()),
        "format_penalty": args.format_penalty,
        "share_best_of_G_above_direct": float((best > direct).mean()),
        "share_sampled_mean_above_direct": float((mean > direct).mean()),
        "tied_groups": tied(sampled), "tied_groups_shaped": tied(shaped),
        "within_group_std": float(sampled.std(axis=1).mean()),
        "between_query_std": float(mean.std()),
        "forced_share": float(forced.mean()), "trace_words_mean": float(words.mean()),
        "emitted_vs_forced": emitted_vs_forced, "tests": tests,
        "by_group_size": by_size,  # the first g rollouts of each query: best of g and tied share
        "per_query": {q: {"direct": float(direct[i]), "greedy": float(greedy[i]),
                          "sampled": sampled[i].round(6).tolist(), "forced": forced[i].tolist(),
                          "control": control[i].round(6).tolist()} for i, q in enumerate(qids)},
        "seconds": time.perf_counter() - start,
    }


def report(results: dict) -> str:
    md = ["# Headroom for GRPO: sampled reasoning rollouts vs the direct vector (test queries, nDCG@10)", "",
          ("Per query, G rollouts sampled as Stage 2 samples them, each scored by the reward function "
           "(see the docstring of experiments/rl_headroom/rl_headroom.py). Best of G bounds what concentrating the "
           "policy on its current samples could reach. Selection gain = best of G − mean of G; its noise "
           "control uses G copies of the direct vector moved at random by the rollouts' own spread. "
           "Tied: all G rollouts score the same nDCG@10 (shaped: with the format penalty), so GRPO's "
           "advantage carries no ranking signal."), "",
          ("| label | model | data | G | direct | greedy +R | sampled mean | best of G | best of G > direct | "
           "selection gain | noise control's | tied | tied, shaped | forced | words |"),
          "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, r in results.items():
        n = r["ndcg@10"]
        data = r["data"] + (f" ({r['docs']} docs sampled)" if r["max_docs"] else "")
        md.append(f"| {label} | {r['model']} | {data} | {r['group']} | {n['direct']:.3f} | {n['greedy +R']:.3f} | "
                  f"{n['sampled mean']:.3f} | {n['best of G']:.3f} | {r['share_best_of_G_above_direct']:.0%} | "
                  f"{r['selection_gain']:.3f} | {r['noise_control_selection_gain']:.3f} | "
                  f"{r['tied_groups']:.0%} | {r['tied_groups_shaped']:.0%} | {r['forced_share']:.0%} | "
                  f"{r['trace_words_mean']:.0f} |")
    md += ["", "## Paired randomisation tests (10,000 sign flips)", "",
           "| label | comparison | Δ | p |", "|---|---|---:|---:|"]
    for label, r in results.items():
        md += [f"| {label} | {name} | {t['delta']:+.3f} | {t['p']:.4f} |" for name, t in r["tests"].items()]
        e = r["emitted_vs_forced"]
        if e:
            md.append(f"| {label} | emitted − forced rollouts, in the {e['queries']} groups holding both "
                      f"({e['emitted']:.3f} vs {e['forced']:.3f}; descriptive) | {e['delta']:+.3f} | {e['p']:.4f} |")
    md += ["", "## By group size (the first g rollouts of each query; the control's spread from all G)", "",
           "| label | g | best of g | noise control, best of g | tied | tied, shaped |",
           "|---|---:|---:|---:|---:|---:|"]
    md += [f"| {label} | {b['g']} | {b['best']:.3f} | {b['noise control']:.3f} | {b['tied']:.0%} | "
           f"{b['tied shaped']:.0%} |" for label, r in results.items() for b in r["by_group_size"]]
    return "\n".join(md) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model name or folder")
    parser.add_argument("--label", help="key in rl_headroom.json")
    parser.add_argument("--data", default="scifact")
    parser.add_argument("--max-docs", type=int, default=600, help="sampled corpus, as `searchr3 eval --max-docs`")
    parser.add_argument("--max-queries", type=int, default=None)
    parser.add_argument("--group", type=int, default=4, help="rollouts per query (configs/rl-cpu.yaml: 4)")
    parser.add_argument("--temperature", type=float, default=None, help="default: the model's saved setting")
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--reasoning-tokens", type=int, default=None, help="override the model's budget")
    parser.add_argument("--min-reasoning-tokens", type=int, default=None, help="override the model's minimum")
    parser.add_argument("--format-penalty", type=float, default=0.2,
                        help="for the shaped ties, as the env's format_penalty (configs/rl-cpu.yaml: 0.2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", action="store_true", help="only rewrite the Markdown from the JSON")
    args = parser.parse_args()
    path = ROOT / "rl_headroom.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    if not args.report:
        if not (args.model and args.label):
            parser.error("--model and --label are required (or --report)")
        results[args.label] = measure(args)
        path.write_text(json.dumps(results, indent=1) + "\n")
    md = report(results)
    (ROOT / "rl_headroom.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
