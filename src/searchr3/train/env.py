"""The Stage-2 retrieval environment: rewards rollouts by ranking a corpus whose vectors are
kept fresh *locally* instead of re-encoding the whole corpus after every policy update.

The policy changes a little each step, so every cached document vector goes slightly stale.
Only a few documents decide a batch's rewards: the queries' positives and whatever the
rollout vectors currently rank near the top. Each step the environment re-encodes exactly
that *affected region* (positives, each rollout's top-k, and their neighbours in a
document graph, since a stale neighbour of a top document is the likeliest to move into
the top) with the current policy, writes the vectors back, refreshes any stale document the
refresh let into a top-k, recomputes the refreshed documents' graph neighbours, and then computes
rewards over the whole corpus (the positive's rank, its margin, nDCG@k). A full
re-encode happens every `full_every` steps, or at once when the refreshed documents moved
more than `drift_bound` (1 − mean cosine of old and new vectors). `refresh="full"` re-encodes
everything every step: the exact reference.

The environment never sees the model: it calls `encode(doc_indices) -> (n, H) vectors`, so
the trainer decides how (batched, sharded across ranks) and tests can use stand-ins.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import faiss
import numpy as np

from . import reward
from .reward import GAINS, REWARDS  # for the config's fields: its `reward` field hides the module there

Encoder = Callable[[Sequence[int]], np.ndarray]


@dataclass
class EnvConfig:
    """Environment settings (the `env:` section of configs/rl.yaml)."""

    # local | full (re-encode the whole corpus every step: the exact reference)
    refresh: str = field(default="local", metadata={"choices": ("local", "full")})
    top_k: int = field(default=20, metadata={"ge": 1})  # each rollout's current top-k join the affected region
    neighbours: int = field(default=4, metadata={"ge": 0})  # graph neighbours added per affected document (0: none)
    # exact kNN graph (FAISS flat) or hnsw (FAISS HNSW, for large corpora)
    graph: str = field(default="exact", metadata={"choices": ("exact", "hnsw")})
    full_every: int = field(default=100, metadata={"ge": 0})  # full re-encode every R steps (0: only on drift)
    # full re-encode at once when the refreshed documents drifted more (1 - mean cosine)
    drift_bound: float = field(default=0.05, metadata={"ge": 0})
    # the ranking reward: ndcg (nDCG@reward_k), rank (piecewise on the positive's rank over 1..rank_depth)
    # or reciprocal_rank (over the whole corpus); nDCG@reward_k is logged whichever is used
    reward: str = field(default="rank", metadata={"choices": REWARDS})
    rank_depth: int = field(default=100, metadata={"gt": 10})
    margin_weight: float = field(default=0.1, metadata={"ge": 0})  # weight of the bounded similarity-margin term
    margin_scale: float = field(default=0.05, metadata={"gt": 0})  # margin / scale goes through tanh
    reward_k: int = field(default=10, metadata={"ge": 1})  # nDCG@k
    # DCG form: linear (trec_eval) or exponential (2^rel - 1)
    gain: str = field(default="linear", metadata={"choices": GAINS})
    # after the refresh, a stale document that entered some rollout's top-k is refreshed too, up to this many rounds
    fresh_rounds: int = field(default=3, metadata={"ge": 0})
    format_penalty: float = field(default=0.5, metadata={"ge": 0})  # subtracted when the embed token had to be forced
    length_penalty: float = field(default=0.0, metadata={"ge": 0})  # per reasoning token beyond length_free
    length_free: int = field(default=64, metadata={"ge": 0})
    # every M steps compare cached rewards with an exact re-encode (0: never)
    fidelity_every: int = field(default=0, metadata={"ge": 0})

    def __post_init__(self) -> None:
        if self.refresh not in ("local", "full"):
            raise ValueError(f"refresh must be local or full, got {self.refresh!r}")
        if self.graph not in ("exact", "hnsw"):
            raise ValueError(f"graph must be exact or hnsw, got {self.graph!r}")
        if self.reward not in reward.REWARDS:
            raise ValueError(f"reward must be one of {reward.REWARDS}, got {self.reward!r}")
        if self.gain not in reward.GAINS:
            raise ValueError(f"gain must be one of {reward.GAINS}, got {self.gain!r}")
        if self.top_k < self.reward_k:
            raise ValueError(f"top_k ({self.top_k}) must be >= reward_k ({self.reward_k}): the documents that "
                             "decide the reward must be refreshed")


@dataclass
class StepResult:
    """What one environment step did and found."""

    rewards: np.ndarray  # shaped reward per rollout
    ndcg: np.ndarray  # nDCG@k per rollout (logged whichever reward is used)
    ranks: np.ndarray  # rank of the query's best-scored positive over the whole corpus
    encodings: int  # documents re-encoded this step (not counting fidelity checks)
    full_refresh: bool
    drift: float  # 1 - mean cosine(old, new) over the documents refreshed this step
    stale_admitted: int = 0  # stale documents that entered a top-k after the refresh (and were refreshed too)
    seconds: dict[str, float] = field(default_factory=dict)  # encode / graph / rank time
    fidelity: dict[str, float] | None = None  # spearman and mean_abs_diff, on fidelity steps


def knn_graph(vectors: np.ndarray, k: int, kind: str = "exact") -> np.ndarray:
    """Each document's k nearest other documents by inner product, (N, k) int64 (-1 where fewer)."""
    n, dim = vectors.shape
    if k <= 0 or n <= 1:
        return np.zeros((n, 0), dtype=np.int64)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if kind == "exact":
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = max(64, 2 * k)
    index.add(x)
    _, ids = index.search(x, min(k + 1, n))
    out = np.full((n, k), -1, dtype=np.int64)
    for i, row in enumerate(ids):
        others = row[(row != i) & (row >= 0)][:k]
        out[i, :len(others)] = others
    return out


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k highest scores per row, best first, (R, k)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


