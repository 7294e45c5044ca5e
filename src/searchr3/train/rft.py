"""Retrieval-filtered reasoning: one round of rejection-sampling fine-tuning (`searchr3 train rft`).

A round (after O1 Embedder's retrieval-filtered thoughts and RAFT's rejection sampling):

1. encode each source's corpus, or a seeded sample of it that keeps every positive, with the
   model the round starts from;
2. for each training query, sample traces from that model and from the base model (which writes
   fluent analyses), with a short budget, plus the empty trace (the token at once);
3. score each candidate's vector, the round's model reading query + trace, with the dense ranking
   reward (`reward.py`) against the cached corpus;
4. keep per query the best candidate when it beats the empty trace by `keep_margin`, else the
   empty trace, so the model learns to emit the token at once where reasoning does not help;
5. fine-tune with the Stage-1 trainer on the kept set: L_SFT on trace and token and InfoNCE on
   the kept vectors (each query in reasoning form), plus the same queries in direct form so the
   direct vector does not drift.

Each phase leaves its result in the round folder (`rft/`), so a stopped round resumes where it
stopped; the next round starts from this one (`init:` its folder).
"""

from __future__ import annotations

import json
import os
import random
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import assets
from ..config import load_section
from ..data import Dataset, load_dataset
from ..modeling import EmbedConfig, SearchR3
from ..prompts import document_text
from . import reward
from .dedup import BUNDLED_TEST_SETS, SplitTexts, deduplicate, forbidden_texts
from .examples import Example, mine_examples, parse_source
from .loop import changed_settings, read_metrics
from .sft import SFTTrainer
from .sft_config import SFTConfig

ROUND_DIR = "rft"  # inside the round's output folder, beside the fine-tuned adapter


@dataclass
class RFTConfig:
    """One round's candidate generation and selection (configs/rft.yaml, section `rft`; the fine-tune's
    settings are its `sft` section)."""

    init: str = "searchr3-smollm2-135m-sft"  # the model the round starts from (a Stage-1 adapter or a round)
    sources: list[str] = field(default_factory=lambda: ["wiki-known-item:train", "scifact:train", "birco-wtb:dev"])
    queries: int = field(default=300, metadata={"ge": 1})  # per source: a seeded sample of its judged queries
    corpus_sample: int = field(default=3000, metadata={"ge": 0})  # documents per source, positives kept (0: all)
    candidates: int = field(default=2, metadata={"ge": 0})  # sampled traces per query from the round's model
    base_candidates: int = field(default=2, metadata={"ge": 0})  # ... and from the base model
    reasoning_tokens: int = field(default=32, metadata={"ge": 1})  # candidates' budget (LREM: 16-32 is best)
    temperature: float = field(default=0.8, metadata={"gt": 0})
    top_p: float = field(default=0.95, metadata={"gt": 0, "le": 1})
    keep_margin: float = field(default=0.02, metadata={"ge": 0})  # a trace is kept only if it beats empty by this
    reward: str = field(default="rank", metadata={"choices": ("rank", "reciprocal_rank")})
    rank_depth: int = field(default=100, metadata={"gt": 10})
    margin_weight: float = field(default=0.1, metadata={"ge": 0})
    margin_scale: float = field(default=0.05, metadata={"gt": 0})
    batch_queries: int = field(default=32, metadata={"ge": 1})  # generation batch; progress is saved after each
    dedup_against: list[str] = field(default_factory=lambda: list(BUNDLED_TEST_SETS))
    seed: int = field(default=0, metadata={"ge": 0})

    def __post_init__(self) -> None:
        for source in self.sources:
            parse_source(source)  # refuses test splits
        if self.candidates + self.base_candidates < 1:
            raise ValueError("candidates + base_candidates must be >= 1: a round needs traces to choose from")


def load_rft_config(path: str | os.PathLike) -> tuple[RFTConfig, SFTConfig]:
    return load_section(path, "rft", RFTConfig), load_section(path, "sft", SFTConfig)


def round_data(source: str, config: RFTConfig) -> Dataset:
    """A source's round: a seeded sample of its judged queries over its corpus, or a seeded sample of
    the corpus that keeps every document judged for them."""
    full = load_dataset(*parse_source(source))
    judged = sorted(q for q, rel in full.qrels.items() if any(g > 0 for g in rel.values()))
    qids = sorted(random.Random(f"{config.seed}|{source}").sample(judged, min(config.queries, len(judged))))
    return full.sample(qids, config.corpus_sample or None, config.seed)


def choose(rewards: np.ndarray, empty: int, margin: float) -> int:
    """Index of the candidate to keep: the best one if it beats the empty trace (at `empty`) by
    `margin`, else the empty trace.

    >>> choose(np.array([0.50, 0.58, 0.55]), empty=0, margin=0.05), choose(np.array([0.5, 0.52]), 0, 0.05)
    (1, 0)
    """
    others = [i for i in range(len(rewards)) if i != empty]
    best = max(others, key=lambda i: rewards[i]) if others else empty
    return best if rewards[best] >= rewards[empty] + margin else empty


