"""Stage 2 — GRPO on reasoning + embedding, rewarded by ranking in `RetrievalEnv`.

Each step: sample G reasoning completions per query from the current policy; one forward
pass over prompt + completion gives both the log-probs of the generated tokens and the
vector at the embed token (the shared read-out); the environment refreshes the affected
part of the corpus and rewards each rollout with nDCG@k (minus a format penalty when the
token had to be forced); advantages are group-normalised; the loss is the clipped policy
gradient on the generated tokens + β·KL to the frozen reference policy (the Stage-1 model)
+ an optional auxiliary InfoNCE on the rollout vectors, so the vector also gets a direct
gradient.

The policy is a LoRA adapter. Starting from a Stage-1 adapter, that adapter keeps training
and a frozen copy of it is the reference; starting from a plain base, a fresh adapter
trains and the reference is the base (the adapter switched off).
"""

from __future__ import annotations

import math
import os
import random
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import assets, losses
from .._extras import pyplot
from ..config import load_section
from ..data import Dataset, load_dataset
from ..decoding import bar_ending
from ..modeling import EmbedConfig, SearchR3
from ..readout import embed_token_states
from ..prompts import document_text
from ..runtime import tune_malloc
from . import distributed, reward
from .env import EnvConfig, RetrievalEnv
from .examples import PooledDev, parse_source, pooled_dev_set
from .loop import Schedule, Trainer, hardware_description, read_metrics

REFERENCE = "reference"  # name of the frozen copy of the initial adapter


@dataclass
class RLConfig:
    """Stage-2 settings (configs/rl.yaml, section `rl`; the environment's are in `env`)."""

    init: str = "searchr3-smollm2-135m-sft"  # Stage-1 adapter (or a base model) to start from
    data: str = "scifact:train"  # queries and judgements; never a test split
    max_queries: int = field(default=200, metadata={"ge": 1})  # a seeded sample of the split's queries
    # 0: the split's whole corpus; N: a pooled corpus (BM25 top-N of each query + positives)
    corpus_depth: int = field(default=0, metadata={"ge": 0})
    max_length: int = field(default=128, metadata={"ge": 1})  # tokens of query/document text
    reasoning_tokens: int = field(default=32, metadata={"ge": 1})  # budget of each rollout's reasoning
    min_reasoning_tokens: int = field(default=0, metadata={"ge": 0})  # bar the token before this many (saved)
    group: int = field(default=4, metadata={"ge": 2})  # G: rollouts per query
    batch_queries: int = field(default=4, metadata={"ge": 1})  # queries per step
    temperature: float = field(default=1.0, metadata={"gt": 0})
    top_p: float = field(default=1.0, metadata={"gt": 0, "le": 1})
    lora_r: int = field(default=16, metadata={"ge": 1})  # for a fresh adapter (starting from a base model)
    lora_alpha: int = field(default=32, metadata={"ge": 1})
    lr: float = field(default=1e-5, metadata={"gt": 0})
    warmup_steps: int = field(default=5, metadata={"ge": 0})
    steps: int = field(default=100, metadata={"ge": 1})
    max_grad_norm: float = field(default=1.0, metadata={"gt": 0})
    # μ: optimiser steps on each batch of rollouts (the clip only binds when > 1)
    updates: int = field(default=1, metadata={"ge": 1})
    clip_eps: float = field(default=0.2, metadata={"gt": 0})  # ε of the clipped surrogate
    beta: float = field(default=0.04, metadata={"ge": 0})  # weight of KL to the reference policy
    w_aux: float = field(default=0.0, metadata={"ge": 0})  # weight of the auxiliary InfoNCE on rollout vectors
    tau: float = field(default=0.05, metadata={"gt": 0})  # its temperature
    seed: int = field(default=0, metadata={"ge": 0})
    eval_every: int = field(default=25, metadata={"ge": 0})  # pooled dev nDCG@10 (reasoning) every N steps (0: never)
    dev: str = "wiki-known-item:dev"
    dev_queries: int = field(default=40, metadata={"ge": 1})
    dev_depth: int = field(default=10, metadata={"ge": 1})
    save_every: int = field(default=25, metadata={"ge": 0})  # checkpoint every N steps (0: only at the end)
    time_limit_minutes: float | None = field(default=None, metadata={"gt": 0})

    def __post_init__(self) -> None:
        if self.group < 2:
            raise ValueError("group must be >= 2: GRPO's advantages compare rollouts of one query")
        if self.steps < 1 or self.batch_queries < 1 or self.updates < 1:
            raise ValueError("steps, batch_queries and updates must be >= 1")
        parse_source(self.data)  # refuses test splits