class RetrievalEnv:
    """Document vectors, a neighbour graph, and the reward.

    Args:
        doc_ids: corpus document ids (row order of the vectors).
        encode: maps document row indices to current-policy vectors (L2-normalised).
        config: refresh policy and reward settings.
        state: a saved `state()` to continue from instead of encoding the corpus.
        agree: maps rows chosen here to the rows every process uses (rank 0's; default: as chosen).
    """

    def __init__(self, doc_ids: Sequence[str], encode: Encoder, config: EnvConfig | None = None,
                 state: dict[str, np.ndarray] | None = None, agree: Callable[[np.ndarray], np.ndarray] | None = None):
        self.config = config or EnvConfig()
        # Under data parallelism the rows to refresh are chosen once (rank 0) and broadcast: ranks
        # that chose for themselves could differ by rounding and then encode different documents.
        self.agree = agree or (lambda rows: rows)
        self.doc_ids = [str(d) for d in doc_ids]
        self.row = {d: i for i, d in enumerate(self.doc_ids)}
        if len(self.row) != len(self.doc_ids):
            raise ValueError("doc_ids contain a duplicate")
        self.encode = encode
        if state is not None:  # a checkpoint's cache: resuming must not re-encode the whole corpus
            self.set_state(state)
            return
        self.step_count = 0
        self.total_encodings = 0
        self.vectors = self._encode(range(len(self.doc_ids)))
        self.graph = knn_graph(self.vectors, self.config.neighbours, self.config.graph)

    def state(self) -> dict[str, np.ndarray]:
        """Everything a checkpoint needs to continue exactly: vectors, graph, counters."""
        return {"vectors": self.vectors, "graph": self.graph,
                "counters": np.array([self.step_count, self.total_encodings])}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `state()` returned (e.g. read back from an .npz file)."""
        if len(state["vectors"]) != len(self.doc_ids):
            raise ValueError(f"saved environment holds {len(state['vectors'])} documents, "
                             f"the corpus {len(self.doc_ids)}")
        self.vectors = np.asarray(state["vectors"], dtype=np.float32)
        self.graph = np.asarray(state["graph"])
        self.step_count, self.total_encodings = (int(x) for x in state["counters"])

    def __len__(self) -> int:
        return len(self.doc_ids)

    def _encode(self, rows: Sequence[int] | range) -> np.ndarray:
        rows = list(rows)
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        x = np.asarray(self.encode(rows), dtype=np.float32)
        if x.shape[0] != len(rows):
            raise ValueError(f"encode returned {x.shape[0]} vectors for {len(rows)} documents")
        return x

    # ------------------------------------------------------------------ ranking
    def top(self, vectors: np.ndarray, k: int, corpus: np.ndarray | None = None) -> np.ndarray:
        """Row indices of the k best documents per rollout vector, best first, (R, k)."""
        docs = self.vectors if corpus is None else corpus
        return top_rows(np.asarray(vectors, dtype=np.float32) @ docs.T, k)

    def positives(self, qrels: Mapping[str, int]) -> list[int]:
        return [self.row[d] for d, g in qrels.items() if g > 0 and d in self.row]

    def affected(self, qrels: Sequence[Mapping[str, int]], vectors: np.ndarray) -> np.ndarray:
        """The affected region: positives, each rollout's top-k under the cached vectors, and
        the graph neighbours of all of those. Sorted unique row indices."""
        rows = set()
        for rel in qrels:
            rows.update(self.positives(rel))
        rows.update(self.top(vectors, self.config.top_k).ravel().tolist())
        seeds = np.fromiter(rows, dtype=np.int64)
        if self.graph.shape[1]:
            neighbours = self.graph[seeds].ravel()
            rows.update(neighbours[neighbours >= 0].tolist())
        return np.array(sorted(rows), dtype=np.int64)

    # ------------------------------------------------------------------ refreshing
    def refresh(self, rows: np.ndarray) -> float:
        """Re-encode `rows` with the current policy and write them back; returns their drift."""
        if len(rows) == 0:
            return 0.0
        new = self._encode(rows)
        old = self.vectors[rows]
        drift = float(1.0 - np.mean(np.sum(old * new, axis=1)))
        self.vectors[rows] = new
        self.total_encodings += len(rows)
        return drift

    def full_refresh(self) -> float:
        """Re-encode the whole corpus and rebuild the neighbour graph; returns the drift."""
        drift = self.refresh(np.arange(len(self.doc_ids)))
        self.graph = knn_graph(self.vectors, self.config.neighbours, self.config.graph)
        return drift

    def update_graph(self, rows: np.ndarray) -> None:
        """Recompute the neighbours of `rows` from their fresh vectors (exact), so the graph follows the
        refreshed documents between full rebuilds instead of pointing where they used to be."""
        k = self.graph.shape[1]
        if not k or len(rows) == 0:
            return
        scores = self.vectors[rows] @ self.vectors.T
        scores[np.arange(len(rows)), rows] = -np.inf  # never its own neighbour
        top = top_rows(scores, k)
        self.graph[rows, :top.shape[1]] = top

    # ------------------------------------------------------------------ the step
    def rewards(self, qrels: Sequence[Mapping[str, int]], vectors: np.ndarray, forced: Sequence[bool],
                lengths: Sequence[int], corpus: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Rollouts ranked against `corpus` (default: the cache): {"shaped": the reward trained on,
        "base": the ranking reward before penalties, "ndcg": nDCG@k, "ranks": the positive's rank}."""
        c = self.config
        scores = np.asarray(vectors, dtype=np.float32) @ (self.vectors if corpus is None else corpus).T
        rankings = [[self.doc_ids[i] for i in row] for row in top_rows(scores, c.reward_k)]
        ndcg = reward.ndcg_rewards(qrels, rankings, c.reward_k, c.gain)
        ranks, margins = reward.positive_ranks(scores, [self.positives(rel) for rel in qrels])
        base = ndcg if c.reward == "ndcg" else reward.rank_rewards(ranks, c.reward, c.rank_depth)
        base = base + reward.margin_bonus(margins, c.margin_weight, c.margin_scale)
        shaped = reward.shaped_rewards(base, forced, lengths, c.format_penalty, c.length_penalty, c.length_free)
        return {"shaped": shaped, "base": base, "ndcg": ndcg, "ranks": ranks}

    def step(self, qrels: Sequence[Mapping[str, int]], vectors: np.ndarray, forced: Sequence[bool] | None = None,
             lengths: Sequence[int] | None = None) -> StepResult:
        """Refresh what this batch's rewards depend on, then reward each rollout.

        Call after each policy update, with one entry per rollout: its query's judgements, its
        vector, whether the token was forced and its reasoning length in tokens. The affected
        region is chosen on the cached vectors; a stale document that the refresh lets into some
        rollout's top-k is refreshed too (up to `fresh_rounds` times), so the documents that decide
        the reward are fresh; the refreshed documents' graph neighbours are recomputed.
        """
        c = self.config
        vectors = np.asarray(vectors, dtype=np.float32)
        n = len(vectors)
        forced = [False] * n if forced is None else list(forced)
        lengths = [0] * n if lengths is None else list(lengths)
        if not (len(qrels) == n == len(forced) == len(lengths)):
            raise ValueError("qrels, vectors, forced and lengths need one entry per rollout")
        self.step_count += 1
        before = self.total_encodings
        seconds: dict[str, float] = {}
        admitted = 0
        t = time.perf_counter()
        full = c.refresh == "full" or (c.full_every > 0 and self.step_count % c.full_every == 0)
        if full:
            drift = self.full_refresh()
        else:
            rows = self.agree(self.affected(qrels, vectors))
            seconds["select"] = time.perf_counter() - t
            t = time.perf_counter()
            drift = self.refresh(rows)
            if drift > c.drift_bound:  # the cache is too stale: re-encode the rest too
                self.refresh(np.setdiff1d(np.arange(len(self.doc_ids)), rows))
                self.graph = knn_graph(self.vectors, c.neighbours, c.graph)
                full = True
            else:
                for _ in range(c.fresh_rounds):
                    stale = self.agree(np.setdiff1d(self.top(vectors, c.top_k), rows))
                    if len(stale) == 0:
                        break
                    self.refresh(stale)
                    admitted += len(stale)
                    rows = np.union1d(rows, stale)
                self.update_graph(rows)
        seconds["encode"] = time.perf_counter() - t
        encodings = self.total_encodings - before
        t = time.perf_counter()
        scored = self.rewards(qrels, vectors, forced, lengths)
        seconds["reward"] = time.perf_counter() - t
        result = StepResult(scored["shaped"], scored["ndcg"], scored["ranks"], encodings, full, drift, admitted,
                            seconds)
        if c.fidelity_every and self.step_count % c.fidelity_every == 0 and not full:
            result.fidelity = self.check_fidelity(qrels, vectors, scored["base"])
        return result

    def check_fidelity(self, qrels: Sequence[Mapping[str, int]], vectors: np.ndarray,
                       cached: np.ndarray) -> dict[str, float]:
        """Ranking rewards on the cache vs after an exact full re-encode (whose vectors are then kept)."""
        exact = self._encode(range(len(self.doc_ids)))
        exact_base = self.rewards(qrels, vectors, [False] * len(vectors), [0] * len(vectors), corpus=exact)["base"]
        stale = float(1.0 - np.mean(np.sum(self.vectors * exact, axis=1)))
        self.vectors = exact  # paid for, so kept (the graph is left as is: it only picks neighbours)
        return {**reward.fidelity(cached, exact_base), "corpus_drift": stale, "encodings": len(self.doc_ids)}