class RFTRound:
    """Runs one round into `output`: corpus vectors, candidates, selection, then the fine-tune."""

    def __init__(self, config: RFTConfig, sft: SFTConfig, output: str | os.PathLike):
        self.config, self.sft, self.output = config, sft, Path(output)
        self.dir = self.output / ROUND_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        embed = EmbedConfig(max_length=sft.max_length, query_max_length=sft.query_max_length,
                            reasoning_tokens=config.reasoning_tokens, temperature=config.temperature,
                            top_p=config.top_p)
        self.model = SearchR3.from_pretrained(config.init, dtype="fp32", config=embed)
        self.model.model.eval()
        self.data = {s: round_data(s, config) for s in config.sources}
        summary = self.dir / "round.json"  # seconds are summed over the sessions a round takes
        saved = json.loads(summary.read_text()).get("seconds", {}) if summary.is_file() else {}
        self.seconds = {phase: saved.get(phase, 0.0) for phase in ("corpus", "candidates")}

    # ------------------------------------------------------------------ phase 1: corpus vectors
    def corpus_vectors(self, source: str) -> np.ndarray:
        """The round's model's vectors of the source's (sampled) corpus, cached in the round folder."""
        path = self.dir / f"corpus-{zlib.crc32(source.encode()):08x}.npz"
        ids = [d.id for d in self.data[source].corpus]
        if path.is_file():
            with np.load(path) as saved:
                if saved["ids"].tolist() == ids:
                    return saved["vectors"]
        t = time.perf_counter()
        vectors = self.model.embed_documents([document_text(d.title, d.text) for d in self.data[source].corpus],
                                             show_progress=True)
        np.savez(path, ids=np.array(ids), vectors=vectors)
        self.seconds["corpus"] += time.perf_counter() - t
        return vectors

    def _check_settings(self) -> None:
        """Refuse to continue a folder's candidates under other settings: old and new would mix silently."""
        path, now = self.dir / "settings.json", asdict(self.config)
        changed = changed_settings(json.loads(path.read_text()), now) if path.is_file() else []
        if changed:
            raise ValueError(f"{self.output} holds a round made with other settings ({', '.join(changed)}): "
                             "use a new output folder")
        path.write_text(json.dumps(now, indent=2) + "\n")

    # ------------------------------------------------------------------ phases 2-4: candidates and choice
    def candidates(self) -> list[dict]:
        """Every query's candidates with their rewards and the one kept; appended per batch to
        `rft/candidates.jsonl`, so a stopped round continues after the last finished batch."""
        c = self.config
        path = self.dir / "candidates.jsonl"
        self._check_settings()
        done = read_metrics(path)  # finished batches; a batch cut short by a stopped run is redone
        if path.is_file():  # rewritten so that a torn last line is not followed by the next batch
            path.write_text("".join(json.dumps(r) + "\n" for r in done))
        seen = {(r["source"], r["query_id"]) for r in done}
        base = None
        for source, data in self.data.items():
            todo = [q for q in sorted(data.queries) if (source, q) not in seen]
            if not todo:  # a resumed round does not re-encode a finished source's corpus
                continue
            corpus = self.corpus_vectors(source)
            rows = {d.id: i for i, d in enumerate(data.corpus)}
            for start in range(0, len(todo), c.batch_queries):
                t = time.perf_counter()
                qids = todo[start:start + c.batch_queries]
                texts = [data.queries[q] for q in qids]
                traces = [[] for _ in qids]  # per query: (origin, token ids ending in the embed token)
                for origin, n in (("self", c.candidates), ("base", c.base_candidates)):
                    if not n:
                        continue
                    if origin == "base" and base is None:
                        base = self._base_model()
                    model = self.model if origin == "self" else base
                    seeds = [zlib.crc32(f"{c.seed}|{origin}|{source}|{q}|{k}".encode()) for q in qids for k in range(n)]
                    results = model.reason([t for t in texts for _ in range(n)], sample=True, seed=seeds,
                                           max_new_tokens=c.reasoning_tokens, show_progress=False)
                    for i, r in enumerate(results):
                        traces[i // n].append((origin, list(r.token_ids)))  # ends in the token (emitted or appended)
                for i in range(len(qids)):
                    traces[i].insert(0, ("empty", [self.model.embed_token_id]))
                records = self._score(source, qids, texts, traces, corpus, rows)
                with path.open("a") as f:
                    f.writelines(json.dumps(r) + "\n" for r in records)
                done += records
                self.seconds["candidates"] += time.perf_counter() - t
                print(f"rft: {source}: {len(done)} queries scored")
        return done

    def _base_model(self) -> SearchR3:
        base = SearchR3.from_pretrained(self.model.base, dtype="fp32", config=self.model.config)
        base.model.eval()
        return base

    def _score(self, source, qids, texts, traces, corpus, rows) -> list[dict]:
        c = self.config
        prompts = [self.model.prompts.completed(self.model.prompts.reasoning(t), ids)
                   for t, cands in zip(texts, traces) for _, ids in cands]
        vectors = self.model.embed_prompts(prompts, show_progress=False)
        data = self.data[source]
        relevant = [[rows[d] for d, g in data.qrels[q].items() if g > 0 and d in rows]
                    for q, cands in zip(qids, traces) for _ in cands]
        ranks, margins = reward.positive_ranks(vectors @ corpus.T, relevant)
        scores = reward.rank_rewards(ranks, c.reward, c.rank_depth) + reward.margin_bonus(margins, c.margin_weight,
                                                                                          c.margin_scale)
        records, k = [], 0
        for q, cands in zip(qids, traces):
            r = scores[k:k + len(cands)]
            records.append({"source": source, "query_id": q, "kept": choose(r, 0, c.keep_margin),
                            "candidates": [{"from": origin, "ids": ids, "reward": float(r[j]), "rank": int(ranks[k + j])}
                                           for j, (origin, ids) in enumerate(cands)]})
            k += len(cands)
        return records

    # ------------------------------------------------------------------ phase 5: fine-tune
    def examples(self, records: list[dict]) -> tuple[list[Example], dict[str, list[int]]]:
        """Each query twice: in reasoning form with its kept trace (or the token at once), and direct."""
        c, sft = self.config, self.sft
        kept = {(r["source"], r["query_id"]): r["candidates"][r["kept"]]["ids"] for r in records}
        tests = [SplitTexts.load(name) for name in c.dedup_against]
        rng = random.Random(c.seed)
        examples, traces = [], {}
        for source, data in self.data.items():
            mined = mine_examples(data, source, sft.negatives, sft.neg_rank_min, sft.neg_rank_max, None, rng)
            mined, _ = deduplicate(mined, forbidden_texts(tests, data.path)) if tests else (mined, [])
            for e in mined:
                if (source, e.query_id) not in kept:
                    continue
                key = f"{source}|{e.query_id}"
                traces[key] = kept[(source, e.query_id)]
                examples.append(Example(source, key, e.query, e.positive_id, e.positive, e.negative_ids, e.negatives,
                                        e.relevant_ids))
                examples.append(Example(source, f"{key}|direct", e.query, e.positive_id, e.positive, e.negative_ids,
                                        e.negatives, e.relevant_ids))
        rng.shuffle(examples)
        return examples, traces

    def report(self, records: list[dict]) -> dict:
        """What the round chose, overall and per source: the share that kept a trace and what it gained."""
        out = {}
        for name, rs in [("all", records)] + [(s, [r for r in records if r["source"] == s]) for s in self.data]:
            if not rs:
                continue
            kept = [r for r in rs if r["kept"] != 0]
            gain = [r["candidates"][r["kept"]]["reward"] - r["candidates"][0]["reward"] for r in kept]
            out[name] = {"queries": len(rs), "reasoning_share": len(kept) / len(rs),
                         "gain_when_kept": float(np.mean(gain)) if gain else 0.0,
                         "empty_reward": float(np.mean([r["candidates"][0]["reward"] for r in rs])),
                         "best_reward": float(np.mean([max(x["reward"] for x in r["candidates"]) for r in rs])),
                         "kept_from": {o: sum(r["candidates"][r["kept"]]["from"] == o for r in rs)
                                       for o in ("empty", "self", "base")},
                         "kept_trace_tokens": float(np.mean([len(r["candidates"][r["kept"]]["ids"]) - 1 for r in kept]))
                         if kept else 0.0}
        return out

    def run(self, resume: bool = False) -> Path:
        records = self.candidates()
        summary = {"config": asdict(self.config), "selection": self.report(records), "seconds": self.seconds}
        (self.dir / "round.json").write_text(json.dumps(summary, indent=2) + "\n")
        examples, traces = self.examples(records)
        del self.model  # the fine-tune loads its own trainable copy
        # half the examples are in reasoning form (each query twice); a non-zero share also saves the
        # candidates' budget with the model, so it reasons at inference as it was trained
        sft = SFTConfig(**{**asdict(self.sft), "init": self.config.init, "sources": sorted(self.data),
                           "source_weights": {}, "reasoning_fraction": 0.5,
                           "reasoning_tokens": self.config.reasoning_tokens})
        return RoundTrainer(sft, self.output, examples, traces).train(resume=resume)


class RoundTrainer(SFTTrainer):
    """The Stage-1 trainer on a round's examples and kept traces; the round's own files stay in the folder."""

    keep_files = (*SFTTrainer.keep_files, ROUND_DIR)


def train_rft(config: RFTConfig, sft: SFTConfig, output: str | os.PathLike, resume: bool = False) -> Path:
    """Run one round into `output` (a loadable adapter, with the round's candidates and report in `rft/`)."""
    assets.resolve_model(config.init)  # fail before any work when the starting model is missing
    return RFTRound(config, sft, output).run(resume=resume)
