"""Approximate nearest-neighbour search over the model's own vectors, up to 1M of them.

Real vectors: the released default model's document vectors of the five bundled corpora (read
from the VectorCache, so sets already evaluated cost nothing) and its direct query vectors of
their test queries. Random vectors say nothing here: LLM embeddings crowd into a narrow cone,
which is what makes graph and cluster indexes hard.

Expansion to 1M (`expand`): the real document vectors stay; each new vector is a point on the
segment from a real vector (drawn uniformly) towards one of its ten nearest real neighbours (at
most half-way), jittered by Gaussian noise shaped like the real vectors' variation within their
k-means clusters (its length half the median distance between real nearest neighbours), then
L2-normalised. New
documents of a growing corpus fall between existing ones; the points stay inside the real
vectors' cone and along their principal directions (jitter alone, tried first, scattered them off
it: nearest-neighbour cosine 0.63 against the real 0.80). The report compares real and expanded
vectors on those statistics at equal sample sizes.

For each corpus size (10k to 1M: prefixes of one expanded set) it measures exact search (FAISS
flat), HNSW (the service's M; ef_construction 40 and 200, only 40 at 1M where a build takes tens
of minutes; an ef_search sweep), IVF-Flat and IVF-PQ (an nprobe sweep; skipped at the sizes
between 300k and the largest): recall@10 against exact search for 1,000 real queries, p50/p99
latency of one query at a time (as the service searches), build time and the index's size in
memory.

    python benchmarks/ann.py              # 10k ... 1M (about an hour on 2 cores)
    python benchmarks/ann.py --quick      # 10k and 30k, for a smoke check

Writes benchmarks/results/ann.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import faiss
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SETS = ("scifact", "birco-arguana", "birco-wtb", "rarb-alphanli", "wiki-known-item")
K = 10


def real_vectors(model_name: str, sets: tuple[str, ...], dtype: str = "auto") -> tuple[np.ndarray, np.ndarray, dict]:
    """The model's document vectors of each set's corpus and its direct vectors of the test queries.

    The cache is keyed by the weights as loaded, so `dtype` must match an evaluation's for its
    vectors to be reused."""
    from searchr3 import SearchR3
    from searchr3.cache import VectorCache
    from searchr3.data import load_dataset
    from searchr3.prompts import document_text

    model = SearchR3.from_pretrained(model_name, dtype=dtype)
    cache = VectorCache()
    docs, queries, counts = [], [], {}
    for name in sets:
        data = load_dataset(name, split="test")
        texts = [document_text(d.title, d.text) for d in data.corpus]
        docs.append(cache.embed_documents(model, texts, show_progress=True))
        queries.append(model.embed_queries(list(data.queries.values()), show_progress=True))
        counts[name] = {"documents": len(texts), "queries": len(data.queries)}
    info = {"model": model.name, "fingerprint": model.fingerprint, "dtype": str(next(model.model.parameters()).dtype),
            "max_length": model.config.max_length, "sets": counts}
    return np.concatenate(docs).astype(np.float32), np.concatenate(queries).astype(np.float32), info


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def nearest_cosines(x: np.ndarray) -> np.ndarray:
    """Each row's cosine to its nearest other row (exact)."""
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    scores, _ = index.search(x, 2)
    return scores[:, 1]


