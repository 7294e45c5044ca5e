"""Stage 2 — GRPO on reasoning + embedding, rewarded by ranking in `RetrievalEnv`.

Each step: sample G reasoning completions per query from the current policy; the decode loop
also reads each rollout's vector at the embed token, and the environment rewards those (after
refreshing the affected part of the corpus): a dense rank reward plus a similarity margin, or
nDCG@k. A group whose rollouts all tied is dropped and another query drawn (dynamic sampling).
Advantages are centred per group (optionally divided by its std). One forward pass with grad
over prompt + completion then gives the log-probs of the generated tokens, under the same
`LogitsProcessor` the sampler drew from, and the vectors for an optional auxiliary InfoNCE. The
loss is the clipped policy gradient + β·KL to the frozen reference policy (the Stage-1 model) +
w_aux·InfoNCE. With exploration branches (train/branches.py) part of each group reasons by force,
advantages are taken within each branch, and w_decide weighs a loss on the first step's choice to
reason or emit the token at once.

The policy is a LoRA adapter. Starting from a Stage-1 adapter, that adapter keeps training
and a frozen copy of it is the reference; starting from a plain base, a fresh adapter
trains and the reference is the base (the adapter switched off).
"""

from __future__ import annotations

import math
import os
import random
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .. import losses
from ..data import Dataset, load_dataset
from ..readout import embed_token_states
from ..prompts import document_text
from ..runtime import tune_malloc
from . import branches, distributed, reward
from .env import EnvConfig, RetrievalEnv
from .examples import PooledDev, parse_source, pooled_dev_set
from .loop import Schedule, Trainer, hardware_description
from .plots import plot_rewards
from .rl_config import REFERENCE, RLConfig, load_rl_config, prepare_policy

__all__ = ["GRPOTrainer", "RLConfig", "load_rl_config", "prepare_policy", "train_rl"]


class Group(NamedTuple):
    """One query's G rollouts and what the environment gave them."""

    query: str
    results: list  # decoding.Reasoning: trace ids, whether forced, the decode loop's vector
    rewards: np.ndarray  # shaped
    ndcg: np.ndarray
    ranks: np.ndarray  # of the best positive over the whole corpus


@dataclass
class Groups:
    """A step's groups after dynamic sampling, and what collecting them took."""

    chosen: list[Group]
    dropped_share: float  # groups dropped as tied / groups rolled out
    stats: dict  # groups seen, rounds, encodings, stale documents admitted, full refresh, drift
    fidelity: dict[str, float] | None


