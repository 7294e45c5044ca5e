"""The `searchr3` command: each sub-command parses arguments, calls one library function, prints."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from ._extras import MissingExtra
from .cli_train import add_train_commands
from .assets import DEFAULT_MODEL

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # searchr3 never downloads; fail fast instead of hanging


def _load_model(name: str, args: argparse.Namespace):
    from .config import load_section
    from .modeling import EmbedConfig, SearchR3

    # A config file without an `embed:` section keeps the model's own saved settings.
    config = load_section(args.config, "embed", EmbedConfig, missing_ok=True) if args.config else None
    model = SearchR3.from_pretrained(name, dtype=args.dtype, config=config)
    if args.max_length:
        model.set_max_length(args.max_length)
    if args.batch_size:
        model.config.batch_size = args.batch_size
    return model


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file whose `embed:` section sets inference options "
                   "(without one: the model's saved settings)")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto: bf16 where the hardware runs it fast, else fp32")
    p.add_argument("--max-length", type=int, help="tokens of text kept per document (and per query, unless the "
                   "model saved a query_max_length of its own)")
    p.add_argument("--batch-size", type=int, help="texts per forward pass")


def cmd_models(args: argparse.Namespace) -> int:
    from .assets import ALIASES, BUNDLED_MODELS, DEFAULT_MODEL, RELEASED_MODELS

    for name, m in BUNDLED_MODELS.items():
        print(f"{name}\tbase model, {m.licence}\t(pip package: {m.install})")
    for name, r in RELEASED_MODELS.items():
        state = "" if (r.path / "adapter_config.json").is_file() else " [missing]"
        print(f"{name}\tadapter over {r.base}{state}\t{r.description}")
    for alias, target in ALIASES.items():
        default = " (the default model)" if alias == DEFAULT_MODEL else ""
        print(f"{alias}\talias of {target}{default}\tfollows the latest release; indexes record the version")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from .data import DataError, read_corpus, text_lines
    from .prompts import document_text

    if args.input and args.texts:
        raise SystemExit("give texts either as arguments or with --input, not both")
    if args.input:
        path = Path(args.input)
        if path.name.endswith((".jsonl", ".jsonl.gz")):
            docs = read_corpus(path)
            ids, texts = [d.id for d in docs], [document_text(d.title, d.text) for d in docs]
        else:
            texts = [line for _, line in text_lines(path) if line.strip()]
            ids = [str(i) for i in range(len(texts))]
    else:
        texts = args.texts or [line for _, line in _stdin_lines() if line.strip()]
        ids = [str(i) for i in range(len(texts))]
    if not texts:  # checked before the model loads, like every input problem
        raise DataError(f"no texts to embed in {args.input or 'the arguments or stdin'}")
    model = _load_model(args.model, args)
    traces = None
    if args.kind == "document":
        vectors = model.embed_documents(texts)
    elif args.reasoning:
        traces = model.reason(texts)
        vectors = model.stack(traces)
    else:
        vectors = model.embed_queries(texts)
    if args.output and args.output.endswith(".npy"):
        np.save(args.output, vectors)
        print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} vectors to {args.output}", file=sys.stderr)
        return 0
    lines = []
    for n, (doc_id, vec) in enumerate(zip(ids, vectors)):
        rec = {"id": doc_id, "embedding": [round(float(v), 7) for v in vec]}
        if traces:
            rec.update(trace=traces[n].trace, forced=traces[n].forced)
        lines.append(json.dumps(rec) + "\n")
    if args.output:
        Path(args.output).write_text("".join(lines), encoding="utf-8")
    else:
        sys.stdout.writelines(lines)
    return 0


def _stdin_lines():
    """Lines of stdin as UTF-8, with a line number in the error when they are not."""
    from .data import DataError

    for lineno, raw in enumerate(sys.stdin.buffer, start=1):
        try:
            yield lineno, raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise DataError(f"stdin:{lineno}: not valid UTF-8 (byte {e.start + 1} of the line)") from None


def cmd_index_build(args: argparse.Namespace) -> int:
    from .data import read_corpus, resolve_dataset
    from .search import build_index

    corpus = resolve_dataset(args.corpus)
    docs = read_corpus(corpus)  # validated whole before any work: a bad line writes nothing
    if args.limit:
        docs = docs[: args.limit]
    model = _load_model(args.model, args)
    start = time.perf_counter()
    index = build_index(model, docs, kind=args.kind, show_progress=True)
    seconds = time.perf_counter() - start
    index.save(args.out)
    print(f"indexed {len(index)} documents ({index.kind}: {index.structure}, dim {index.dim}, model {index.model}) "
          f"in {seconds:.0f} s ({len(index) / seconds:.1f} docs/s) -> {args.out}")
    return 0


def cmd_index_check(args: argparse.Namespace) -> int:
    from .index_check import check

    report = check(args.folder)
    print("\n".join(report.lines()))
    return report.status


def cmd_index_repair(args: argparse.Namespace) -> int:
    from .index_check import repair

    status, done = repair(args.folder, drop_damaged=args.drop_damaged)
    print("\n".join(done))
    return status


def cmd_search(args: argparse.Namespace) -> int:
    from .hybrid import load_hybrid_config
    from .index import VectorIndex
    from .search import search

    index = VectorIndex.load(args.index)
    model = _load_model(index.model, args)
    if args.max_new_tokens is not None:
        model.config.reasoning_tokens = args.max_new_tokens
    results = search(model, index, args.queries, k=args.k, reasoning=args.reasoning, hybrid=args.hybrid,
                     hybrid_config=load_hybrid_config(args.config) if args.hybrid else None)
    for result in results:
        if args.json:
            print(json.dumps({"query": result.query, "trace": result.trace, "forced": result.forced,
                              "hits": [{"id": h.id, "score": h.score, "title": h.title} for h in result.hits]}))
            continue
        print(f"\nquery: {result.query}")
        if result.trace is not None:
            print(f"reasoning{' (token forced)' if result.forced else ''}: {result.trace}")
        for rank, hit in enumerate(result.hits, start=1):
            label = hit.title or hit.text[:80].replace("\n", " ")
            print(f"{rank:3d}. {hit.score:.4f}  {hit.id}  {label}")
    return 0


def serve_config(args: argparse.Namespace):
    """The `serve:` settings of --config, with the API key from --api-key, else $SEARCHR3_API_KEY."""
    from dataclasses import replace

    from .config import load_section
    from .serve import ServeConfig

    config = load_section(args.config, "serve", ServeConfig) if args.config else ServeConfig()
    key = args.api_key or os.environ.get("SEARCHR3_API_KEY")
    return replace(config, api_key=key) if key else config


def cmd_serve(args: argparse.Namespace) -> int:
    from .hybrid import load_hybrid_config
    from .serve import Service, run

    config = serve_config(args)
    model = _load_model(args.model, args)
    service = Service(model, args.index, config, hybrid=load_hybrid_config(args.config))
    access = "API key required" if config.api_key else "no API key"
    print(f"serving {model.name} (dim {model.dim}) with index {args.index} ({len(service.store)} documents) "
          f"on http://{args.host}:{args.port}  (search page: /, API docs: /docs; {access})", flush=True)
    run(service, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    from .data import DATA_ENV, bundled_names, dataset_summary, data_dirs

    if not data_dirs():
        print(f"(the bundled BEIR sets are not installed with the package: set ${DATA_ENV} to a folder of them, "
              "such as a searchr3 checkout's data/)", file=sys.stderr)
    print(f"{'name':18} {'docs':>7}  splits (judged queries)                 licence")
    for name in bundled_names():
        try:
            info = dataset_summary(name)
        except FileNotFoundError as e:  # e.g. the wiki package is not installed
            print(f"{name:18} {'-':>7}  unavailable: {e}")
            continue
        splits = ", ".join(f"{k} {v:,}" for k, v in info["splits"].items())
        print(f"{name:18} {info['docs']:>7,}  {splits:38}  {info['licence']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_model, markdown_table
    from .hybrid import load_hybrid_config

    record = evaluate_model(args.model, args.data, args.split, args.reasoning, args.max_queries, args.dtype,
                            use_cache=not args.no_cache, batch_size=args.batch_size, max_length=args.max_length,
                            max_docs=args.max_docs, hybrid_config=load_hybrid_config(args.config))
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(record) + "\n")
        tmp.replace(out)
    print(markdown_table([record]))
    stats = record["modes"].get("on", {}).get("reasoning")
    if stats:
        print(f"\nreasoning: {100 * stats['own_token']:.1f}% of traces end with the model's own token within "
              f"{record['model']['reasoning_tokens']} tokens ({100 * stats['eos']:.1f}% end their turn, "
              f"{100 * stats['budget']:.1f}% reach the budget); {100 * stats['loops']:.1f}% loop; "
              f"{stats['mean_tokens']:.1f} tokens on average")
    adaptive = record["modes"].get("on", {}).get("adaptive")
    if adaptive:
        print(f"adaptive: reasoned on {100 * adaptive['reasoned_share']:.1f}% of queries "
              f"({adaptive['reasoned_queries']}); nDCG@10 with reasoning − direct: "
              f"{adaptive['gain_ndcg@10_reasoned']:+.3f} on those, {adaptive['gain_ndcg@10_all']:+.3f} on all")
    if args.output:
        print(f"\nwrote {args.output}")
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from .model_card import write_model_card

    folder = Path(args.model)
    if not (folder / "searchr3.json").is_file():
        raise FileNotFoundError(f"{folder} is not a searchr3 model folder (no searchr3.json)")
    print(write_model_card(folder, args.name, args.results, args.init_label))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .evaluate import write_report

    md, png = write_report(args.results, args.output)
    print(md.read_text())
    print(f"wrote {md} and {png}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="searchr3", description="Reason about a query, then embed it.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list registered model names")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("embed", help="embed texts (documents or queries) to JSON lines or .npy")
    p.add_argument("texts", nargs="*", help="texts to embed (default: --input, else stdin lines)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"registered name or model folder (default {DEFAULT_MODEL})")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--documents", dest="kind", action="store_const", const="document")
    kind.add_argument("--queries", dest="kind", action="store_const", const="query")
    p.set_defaults(kind="query")
    p.add_argument("--reasoning", action="store_true", help="reason before embedding (queries)")
    p.add_argument("--input", help="corpus .jsonl[.gz] (documents) or a text file, one text a line")
    p.add_argument("--output", help=".npy for a matrix, else JSON lines (default: stdout)")
    _add_model_options(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("index", help="build, check and repair vector indexes")
    isub = p.add_subparsers(dest="index_command", required=True)
    b = isub.add_parser("build", help="embed a corpus and save an index")
    b.add_argument("--model", default=DEFAULT_MODEL, help=f"registered name or saved model folder (default {DEFAULT_MODEL})")
    b.add_argument("--corpus", required=True, help="corpus.jsonl[.gz], a BEIR folder or a bundled set name")
    b.add_argument("--out", required=True, help="index folder to write")
    b.add_argument("--kind", default="auto", choices=["auto", "flat", "hnsw"],
                   help="flat: exact; hnsw: approximate; auto: flat for small corpora, hnsw from "
                        "searchr3.index.HNSW_FROM documents (chosen in benchmarks/results/ann.md)")
    b.add_argument("--limit", type=int, help="index only the first N documents")
    _add_model_options(b)
    b.set_defaults(func=cmd_index_build)
    c = isub.add_parser("check", help="verify an index folder (database, vectors, FAISS snapshot, model); "
                        "exit 0 healthy, 1 derived state to repair, 2 database damaged")
    c.add_argument("folder", help="index folder")
    c.set_defaults(func=cmd_index_check)
    r = isub.add_parser("repair", help="rebuild an index folder's FAISS snapshot from its database "
                        "(not beside a running server)")
    r.add_argument("folder", help="index folder")
    r.add_argument("--drop-damaged", action="store_true",
                   help="delete database rows whose contents fail their digest (they are lost)")
    r.set_defaults(func=cmd_index_repair)

    p = sub.add_parser("data", help="bundled datasets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    d = dsub.add_parser("list", help="list bundled datasets with counts and licences")
    d.set_defaults(func=cmd_data_list)

    p = sub.add_parser("eval", help="evaluate a model or baseline on a dataset split")
    p.add_argument("--model", required=True, help="bm25, minilm, a registered name or a saved model folder; "
                   "hybrid:NAME fuses that model's ranking with BM25's")
    p.add_argument("--data", required=True, help="BEIR folder or bundled set name (see `searchr3 data list`)")
    p.add_argument("--split", default="test")
    p.add_argument("--reasoning", default="off", choices=["off", "on", "both"])
    p.add_argument("--max-queries", type=int, help="evaluate a fixed random sample of N queries")
    p.add_argument("--max-docs", type=int, help="search a sampled corpus of N documents: the evaluated queries' "
                   "judged ones plus random others (bounded runs; scores only compare on the same sample)")
    p.add_argument("--output", help="results JSON to write")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--no-cache", action="store_true", help="do not read or write cached vectors and traces")
    p.add_argument("--batch-size", type=int, help="texts per forward pass (searchr3 models)")
    p.add_argument("--max-length", type=int, help="tokens of text kept per document/query (searchr3 models; "
                   "default: the model's saved setting)")
    p.add_argument("--config", help="YAML file whose `hybrid:` section sets the fusion of a hybrid: model "
                   "(see configs/hybrid.yaml; default: its documented defaults)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("report", help="compare result files in one table and a bar chart")
    p.add_argument("results", nargs="+", help="results JSON files from `searchr3 eval`")
    p.add_argument("--output", required=True, help="Markdown file to write (the PNG goes beside it)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("card", help="(re)write a trained model's README.md, with results from `searchr3 eval`")
    p.add_argument("model", help="a model folder written by `searchr3 train`")
    p.add_argument("--name", help="the name the card uses (default: the folder name)")
    p.add_argument("--results", nargs="*", default=[], help="results JSON files from `searchr3 eval`, "
                   "reference model first (significance marks compare with it)")
    p.add_argument("--init-label", help="Stage-2 cards: which model the run started from, where its recorded "
                   "init name now loads a later release")
    p.set_defaults(func=cmd_card)

    add_train_commands(sub)

    p = sub.add_parser("search", help="search an index (it remembers its model)")
    p.add_argument("queries", nargs="+", help="one or more queries")
    p.add_argument("--index", required=True, help="index folder from `searchr3 index build`")
    p.add_argument("-k", type=int, default=10, help="hits per query")
    p.add_argument("--reasoning", action="store_true", help="reason about the query before embedding it")
    p.add_argument("--hybrid", action="store_true", help="fuse the dense ranking with BM25 over the index's "
                   "stored texts (how: the `hybrid:` section of --config, see configs/hybrid.yaml)")
    p.add_argument("--max-new-tokens", type=int, help="reasoning budget in tokens")
    p.add_argument("--json", action="store_true", help="print one JSON object per query")
    _add_model_options(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("serve", help="HTTP service: OpenAI-style embeddings, search, document upserts")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"registered name or saved model folder (default {DEFAULT_MODEL})")
    p.add_argument("--index", required=True, help="index folder (created empty if missing; each write is a committed SQLite transaction)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--api-key", help="clients must send 'Authorization: Bearer KEY' (default: $SEARCHR3_API_KEY, "
                   "which keeps the key out of the process list)")
    _add_model_options(p)  # --config: a YAML with `embed:` and `serve:` sections (see configs/serve.yaml)
    p.set_defaults(func=cmd_serve)
    return parser


def _short_warning(message, category, filename, lineno, line=None) -> str:
    return f"searchr3: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _short_warning  # one readable line, not the library's source line
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as e:
        from .store import StoreError  # an index folder that cannot be read or written, named

        if not isinstance(e, (FileNotFoundError, ValueError, TypeError, KeyError, MissingExtra, StoreError)):
            raise
        print(f"searchr3: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
