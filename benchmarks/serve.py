"""Speed of the HTTP service and of FAISS search; writes benchmarks/results/serve.{json,md}.

Starts `searchr3 serve` as a separate process (so client threads do not share its GIL),
fills its index with SciFact abstracts through POST /v1/documents, then times single-text
requests with 1 client and with 8 concurrent clients:

    /v1/embeddings  documents, direct queries, reasoning queries
    /v1/search      direct and reasoning queries (k=10)

Concurrent requests of one kind are micro-batched by the service (`serve.batch_wait_ms`), so the
8-client rows show what batching buys; the last column is the 8-client throughput over 1 client's.
FAISS alone over the model's own vectors is `benchmarks/ann.py`.

    python benchmarks/serve.py                 # full run (~15 min on 2 cores)
    python benchmarks/serve.py --quick         # small counts, for a smoke check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import faiss
import httpx
import numpy as np

from searchr3 import read_corpus, read_queries
from searchr3.data import resolve_dataset
from searchr3.precision import cpu_name, cpu_supports_bf16
from searchr3.service_process import ServiceProcess

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def run_load(base: str, path: str, bodies: list[dict], clients: int, per_client: int) -> dict:
    """`clients` threads each send `per_client` requests back to back; latency per request."""
    def one_client(c: int) -> tuple[list[float], int]:
        latencies, errors = [], 0
        with httpx.Client(timeout=600) as http:
            for j in range(per_client):
                body = bodies[(c * per_client + j) % len(bodies)]
                start = time.perf_counter()
                r = http.post(base + path, json=body)
                latencies.append(time.perf_counter() - start)
                errors += r.status_code != 200
        return latencies, errors

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one_client, range(clients)))
    wall = time.perf_counter() - start
    latencies = [x for lat, _ in results for x in lat]
    return {"clients": clients, "requests": len(latencies), "errors": sum(e for _, e in results),
            "seconds": round(wall, 2), "requests_per_s": round(len(latencies) / wall, 2),
            "p50_ms": round(1000 * percentile(latencies, 50), 1), "p99_ms": round(1000 * percentile(latencies, 99), 1)}


def bench_service(model: str, n_docs: int, per_client_1: int, per_client_8: int, max_length: int,
                  dtype: str) -> dict:
    docs = read_corpus(resolve_dataset("scifact"))
    queries = list(read_queries(resolve_dataset("scifact") / "queries.jsonl").values())[:64]
    out = {}
    with tempfile.TemporaryDirectory() as tmp, \
            ServiceProcess(model, Path(tmp) / "index", max_length=max_length, dtype=dtype) as server:
        base = server.url
        start = time.perf_counter()
        for i in range(0, n_docs, 16):
            batch = [{"_id": d.id, "title": d.title, "text": d.text} for d in docs[i:min(i + 16, n_docs)]]
            httpx.post(f"{base}/v1/documents", json={"documents": batch}, timeout=600).raise_for_status()
        out["index_fill"] = {"documents": n_docs, "seconds": round(time.perf_counter() - start, 1)}
        doc_texts = [d.text for d in docs[n_docs:n_docs + 64]]  # not in the index; one text a request
        workloads = {
            "embeddings: documents": ("/v1/embeddings", [{"input": t, "input_type": "document"}
                                                         for t in doc_texts]),
            "embeddings: queries, direct": ("/v1/embeddings", [{"input": q} for q in queries]),
            "embeddings: queries, reasoning": ("/v1/embeddings", [{"input": q, "reasoning": True}
                                                                  for q in queries]),
            "search: direct": ("/v1/search", [{"query": q, "k": 10} for q in queries]),
            "search: reasoning": ("/v1/search", [{"query": q, "k": 10, "reasoning": True} for q in queries]),
        }
        rows = []
        for name, (path, bodies) in workloads.items():
            run_load(base, path, bodies[:2], 1, 2)  # warm-up
            for clients, per in ((1, per_client_1), (8, per_client_8)):
                row = {"workload": name, **run_load(base, path, bodies, clients, per)}
                print(json.dumps(row), flush=True)
                rows.append(row)
        out["rows"] = rows
    return out


def markdown(result: dict) -> str:
    svc = result["service"]
    lines = [f"# Service speed ({result['machine']['cpu']}, {result['machine']['threads']} threads)", "",
             f"Model `{result['model']}`, dtype {result['dtype']} (native bf16: "
             f"{result['machine']['native_bf16']}), max_length {result['max_length']}, one server process, single-text "
             f"requests over loopback HTTP; index of {svc['index_fill']['documents']} SciFact abstracts "
             f"(filled through POST /v1/documents in {svc['index_fill']['seconds']} s).", "",
             "| workload | clients | requests | errors | requests/s | p50 ms | p99 ms | × one client |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    single = {r["workload"]: r["requests_per_s"] for r in svc["rows"] if r["clients"] == 1}
    for r in svc["rows"]:
        ratio = r["requests_per_s"] / single[r["workload"]] if single.get(r["workload"]) else float("nan")
        lines.append(f"| {r['workload']} | {r['clients']} | {r['requests']} | {r['errors']} | {r['requests_per_s']} "
                     f"| {r['p50_ms']} | {r['p99_ms']} | {ratio:.2f}× |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="searchr3-smollm2-135m-sft")
    p.add_argument("--max-length", type=int, default=128, help="text tokens kept per document/query")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"],
                   help="the service's weights (auto: bf16 where the CPU has it natively, else fp32)")
    p.add_argument("--docs", type=int, default=200, help="SciFact abstracts put in the served index")
    p.add_argument("--quick", action="store_true", help="small counts (smoke check; numbers not for the README)")
    p.add_argument("--output", default=str(RESULTS / "serve"), help="output path without extension")
    args = p.parse_args()
    per1, per8 = (3, 2) if args.quick else (24, 6)
    if args.quick:
        args.docs = 32
    result = {"model": args.model, "dtype": args.dtype, "max_length": args.max_length, "quick": args.quick,
              "machine": {"cpu": cpu_name(), "threads": faiss.omp_get_max_threads(),
                          "native_bf16": cpu_supports_bf16(), "python": platform.python_version()}}
    result["service"] = bench_service(args.model, args.docs, per1, per8, args.max_length, args.dtype)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