class GRPOTrainer(Trainer):
    """Runs Stage 2: rollouts, environment, rewards, GRPO loss; the loop (logs, checkpoints, resume) is
    `Trainer.train`."""

    name, config_file, plot_file = "grpo", "rl_config.json", "reward.png"

    def __init__(self, config: RLConfig, env_config: EnvConfig, output: str | os.PathLike,
                 dataset: Dataset | None = None):
        self.config, self.env_config, self.output = config, env_config, Path(output)
        tune_malloc()
        self.accelerator = distributed.accelerator()
        torch.manual_seed(config.seed)
        self.model, self.has_reference = prepare_policy(config)
        self.processor = self.model.logits_processor()  # rollouts are drawn from it; the loss scores them with it
        if config.batch_queries % distributed.world():
            raise ValueError(f"batch_queries {config.batch_queries} must divide by the {distributed.world()} "
                             "processes (each takes an equal share)")
        self.data = dataset or self._load_data()
        in_corpus = {d.id for d in self.data.corpus}
        # A query without a relevant document in the corpus always scores 0: no signal, so left out.
        self.query_ids = sorted(q for q, rel in self.data.qrels.items()
                                if any(g > 0 and d in in_corpus for d, g in rel.items()))
        if len(self.query_ids) < config.batch_queries:
            raise ValueError(f"{len(self.query_ids)} queries, fewer than one batch of {config.batch_queries}")
        self.doc_texts = [document_text(d.title, d.text) for d in self.data.corpus]
        self._env: RetrievalEnv | None = None  # built on first use: a resumed run loads it instead
        params = [p for p in self.model.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
        # accelerate wraps the forward pass (DDP averages the gradients over processes) and the optimiser.
        self.forward, self.optimizer = self.accelerator.prepare(distributed.Forward(self.model.model, self._forward),
                                                                optimizer)
        self.step = 0
        self.dev = PooledDev(config.dev, config.dev_queries, config.dev_depth, config.seed, reasoning=True)

    @property
    def env(self) -> RetrievalEnv:
        """The retrieval environment; the first use encodes the corpus with the current policy."""
        if self._env is None:
            self._env = self._make_env()
        return self._env

    def _make_env(self, state: dict[str, np.ndarray] | None = None) -> RetrievalEnv:
        return RetrievalEnv([d.id for d in self.data.corpus], self.encode_documents, self.env_config, state,
                            agree=distributed.broadcast_array)

    def _load_data(self) -> Dataset:
        c = self.config
        if c.corpus_depth:
            return pooled_dev_set(c.data, c.max_queries, c.corpus_depth, c.seed)
        name, split = parse_source(c.data)
        full = load_dataset(name, split)
        qids = sorted(random.Random(c.seed).sample(sorted(full.qrels), min(c.max_queries, len(full.qrels))))
        return full.sample(qids, c.corpus_sample or None, c.seed)

    # ------------------------------------------------------------------ environment encoder
    def encode_documents(self, rows) -> np.ndarray:
        """Current-policy vectors of corpus rows, no grad; sharded over ranks, gathered in order."""
        rows = list(rows)
        mine = rows[distributed.rank()::distributed.world()]
        was_training = self.model.model.training
        self.model.model.eval()
        vectors = self.model.embed_documents([self.doc_texts[r] for r in mine],
                                             show_progress=len(mine) >= 256)
        self.model.model.train(was_training)
        gathered = distributed.gather_array(vectors)  # rank 0's rows, then rank 1's, ...
        w = distributed.world()
        order = np.concatenate([np.arange(k, len(rows), w) for k in range(w)]).astype(np.int64)
        out = np.empty_like(gathered)
        out[order] = gathered
        return out

    # ------------------------------------------------------------------ data order
    def batch_at(self, step: int) -> list[str]:
        """The query ids of a step: a fixed per-epoch shuffle, so a resumed run sees the same data."""
        b = self.config.batch_queries
        per_epoch = len(self.query_ids) // b
        epoch, index = divmod(step, per_epoch)
        order = list(self.query_ids)
        random.Random(self.config.seed * 1000 + epoch).shuffle(order)
        return order[index * b:(index + 1) * b]

    # ------------------------------------------------------------------ rollouts
    def rollouts(self, qids: list[str]):
        """G sampled completions per query (this rank's share). Each rollout has its own seed
        (run seed, step, query, index), so it is the same however the batch is sharded. With
        exploration branches, a group's last `explore_members` are drawn with the token barred
        for their first steps (train/branches.py)."""
        c = self.config
        texts = [self.data.queries[q] for q in qids for _ in range(c.group)]
        seeds = [zlib.crc32(f"{c.seed}|{self.step}|{q}|{g}".encode()) for q in qids for g in range(c.group)]
        self.model.model.eval()
        results: list = [None] * len(texts)
        floors = [self.floor(i) for i in range(len(texts))]
        for floor in sorted(set(floors)):
            rows = [i for i, f in enumerate(floors) if f == floor]
            drawn = self.model.reason([texts[i] for i in rows], sample=True, seed=[seeds[i] for i in rows],
                                      show_progress=False, min_tokens=floor)
            for i, r in zip(rows, drawn):
                results[i] = r
        return texts, results

    def floor(self, row: int) -> int:
        """The minimum reasoning length rollout `row` of a batch of whole groups was drawn under."""
        c = self.config
        exploring = c.explore_members and row % c.group >= c.group - c.explore_members
        return c.explore_min_tokens if exploring else self.processor.min_tokens

    def sequences(self, texts: list[str], results) -> tuple[torch.Tensor, ...]:
        """Right-padded prompt + completion ids; for each rollout, the positions whose logits
        chose each of its tokens, those tokens, and a mask of real choices (R, T)."""
        rows, acted, chosen = [], [], []
        eos = self.model.tokenizer.eos_token_id
        for text, r in zip(texts, results):
            prompt = self.model.prompts.reasoning(text)
            rows.append(prompt.ids + list(r.token_ids))
            # The policy's own choices: every generated token, except an embed token appended when
            # the budget ran out. When it ended its turn, its last choice was end-of-turn (which we
            # replaced by the embed token): that choice is scored, so the format penalty reaches it.
            choices = list(r.token_ids[:-1]) + ([r.token_ids[-1]] if r.stop == "token" else
                                                [eos] if r.stop == "eos" else [])
            chosen.append(choices)
            acted.append((len(prompt.ids), len(choices)))
        ids, mask, pos = self.model.collate(rows, side="right")
        T = max(1, max(n for _, n in acted))
        gather = torch.zeros((len(rows), T), dtype=torch.long)  # positions whose logits predict each token
        targets = torch.zeros((len(rows), T), dtype=torch.long)
        action = torch.zeros((len(rows), T), dtype=torch.bool)
        for i, (start, n) in enumerate(acted):
            for t in range(n):
                gather[i, t] = start + t - 1
                targets[i, t] = chosen[i][t]
                action[i, t] = True
        dev = self.model.device
        floor = torch.tensor([[self.floor(i)] for i in range(len(rows))], device=dev)  # (R, 1)
        return ids, mask, pos, gather.to(dev), targets.to(dev), action.to(dev), floor

    def token_logps(self, hidden: torch.Tensor, gather: torch.Tensor, targets: torch.Tensor,
                    floor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs (R, T) of the generated tokens under the distribution each was drawn from (the
        `LogitsProcessor` at the row's minimum length), and (R, 2) the first step's log-probs of
        emitting the embed token and of anything else: the decision to reason or not, taken on the
        plain softmax (no temperature, top-p or minimum) so it stays defined where sampling bars it."""
        h = hidden[torch.arange(hidden.shape[0], device=hidden.device)[:, None], gather]  # (R, T, H)
        logits = self.model.model.get_output_embeddings()(h)
        steps = torch.arange(targets.shape[1], device=logits.device)  # token t was chosen at reasoning step t
        logp = self.processor.log_probs(logits, steps, keep=targets, min_tokens=floor)
        first = branches.decision_logps(logits[:, 0], self.model.embed_token_id)
        return logp.gather(-1, targets[..., None]).squeeze(-1), first

    def _forward(self, ids, mask, pos, gather, targets, floor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probs (R, T) of the generated tokens, the first step's decision log-probs (R, 2), and the
        vectors (R, H) at the embed token, from one forward pass over prompt + completion (run by `self.forward`)."""
        hidden, _ = self.model.hidden_states(ids, mask, pos)
        logp, first = self.token_logps(hidden, gather, targets, floor)
        return logp, first, embed_token_states(hidden, ids, self.model.embed_token_id)

    def reference_logps(self, ids, mask, pos, gather, targets, floor) -> torch.Tensor:
        peft = self.model.model
        with torch.no_grad():
            if self.has_reference:
                peft.set_adapter(REFERENCE)
                try:
                    hidden, _ = self.model.hidden_states(ids, mask, pos)
                    return self.token_logps(hidden, gather, targets, floor)[0]
                finally:
                    peft.set_adapter("default")
            with peft.disable_adapter():
                hidden, _ = self.model.hidden_states(ids, mask, pos)
                return self.token_logps(hidden, gather, targets, floor)[0]

    def aux_infonce(self, vectors: torch.Tensor, qids: list[str], all_vectors: np.ndarray,
                    all_qids: list[str]) -> torch.Tensor:
        """InfoNCE of this rank's rollout vectors against the cached vectors of the whole batch's
        positives and current top documents (the same candidates on every rank; no grad through
        the documents)."""
        c, env = self.config, self.env
        first_pos = {q: env.positives(self.data.qrels[q])[0] for q in all_qids}
        top = env.top(all_vectors, env.config.reward_k).ravel().tolist()
        cands = sorted(set(first_pos.values()) | set(top))
        col = {r: i for i, r in enumerate(cands)}
        candidates = torch.from_numpy(env.vectors[cands]).to(vectors.device)
        mine = [q for q in qids for _ in range(c.group)]
        positive = torch.tensor([col[first_pos[q]] for q in mine], device=vectors.device)
        relevant = [{env.row[d] for d, g in self.data.qrels[q].items() if g > 0 and d in env.row} for q in mine]
        exclude = torch.tensor([[r in rel for r in cands] for rel in relevant], device=vectors.device)
        return losses.info_nce(vectors, candidates, positive, c.tau, exclude)

    # ------------------------------------------------------------------ one step
    def collect(self) -> Groups:
        """This step's `batch_queries` groups of rollouts, rewarded with the decode loop's vectors.

        Dynamic sampling: a group whose rollouts all got the same reward carries no signal; it is
        dropped and another query (a seeded draw, the same on every rank) rolled out in its place,
        for up to `resample_rounds` rounds. If groups are still short, dropped ones fill the batch
        (their advantages are zero). Every rank sees every rollout (gathered), so all take the
        same decisions.
        """
        c = self.config
        pending, used = self.batch_at(self.step), set()
        kept: list[Group] = []
        tied: list[Group] = []
        stats = {"seen": 0, "rounds": 0, "encodings": 0, "stale_admitted": 0, "full_refresh": False, "drift": 0.0}
        fidelity = None
        for round_ in range(c.resample_rounds + 1):
            used.update(pending)
            mine = pending[distributed.rank()::distributed.world()]
            _, results = self.rollouts(mine)
            got, every = distributed.gather_list(mine), distributed.gather_list(results)  # all ranks' rollouts
            by_query = {q: every[i * c.group:(i + 1) * c.group] for i, q in enumerate(got)}  # back in drawn order
            qids = [q for q in pending for _ in range(c.group)]
            results = [r for q in pending for r in by_query[q]]
            result = self.env.step([self.data.qrels[q] for q in qids], np.stack([r.vector for r in results]),
                                   [r.forced for r in results], [len(r.token_ids) - 1 for r in results])
            stats["rounds"] += 1
            stats["encodings"] += result.encodings
            stats["stale_admitted"] += result.stale_admitted
            stats["full_refresh"] |= result.full_refresh
            stats["drift"] = max(stats["drift"], result.drift)
            fidelity = result.fidelity or fidelity
            ties = reward.tied_groups(result.rewards, c.group) if c.resample_rounds else np.zeros(len(qids) // c.group,
                                                                                                   dtype=bool)
            for g in range(len(qids) // c.group):
                rows = slice(g * c.group, (g + 1) * c.group)
                group = Group(qids[rows.start], results[rows], result.rewards[rows], result.ndcg[rows], result.ranks[rows])
                (tied if ties[g] else kept).append(group)
            stats["seen"] += len(ties)
            short = c.batch_queries - len(kept)
            if short <= 0:
                break
            fresh = [q for q in self.query_ids if q not in used]
            if not fresh or round_ == c.resample_rounds:
                break
            pending = random.Random(f"{c.seed}|{self.step}|{round_}").sample(fresh, min(short, len(fresh)))
        dropped = stats["seen"] - len(kept)
        chosen = (kept + tied)[:c.batch_queries]
        return Groups(chosen, dropped / max(1, stats["seen"]), stats, fidelity)

    def train_step(self) -> dict[str, float]:
        c = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = c.lr * min(1.0, (self.step + 1) / max(1, c.warmup_steps))
        groups = self.collect()
        rewards = np.concatenate([g.rewards for g in groups.chosen])
        all_q = [g.query for g in groups.chosen for _ in range(c.group)]
        all_results = [r for g in groups.chosen for r in g.results]
        all_vectors = np.stack([r.vector for r in all_results])
        lengths = np.array([len(r.token_ids) - 1 for r in all_results])
        # within each branch; with no exploring members, over the whole group (plain GRPO)
        advantages = branches.branch_advantages(rewards, c.group, c.explore_members, c.advantage)
        forced = np.array([r.forced for r in all_results])
        labels, gains = branches.decision_labels(rewards, lengths, forced, c.group, c.decide_margin)
        # this rank's share of the chosen groups (batch_queries divides by the processes)
        share = len(groups.chosen) // distributed.world()
        lo, hi = distributed.rank() * share * c.group, (distributed.rank() + 1) * share * c.group
        mine = all_q[lo:hi:c.group]  # one id per group
        texts = [self.data.queries[q] for q in all_q[lo:hi]]
        ids, mask, pos, gather, targets, action, floor = self.sequences(texts, all_results[lo:hi])
        self.model.model.eval()  # no dropout: the loss must score tokens as the sampler did
        logp, token_first, vectors = self.forward(ids, mask, pos, gather, targets, floor)
        adv = torch.tensor(advantages[lo:hi], dtype=torch.float32, device=logp.device)
        decide = torch.tensor(labels[lo // c.group:hi // c.group], dtype=torch.float32, device=logp.device)
        ref = self.reference_logps(ids, mask, pos, gather, targets, floor)
        old_logp = logp.detach()
        params = [p for p in self.model.model.parameters() if p.requires_grad]
        for update in range(c.updates):
            if update:  # later updates re-score the same rollouts under the changed policy
                logp, token_first, vectors = self.forward(ids, mask, pos, gather, targets, floor)
            terms = {"policy": losses.grpo_policy_loss(logp, old_logp, adv, action, c.clip_eps),
                     "kl": losses.grpo_kl(logp, ref, action)}
            terms["aux"] = (self.aux_infonce(vectors, mine, all_vectors, all_q) if c.w_aux > 0
                            else torch.zeros((), device=logp.device))
            # a group's rollouts share its prompt, so its first row's first step is the decision
            decision = token_first[::c.group].unbind(-1)  # (log p(token), log p(anything else))
            terms["decide"] = (branches.decision_loss(*decision, decide) if c.w_decide > 0
                               else torch.zeros((), device=logp.device))
            total = terms["policy"] + c.beta * terms["kl"] + c.w_aux * terms["aux"] + c.w_decide * terms["decide"]
            self.optimizer.zero_grad(set_to_none=True)
            self.accelerator.backward(total)
            grad_norm = float(self.accelerator.clip_grad_norm_(params, c.max_grad_norm))
            if math.isfinite(grad_norm):
                self.optimizer.step()
            if update == 0:
                first = {"loss": total, **terms, "grad_norm": grad_norm}
            drift = losses.policy_drift(logp, old_logp, action, c.clip_eps)  # the last update's
        self.step += 1
        out = {k: distributed.mean(float(v.detach())) if torch.is_tensor(v) else v for k, v in first.items()}
        ndcg = np.concatenate([g.ndcg for g in groups.chosen])
        out.update({"reward_mean": float(rewards.mean()), "reward_std": float(rewards.std()),
                    "ndcg_mean": float(ndcg.mean()), **reward.group_stats(ndcg, c.group),
                    "rank_median": float(np.median(np.concatenate([g.ranks for g in groups.chosen]))),
                    "dropped_share": groups.dropped_share, "rounds": groups.stats["rounds"],
                    "forced_rate": float(np.mean(forced)),
                    "length_mean": float(lengths.mean()),
                    "p_token_first": distributed.mean(float(token_first[::c.group, 0].detach().exp().mean())),
                    **{k: groups.stats[k] for k in ("encodings", "stale_admitted", "full_refresh", "drift")},
                    "corpus": len(self.env), "lr": self.optimizer.param_groups[0]["lr"],
                    **{k: distributed.mean(v) for k, v in drift.items()}})
        if not np.isnan(labels).all():  # groups holding both direct and reasoning rollouts
            out.update({"reason_label_share": float(np.nanmean(labels)), "reason_gain": float(np.nanmean(gains))})
        if groups.fidelity:
            out.update({f"fidelity_{k}": v for k, v in groups.fidelity.items()})
        return out

    # ------------------------------------------------------------------ what the shared loop asks
    @property
    def schedule(self) -> Schedule:
        c = self.config
        return Schedule(c.steps, c.eval_every, c.save_every, 1, c.time_limit_minutes)

    def settings(self) -> dict:
        return {"rl": asdict(self.config), "env": asdict(self.env_config)}

    def summary(self) -> dict:
        return {"queries": len(self.query_ids), "corpus": len(self.data.corpus),
                "hardware": hardware_description(self.model.device) + ", fp32"}

    def progress(self, record: dict) -> dict[str, str]:
        return {"reward": f"{record['reward_mean']:.3f}±{record['reward_std']:.3f}", "kl": f"{record['kl']:.4f}",
                "forced": f"{record['forced_rate']:.2f}", "enc": str(record["encodings"])}

    def plot(self, metrics: Path, path: Path) -> None:
        plot_rewards(metrics, path)

    def save_extra(self, folder: Path) -> None:
        """The environment's vectors and graph, so a resumed run need not re-encode the corpus."""
        np.savez(folder / "env.npz", **self.env.state())

    def restore_extra(self, folder: Path) -> None:
        with np.load(folder / "env.npz") as saved:
            self._env = self._make_env({k: saved[k] for k in saved.files})


def train_rl(config: RLConfig, env_config: EnvConfig, output: str | os.PathLike, resume: bool = False) -> Path:
    """Run Stage 2, writing a loadable model (a LoRA adapter) to `output`."""
    return GRPOTrainer(config, env_config, output).train(resume=resume)
