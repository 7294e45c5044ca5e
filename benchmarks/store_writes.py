"""Write latency of the service's index storage, before and after the move to SQLite, in one run.

The service acknowledges an upsert only once it is durable; this times that durable write alone
(vectors given, no model), since embedding the document costs the same either way:

    before  JournaledIndex: a JSON line appended to journal.jsonl and fsynced (the code at --before)
    after   DurableIndex:   one SQLite transaction (WAL, synchronous=FULL), checkpointed

For each: N upserts of one document (576-d vector, ~1 KB text) into a fresh folder, p50/p99
latency and writes/s; the same with 16 documents per upsert; deletes; the time to reopen the
folder after a crash (journal replay vs. FAISS rebuild from the database); and single-document
upserts through `searchr3 serve` with the default model, embedding included. Each side runs in
its own interpreter, the old code extracted from git, so both are measured on the same disk in
the same run. Writes benchmarks/results/store_writes.{json,md}.

    python benchmarks/store_writes.py            # 500 writes each
    python benchmarks/store_writes.py --n 100    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DIM = 576


def _percentiles(seconds: list[float]) -> dict:
    ms = 1000 * np.asarray(seconds)
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "per_s": round(len(ms) / (ms.sum() / 1000), 1)}


def worker(side: str, n: int, folder: Path) -> dict:
    """Time the writes of one side (imported from whatever `searchr3` is on the path)."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n * 17, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    text = {"title": "A title", "text": "word " * 200}
    if side == "before":
        from searchr3.journal import JournaledIndex as Live

        def open_live():
            return Live.open(folder, "bench", DIM, compact_every=10**9)
    else:
        from searchr3.durable import DurableIndex as Live

        def open_live():
            return Live.open(folder, "bench", DIM, snapshot_every=10**9)

    live = open_live()
    single, batch, deletes = [], [], []
    for i in range(n):
        start = time.perf_counter()
        live.upsert([f"d{i}"], vectors[i:i + 1], [text])
        single.append(time.perf_counter() - start)
    for i in range(n // 4):
        ids = [f"b{i}-{j}" for j in range(16)]
        start = time.perf_counter()
        live.upsert(ids, vectors[n + 16 * i:n + 16 * (i + 1)], [text] * 16)
        batch.append((time.perf_counter() - start) / 16)
    for i in range(n // 4):
        start = time.perf_counter()
        live.delete([f"d{i}"])
        deletes.append(time.perf_counter() - start)
    count = len(live)
    live.close(snapshot=False)  # as after a crash: the next open replays or rebuilds
    start = time.perf_counter()
    again = open_live()
    reopen = time.perf_counter() - start
    assert len(again) == count
    again.close()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {"upsert_1": _percentiles(single), "upsert_16_per_doc": _percentiles(batch), "delete": _percentiles(deletes),
            "reopen_after_crash_s": round(reopen, 3), "documents": count, "folder_mib": round(size / 2**20, 2)}


def http_sides(sources: dict[str, Path], n: int) -> dict:
    """Single-document upserts through `searchr3 serve` (the default model), one server per side
    running side by side, requests alternating between them (so both see the same machine state):
    what a client waits for, embedding included."""
    from contextlib import ExitStack

    import httpx

    from searchr3.data import read_corpus, resolve_dataset
    from searchr3.service_process import ServiceProcess

    docs = read_corpus(resolve_dataset("scifact"))[: n + 2]
    seconds: dict[str, list[float]] = {side: [] for side in sources}
    with ExitStack() as stack, httpx.Client(timeout=120) as http:
        servers = {}
        for side, src in sources.items():
            tmp = stack.enter_context(tempfile.TemporaryDirectory(dir=ROOT))
            env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
            servers[side] = stack.enter_context(ServiceProcess("searchr3-smollm2-135m-sft", Path(tmp) / "ix",
                                                               env=env, timeout=600))
        for i, d in enumerate(docs):
            order = list(servers) if i % 2 == 0 else list(reversed(servers))
            for side in order:
                body = {"documents": [{"_id": d.id, "title": d.title, "text": d.text}]}
                start = time.perf_counter()
                http.post(f"{servers[side].url}/v1/documents", json=body).raise_for_status()
                if i >= 2:  # the first two warm the models up
                    seconds[side].append(time.perf_counter() - start)
    return {side: _percentiles(s) for side, s in seconds.items()}


def run_side(side: str, src: Path, n: int) -> dict:
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:  # the repository's disk, not a tmpfs
        env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, __file__, "--worker", side, "--n", str(n), "--folder", f"{tmp}/ix"],
                             env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500, help="single-document upserts per side")
    parser.add_argument("--http-n", type=int, default=30, help="upserts through the HTTP service per side (0: skip)")
    parser.add_argument("--before", help="git revision with the journal (default: the parent of the commit "
                        "that removed src/searchr3/journal.py)")
    parser.add_argument("--worker", choices=["before", "after"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.folder)))
        return
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()  # noqa: E731
    before = args.before or git("rev-list", "-1", "HEAD", "--", "src/searchr3/journal.py") + "^"
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "old.tar"
        subprocess.run(["git", "archive", "-o", str(archive), before, "src"], cwd=ROOT, check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        results = {"before": run_side("before", Path(tmp) / "src", args.n)}
        results["after"] = run_side("after", ROOT / "src", args.n)
        http = http_sides({"before": Path(tmp) / "src", "after": ROOT / "src"}, args.http_n) if args.http_n else {}
    from searchr3.precision import cpu_name  # the parent only: workers import the side they measure

    record = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()},
              "before_revision": git("rev-parse", "--short", before), "n": args.n, **results,
              "http_upsert": {"n": args.http_n, **http}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "store_writes.json").write_text(json.dumps(record, indent=2) + "\n")
    rows = [("upsert, 1 document", "upsert_1"), ("upsert, 16 documents (per document)", "upsert_16_per_doc"),
            ("delete", "delete")]
    lines = [f"# Durable write latency: journal (before) vs SQLite (after)\n",
             f"{record['machine']['cpu']}, {record['machine']['cores']} cores; {args.n} single upserts per side, "
             f"one run; before = `{record['before_revision']}`. Storage only (vectors given): embedding a "
             "document costs the same on both sides. Command: `python benchmarks/store_writes.py`.\n",
             "| write | before p50 ms | before p99 ms | before /s | after p50 ms | after p99 ms | after /s | after / before (p50) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, key in rows:
        b, a = results["before"][key], results["after"][key]
        lines.append(f"| {label} | {b['p50_ms']} | {b['p99_ms']} | {b['per_s']} | {a['p50_ms']} | {a['p99_ms']} | "
                     f"{a['per_s']} | {a['p50_ms'] / b['p50_ms']:.2f}x |")
    lines += ["", f"Reopen after a crash with {results['after']['documents']} documents: before "
                  f"{results['before']['reopen_after_crash_s']} s (journal replay), after "
                  f"{results['after']['reopen_after_crash_s']} s (verify digests, rebuild FAISS). Folder size: "
                  f"before {results['before']['folder_mib']} MiB, after {results['after']['folder_mib']} MiB."]
    if http:
        b, a = http["before"], http["after"]
        lines += ["", f"Through the service (`searchr3 serve`, default model; both servers up side by side, "
                      f"{args.http_n} single-abstract upserts to each, alternating, after two warm-up ones; "
                      "embedding included):", "",
                  "| | p50 ms | p99 ms | upserts/s |", "|---|---:|---:|---:|",
                  f"| before | {b['p50_ms']} | {b['p99_ms']} | {b['per_s']} |",
                  f"| after | {a['p50_ms']} | {a['p99_ms']} | {a['per_s']} |",
                  f"| after / before (p50) | {a['p50_ms'] / b['p50_ms']:.2f}x | | |"]
    (RESULTS / "store_writes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