def load_rl_config(path: str | os.PathLike) -> tuple[RLConfig, EnvConfig]:
    return load_section(path, "rl", RLConfig), load_section(path, "env", EnvConfig)


def prepare_policy(config: RLConfig) -> tuple[SearchR3, bool]:
    """The trainable policy and whether a frozen reference adapter was loaded beside it."""
    from peft import LoraConfig, get_peft_model

    embed = EmbedConfig(max_length=config.max_length, reasoning_tokens=config.reasoning_tokens,
                        min_reasoning_tokens=config.min_reasoning_tokens, temperature=config.temperature,
                        top_p=config.top_p)
    model = SearchR3.from_adapter_trainable(config.init, config=embed)
    if model is None:
        model = SearchR3.from_pretrained(config.init, dtype="fp32", config=embed)
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, target_modules="all-linear",
                          trainable_token_indices={"embed_tokens": [model.embed_token_id]})
        model.attach(get_peft_model(model.model, lora))
        return model, False
    peft = model.model
    peft.load_adapter(assets.resolve_model(config.init), adapter_name=REFERENCE, is_trainable=False)
    peft.set_adapter("default")  # trainable again; the reference stays frozen
    return model, True


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
        return RetrievalEnv([d.id for d in self.data.corpus], self.encode_documents, self.env_config, state)

    def _load_data(self) -> Dataset:
        c = self.config
        if c.corpus_depth:
            return pooled_dev_set(c.data, c.max_queries, c.corpus_depth, c.seed)
        name, split = parse_source(c.data)
        full = load_dataset(name, split)
        qids = sorted(random.Random(c.seed).sample(sorted(full.qrels), min(c.max_queries, len(full.qrels))))
        return Dataset(full.name, full.path, split, full.corpus, {q: full.queries[q] for q in qids},
                       {q: full.qrels[q] for q in qids})

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
        (run seed, step, query, index), so it is the same however the batch is sharded."""
        c = self.config
        texts = [self.data.queries[q] for q in qids for _ in range(c.group)]
        seeds = [zlib.crc32(f"{c.seed}|{self.step}|{q}|{g}".encode()) for q in qids for g in range(c.group)]
        self.model.model.eval()
        results = self.model.reason(texts, sample=True, seed=seeds, show_progress=False)
        return texts, results

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
        return ids, mask, pos, gather.to(dev), targets.to(dev), action.to(dev)

    def token_logps(self, hidden: torch.Tensor, gather: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Log-probs (R, T) of the generated tokens under the sampling temperature."""
        h = hidden[torch.arange(hidden.shape[0], device=hidden.device)[:, None], gather]  # (R, T, H)
        logits = self.model.model.get_output_embeddings()(h).float() / self.config.temperature
        m = self.config.min_reasoning_tokens
        if m:  # the first m tokens were sampled with the ending barred: score them the same way
            logits[:, :m] = bar_ending(logits[:, :m], self.model.embed_token_id, self.model.tokenizer.eos_token_id)
        return torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)

    def _forward(self, ids, mask, pos, gather, targets) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs (R, T) of the generated tokens and the vectors (R, H) at the embed token, from one
        forward pass over prompt + completion (run by `self.forward`)."""
        hidden, _ = self.model.hidden_states(ids, mask, pos)
        return self.token_logps(hidden, gather, targets), embed_token_states(hidden, ids, self.model.embed_token_id)

    def reference_logps(self, ids, mask, pos, gather, targets) -> torch.Tensor:
        peft = self.model.model
        with torch.no_grad():
            if self.has_reference:
                peft.set_adapter(REFERENCE)
                try:
                    hidden, _ = self.model.hidden_states(ids, mask, pos)
                    return self.token_logps(hidden, gather, targets)
                finally:
                    peft.set_adapter("default")
            with peft.disable_adapter():
                hidden, _ = self.model.hidden_states(ids, mask, pos)
                return self.token_logps(hidden, gather, targets)

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
    def train_step(self) -> dict[str, float]:
        c = self.config
        batch = self.batch_at(self.step)
        mine = batch[distributed.rank()::distributed.world()]
        for group in self.optimizer.param_groups:
            group["lr"] = c.lr * min(1.0, (self.step + 1) / max(1, c.warmup_steps))
        texts, results = self.rollouts(mine)
        ids, mask, pos, gather, targets, action = self.sequences(texts, results)
        self.model.model.eval()  # no dropout: the loss must score tokens as the sampler did
        logp, vectors = self.forward(ids, mask, pos, gather, targets)  # the vectors from the same forward pass
        # Every rank runs the same environment step on the gathered rollouts of the whole batch.
        all_vectors = distributed.gather_array(vectors.detach().cpu().numpy())
        forced = distributed.gather_list([r.forced for r in results])
        lengths = distributed.gather_list([len(r.token_ids) - 1 for r in results])
        all_q = distributed.gather_list([q for q in mine for _ in range(c.group)])
        result = self.env.step([self.data.qrels[q] for q in all_q], all_vectors, forced, lengths)
        advantages = reward.group_advantages(result.rewards, c.group)
        offset = distributed.rank() * len(texts)  # equal shares, gathered in rank order
        adv = torch.tensor(advantages[offset:offset + len(texts)], dtype=torch.float32, device=logp.device)
        ref = self.reference_logps(ids, mask, pos, gather, targets)
        old_logp = logp.detach()
        params = [p for p in self.model.model.parameters() if p.requires_grad]
        for update in range(c.updates):
            if update:  # later updates re-score the same rollouts under the changed policy
                logp, vectors = self.forward(ids, mask, pos, gather, targets)
            terms = {"policy": losses.grpo_policy_loss(logp, old_logp, adv, action, c.clip_eps),
                     "kl": losses.grpo_kl(logp, ref, action)}
            terms["aux"] = (self.aux_infonce(vectors, mine, all_vectors, all_q) if c.w_aux > 0
                            else torch.zeros((), device=logp.device))
            total = terms["policy"] + c.beta * terms["kl"] + c.w_aux * terms["aux"]
            self.optimizer.zero_grad(set_to_none=True)
            self.accelerator.backward(total)
            grad_norm = float(self.accelerator.clip_grad_norm_(params, c.max_grad_norm))
            if math.isfinite(grad_norm):
                self.optimizer.step()
            if update == 0:
                first = {"loss": total, **terms, "grad_norm": grad_norm}
        self.step += 1
        out = {k: distributed.mean(float(v.detach())) if torch.is_tensor(v) else v for k, v in first.items()}
        out.update({"reward_mean": float(result.rewards.mean()), "reward_std": float(result.rewards.std()),
                    "ndcg_mean": float(result.ndcg.mean()), **reward.group_stats(result.ndcg, c.group),
                    "forced_rate": float(np.mean(forced)),
                    "length_mean": float(np.mean(lengths)), "encodings": result.encodings, "corpus": len(self.env),
                    "full_refresh": result.full_refresh, "drift": result.drift,
                    "lr": self.optimizer.param_groups[0]["lr"]})
        if result.fidelity:
            out.update({f"fidelity_{k}": v for k, v in result.fidelity.items()})
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


def plot_rewards(metrics: Path, path: Path) -> None:
    """Reward (mean ± std over rollouts), KL and dev nDCG@10 against step, as a PNG."""
    plt = pyplot("train")

    every = read_metrics(metrics)
    records = [r for r in every if "reward_mean" in r]
    if not records:
        return
    steps = np.array([r["step"] for r in records])
    mean = np.array([r["reward_mean"] for r in records])
    std = np.array([r["reward_std"] for r in records])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax.plot(steps, mean, label="reward (mean over rollouts)")
    ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.plot(steps, [r["ndcg_mean"] for r in records], label="nDCG@k", lw=1)
    window = min(8, len(records))  # each step sees other queries: the running mean shows the trend
    if window > 1:
        running = np.convolve(mean, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], running, color="k", lw=2, label=f"reward, running mean of {window} steps")
    forced = [r["forced_rate"] for r in records if "forced_rate" in r]
    if len(forced) == len(records):
        ax.plot(steps, forced, color="C2", lw=1, ls="--", label="share of rollouts with the token forced")
    ax.set_xlabel("step")
    ax.legend()
    dev = [r for r in every if "dev_ndcg@10" in r]
    ax2.plot(steps, [r["kl"] for r in records], color="grey", lw=1, label="KL to reference")
    ax2.set_xlabel("step")
    ax2.set_ylabel("KL")
    if dev:
        right = ax2.twinx()
        right.plot([r["step"] for r in dev], [r["dev_ndcg@10"] for r in dev], marker="o", color="C3")
        right.set_ylabel("pooled dev nDCG@10 (reasoning)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train_rl(config: RLConfig, env_config: EnvConfig, output: str | os.PathLike, resume: bool = False) -> Path:
    """Run Stage 2, writing a loadable model (a LoRA adapter) to `output`."""
    return GRPOTrainer(config, env_config, output).train(resume=resume)