def expand(real: np.ndarray, n: int, seed: int = 0, neighbours: int = 10, jitter: float = 0.5
           ) -> tuple[np.ndarray, dict]:
    """`n` vectors: the real ones, then new points between real neighbours (see the module docstring)."""
    rng = np.random.default_rng(seed)
    d = real.shape[1]
    index = faiss.IndexFlatIP(d)
    index.add(real)
    sims, near = index.search(real, neighbours + 1)
    near = near[:, 1:]  # each vector's nearest real neighbours, itself excluded
    gap = float(np.median(np.sqrt(np.clip(2 - 2 * sims[:, 1], 0, None))))  # distance to the nearest real neighbour
    kmeans = faiss.Kmeans(d, max(1, len(real) // 30), niter=20, seed=seed, spherical=True)
    kmeans.train(real)
    _, assign = kmeans.index.search(real, 1)
    residuals = real - kmeans.centroids[assign[:, 0]]
    eigval, eigvec = np.linalg.eigh(residuals.T @ residuals / len(real))
    shape = (eigvec * np.sqrt(np.clip(eigval, 0, None))).T.astype(np.float32)  # z @ shape ~ N(0, covariance)
    scale = jitter * gap / np.sqrt(eigval.clip(0).sum())  # E|noise| ≈ jitter × the median neighbour distance
    out = np.empty((n, d), dtype=np.float32)
    out[: len(real)] = real
    for start in range(len(real), n, 100_000):
        m = min(n, start + 100_000) - start
        a = rng.integers(0, len(real), m)
        b = near[a, rng.integers(0, neighbours, m)]
        mix = rng.uniform(0, 0.5, (m, 1)).astype(np.float32)
        point = (1 - mix) * real[a] + mix * real[b]
        noise = rng.standard_normal((m, d), dtype=np.float32) @ shape
        out[start:start + m] = normalise(normalise(point) + scale * noise)
    return out, {"neighbours": neighbours, "mix": "uniform(0, 0.5)", "clusters": kmeans.k, "jitter": jitter,
                 "neighbour_distance_p50": gap, "noise_scale": float(scale)}


def spread(x: np.ndarray, rng: np.random.Generator, sample: int) -> dict:
    """Statistics that say whether two vector sets are shaped alike."""
    s = x[rng.choice(len(x), min(sample, len(x)), replace=False)]
    mean = s.mean(axis=0)
    to_mean = s @ (mean / np.linalg.norm(mean))
    pairs = np.sum(s[rng.integers(0, len(s), 20_000)] * s[rng.integers(0, len(s), 20_000)], axis=1)
    centred = s - mean
    var = np.linalg.svd(centred[:5000], compute_uv=False) ** 2
    return {"sample": len(s), "cosine_to_mean_p50": float(np.median(to_mean)),
            "pair_cosine_p5_p50_p95": [float(v) for v in np.percentile(pairs, [5, 50, 95])],
            "nn_cosine_p5_p50_p95": [float(v) for v in np.percentile(nearest_cosines(s), [5, 50, 95])],
            "top10_pc_variance_share": float(var[:10].sum() / var.sum())}


def latencies(search, queries: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Search one query at a time; returns the labels and per-query seconds."""
    found, times = np.empty((len(queries), K), dtype=np.int64), []
    for i in range(len(queries)):
        start = time.perf_counter()
        _, labels = search(queries[i:i + 1])
        times.append(time.perf_counter() - start)
        found[i] = labels[0]
    return found, times


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)]))


def measure(name: str, params: dict, index: faiss.Index, build_s: float, queries: np.ndarray, truth: np.ndarray,
            sweep: tuple[str, list[int]] | None) -> list[dict]:
    size = len(faiss.serialize_index(index))
    rows = []
    for value in (sweep[1] if sweep else [None]):
        if sweep:
            faiss.ParameterSpace().set_index_parameter(index, sweep[0], value)
        found, times = latencies(lambda q: index.search(q, K), queries)
        ms = 1000 * np.asarray(times)
        rows.append({"index": name, **params, **({sweep[0]: value} if sweep else {}), "recall@10": recall(found, truth),
                     "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                     "build_s": build_s, "memory_mb": size / 2**20})
        print(f"  {rows[-1]}", flush=True)
    return rows


def bench_size(base: np.ndarray, queries: np.ndarray, hnsw: list[tuple[int, int]], ivf: bool,
               pq_bytes: int = 96) -> list[dict]:
    """Every index kind at one corpus size; `hnsw` lists the (M, ef_construction) graphs to build;
    IVF-PQ stores `pq_bytes` a vector (96 of a 576-d fp32 vector's 2,304 bytes by default)."""
    n, d = base.shape
    flat = faiss.IndexFlatIP(d)
    start = time.perf_counter()
    flat.add(base)
    build = time.perf_counter() - start
    _, truth = flat.search(queries, K)
    rows = measure("flat", {}, flat, build, queries, truth, None)
    del flat

    for m, ef_construction in hnsw:
        graph = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = ef_construction
        start = time.perf_counter()
        graph.add(base)
        rows += measure("hnsw", {"M": m, "ef_construction": ef_construction}, graph, time.perf_counter() - start,
                        queries, truth, ("efSearch", [16, 32, 64, 128, 256, 512]))
        del graph

    nlist = int(4 * np.sqrt(n))
    train = base[np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)]
    for name, factory in (("ivf-flat", f"IVF{nlist},Flat"), ("ivf-pq", f"IVF{nlist},PQ{pq_bytes}")) if ivf else ():
        index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
        start = time.perf_counter()
        index.train(train)
        index.add(base)
        rows += measure(name, {"nlist": nlist, **({"pq_bytes": pq_bytes} if name == "ivf-pq" else {})}, index,
                        time.perf_counter() - start, queries, truth, ("nprobe", [4, 8, 16, 32, 64, 128]))
        del index
    for r in rows:
        r["n"] = n
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model whose vectors are used (default: the default model)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"],
                        help="precision of the vectors (an evaluation's, to reuse its cached vectors)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000, 300_000, 1_000_000])
    parser.add_argument("--ef-construction", type=int, nargs="+", default=[40, 200],
                        help="HNSW build beams; above --all-builds-max vectors only the first is built")
    parser.add_argument("--all-builds-max", type=int, default=300_000,
                        help="largest size at which every build setting and IVF are measured (builds are slow)")
    parser.add_argument("--queries", type=int, default=1000, help="real queries searched at each size")
    parser.add_argument("--quick", action="store_true", help="sizes 10k and 30k, 300 queries")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sets", nargs="+", default=list(SETS), help="corpora whose vectors are the real ones")
    args = parser.parse_args()
    from searchr3 import DEFAULT_MODEL
    from searchr3.index import HNSW_M
    from searchr3.precision import cpu_name

    if args.quick:
        args.sizes, args.queries, args.all_builds_max = [10_000, 30_000], 300, 10_000
    docs, queries, info = real_vectors(args.model or DEFAULT_MODEL, tuple(args.sets), args.dtype)
    rng = np.random.default_rng(args.seed)
    queries = queries[rng.choice(len(queries), min(args.queries, len(queries)), replace=False)]
    base, made = expand(docs, max(args.sizes), args.seed)
    report = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                          "faiss": faiss.__version__, "faiss_threads": faiss.omp_get_max_threads()},
              "vectors": {**info, "real_documents": len(docs), "queries": len(queries), "expansion": made,
                          # equal samples: a nearest neighbour among more points is nearer
                          "spread_real": spread(docs, rng, min(len(docs), 20_000)),
                          "spread_expanded": spread(base[len(docs):], rng, min(len(docs), 20_000))},
              "rows": []}
    for n in sorted(args.sizes):
        print(f"{n:,} vectors ...", flush=True)
        every = n <= args.all_builds_max
        builds = [(HNSW_M, ef) for ef in (args.ef_construction if every else args.ef_construction[:1])]
        report["rows"] += bench_size(base[:n], queries, builds, ivf=every or n == max(args.sizes))
        write(report)


def best(rows: list[dict], name: str, target: float = 0.95) -> dict | None:
    """The fastest setting of one index kind that reaches the recall target."""
    ok = [r for r in rows if r["index"] == name and r["recall@10"] >= target]
    return min(ok, key=lambda r: r["p50_ms"]) if ok else None


def write(report: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ann.json").write_text(json.dumps(report, indent=2) + "\n")
    v, m = report["vectors"], report["machine"]
    lines = ["# Approximate search over the model's own vectors", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, FAISS {m['faiss']} ({m['faiss_threads']} threads); one query "
             "at a time, as the service searches. Vectors: "
             f"{v['model']} ({v['dtype']}, documents at {v['max_length']} tokens), {v['real_documents']:,} real "
             f"document vectors of the corpora of {', '.join(v['sets'])}, expanded as `benchmarks/ann.py` describes; "
             f"{v['queries']:,} real direct query vectors of their test queries. Recall@10 is against exact search "
             "over the same vectors.", "",
             "## Real and expanded vectors, shaped alike?", "",
             "| statistic | real | expanded (synthetic part) |", "|---|---:|---:|"]
    fmt = lambda x: " / ".join(f"{y:.3f}" for y in x) if isinstance(x, list) else f"{x:.3f}"  # noqa: E731
    for key in ("cosine_to_mean_p50", "pair_cosine_p5_p50_p95", "nn_cosine_p5_p50_p95", "top10_pc_variance_share"):
        lines.append(f"| {key} | {fmt(v['spread_real'][key])} | {fmt(v['spread_expanded'][key])} |")
    lines += ["", f"Samples: {v['spread_real']['sample']:,} real and {v['spread_expanded']['sample']:,} synthetic "
              "vectors (nearest-neighbour statistics need equal samples)."]
    e = v["expansion"]
    lines += ["", f"Expansion: each new vector lies on the segment from a real vector towards one of its "
              f"{e['neighbours']} nearest real neighbours (mixing weight {e['mix']}), jittered by noise shaped like "
              f"the variation within {e['clusters']} k-means clusters, its length {e['jitter']} × the median distance "
              f"between real nearest neighbours ({e['neighbour_distance_p50']:.3f}), then normalised.", "",
              "## Every setting", "",
              "| vectors | index | setting | recall@10 | p50 ms | p99 ms | build s | memory MB |",
              "|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        setting = ", ".join(f"{k} {r[k]}" for k in ("M", "ef_construction", "efSearch", "nlist", "pq_bytes", "nprobe")
                            if k in r)
        lines.append(f"| {r['n']:,} | {r['index']} | {setting or '–'} | {r['recall@10']:.3f} | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['build_s']:.1f} | {r['memory_mb']:.0f} |")
    lines += ["", "## Fastest setting with recall@10 ≥ 0.95", "",
              "| vectors | flat p50 ms | HNSW (efSearch: recall, p50 ms) | IVF-Flat (nprobe: recall, p50 ms) | "
              "IVF-PQ (nprobe: recall, p50 ms) |", "|---:|---:|---|---|---|"]
    for n in sorted({r["n"] for r in report["rows"]}):
        rows = [r for r in report["rows"] if r["n"] == n]
        flat = next(r for r in rows if r["index"] == "flat")
        cells = []
        for name, key in (("hnsw", "efSearch"), ("ivf-flat", "nprobe"), ("ivf-pq", "nprobe")):
            b = best(rows, name)
            build = f" (efC {b['ef_construction']})" if b and name == "hnsw" else ""
            cells.append(f"{b[key]}{build}: {b['recall@10']:.3f}, {b['p50_ms']:.2f}" if b else "not reached")
        lines.append(f"| {n:,} | {flat['p50_ms']:.2f} | " + " | ".join(cells) + " |")
    (RESULTS / "ann.md").write_text("\n".join(lines) + "\n")
    plot(report)


def plot(report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["n"] for r in report["rows"]})
    def curves(rows: list[dict]) -> list[tuple]:
        return sorted({(r["index"], r.get("ef_construction")) for r in rows if r["index"] != "flat"}, key=str)

    colour = {c: f"C{i}" for i, c in enumerate(curves(report["rows"]))}  # one colour a curve in every panel
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 3.8), squeeze=False)
    for ax, n in zip(axes[0], sizes):
        rows = [r for r in report["rows"] if r["n"] == n]
        for name, ef in curves(rows):
            pts = [(r["p50_ms"], r["recall@10"]) for r in rows if r["index"] == name and r.get("ef_construction") == ef]
            ax.plot(*zip(*pts), "o-", ms=3, color=colour[(name, ef)], label=name + (f" (efC {ef})" if ef else ""))
        flat = next(r for r in rows if r["index"] == "flat")
        ax.axvline(flat["p50_ms"], color="grey", ls="--", label="flat (exact)")
        ax.axhline(0.95, color="red", lw=0.6)
        ax.set_xscale("log")
        ax.set_title(f"{n:,} vectors")
        ax.set_xlabel("p50 latency per query (ms)")
        ax.set_ylabel("recall@10 vs exact")
        ax.grid(alpha=0.3)
    for ax in axes[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "ann.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
