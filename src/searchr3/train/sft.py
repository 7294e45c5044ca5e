"""Stage 1 — representation SFT: teach the model `<|embed_token|>`.

Loss = w_sft·L_SFT + w_kl·L_KL + w_nce·L_InfoNCE + w_triplet·L_Triplet (paper: all weights 1),
plus an optional w_token·L_token. L_SFT and L_KL are on the assistant turn of each query prompt
(the model learns to emit the token); InfoNCE and triplet are on the vectors read at the token.
L_token is L_SFT at the token's own positions: L_SFT is a mean over every assistant token, so
once reasoning traces are in the turn they outnumber the token and dilute what teaches it.
An optional token warm-up (`token_warmup_steps`) first trains the token's row alone on L_token, so
the untrained token's large L_SFT (gradient norm 54 against 7 without it) does not swamp
InfoNCE's first updates of the LoRA weights.
L_distill (w_distill; off by default, and then no teacher is loaded) is the KL from a frozen
teacher's (all-MiniLM-L6-v2) similarity distribution over each query's candidates to the student's.
Queries and documents go through the same prompt assembly and the same read-out as inference.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import random
import warnings
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import torch

from .. import assets, losses
from ..modeling import SearchR3
from ..precision import cpu_supports_bf16
from ..readout import embed_token_states
from ..prompts import Prompt, assistant_positions
from ..runtime import tune_malloc
from . import distributed
from .batching import epoch_batches, example_slots, prompt_lengths
from .examples import Example, PooledDev, TrainingSet, build_examples
from .loop import Schedule, Trainer, hardware_description
from .plots import plot_losses
from .sft_config import SFTConfig, embed_config, lr_at
from .teacher import Teacher
from .examples_file import EXAMPLES, data_key, read_examples, write_examples
from .traces_file import TRACES, read_traces, write_traces


def prepare_model(config: SFTConfig) -> SearchR3:
    """Load the base, make only the right parameters trainable (LoRA, or full with token-row embeddings).

    Starting from a saved LoRA adapter (e.g. the released one) with `lora_r > 0` continues that
    adapter, at its own rank; the KL reference is still the plain base (the adapter switched off).
    """
    embed = embed_config(config)
    if config.lora_r > 0:
        model = SearchR3.from_adapter_trainable(config.init, config=embed)
        if model is not None:
            saved = model.model.peft_config["default"]
            if (saved.r, saved.lora_alpha) != (config.lora_r, config.lora_alpha):
                warnings.warn(f"{config.init} is a LoRA adapter of r {saved.r}, alpha {saved.lora_alpha}: it "
                              f"keeps training at that rank; lora_r {config.lora_r} and lora_alpha "
                              f"{config.lora_alpha} are not used", stacklevel=2)
            return model
    model = SearchR3.from_pretrained(config.init, dtype="fp32", config=embed)
    if config.lora_r > 0:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules="all-linear", trainable_token_indices={"embed_tokens": [model.embed_token_id]})
        model.attach(get_peft_model(model.model, lora))
    else:
        # Full fine-tune, but the (tied) embedding matrix trains only the new token's row:
        # moving the other rows would also move the LM head.
        emb = model.model.get_input_embeddings().weight
        row = torch.zeros_like(emb[:, :1])
        row[model.embed_token_id] = 1.0
        emb.register_hook(lambda g: g * row)
    return model


class SFTTrainer(Trainer):
    """Runs Stage 1: batches, losses, optimiser; the loop (logs, checkpoints, resume) is `Trainer.train`."""

    name, config_file, plot_file = "sft", "sft_config.json", "loss.png"
    continues_saved = True  # a chunk committed without checkpoints continues from its adapter (loop.py)
    keep_files = (TRACES, EXAMPLES)

    def __init__(self, config: SFTConfig, output: str | os.PathLike, examples: list[Example] | None = None,
                 traces: dict[str, list[int]] | None = None):
        self.config, self.output = config, Path(output)
        tune_malloc()  # ~25% faster steps on CPU; see runtime.py
        self.accelerator = distributed.accelerator()
        if config.batch_size % (config.grad_accum * distributed.world()):
            raise ValueError(f"batch_size {config.batch_size} must divide by grad_accum × processes "
                             f"({config.grad_accum} × {distributed.world()})")
        torch.manual_seed(config.seed)
        self.model = prepare_model(config)
        self.data_report: dict[str, dict[str, int]] = {}  # per source: mined, deduplicated, kept, mixed
        if examples is None:
            # mixed by weight: exactly the examples the run's steps use, so traces and lengths are computed for no more
            data = self._training_set()
            examples, self.data_report = data.examples, data.report
        self.examples = examples
        if len(self.examples) < config.batch_size:
            raise ValueError(f"{len(self.examples)} training examples, fewer than one batch of {config.batch_size}")
        # {query id: trace ids ending in the token}: those queries train in reasoning form (given, e.g. an RFT
        # round's kept traces, or the base model's own for a share of them)
        self.traces = traces if traces is not None else self._self_traces() if config.reasoning_fraction > 0 else {}
        self.reference = None
        if config.w_kl > 0 and config.lora_r == 0:
            self.reference = copy.deepcopy(self.model.model).eval().requires_grad_(False)
        self.teacher = Teacher(device=self.model.device) if config.w_distill > 0 else None
        params = [p for p in self.model.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        # accelerate wraps the forward pass (DDP averages the gradients over processes) and the optimiser.
        self.forward, self.optimizer = self.accelerator.prepare(distributed.Forward(self.model.model, self._forward),
                                                                optimizer)
        native = self.model.device.type == "cuda" or cpu_supports_bf16()
        self.use_bf16 = config.bf16 == "on" or (config.bf16 == "auto" and native)
        self.autocast = torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=self.use_bf16)
        self.step = 0
        self._epoch: tuple[int, list[list[int]]] = (-1, [])  # (epoch, its batches), made on first use
        self.dev = PooledDev(config.dev, config.dev_queries, config.dev_depth, config.seed, reasoning=False)

    def _training_set(self) -> TrainingSet:
        """The run's examples: read back from its folder when a chunk of the same run built them, else built."""
        c = self.config
        args = (c.sources, c.negatives, c.neg_rank_min, c.neg_rank_max, c.max_per_source, c.seed, c.source_weights,
                c.dedup_against, c.steps * c.batch_size)
        key = data_key(list(args), c.sources, c.dedup_against)
        data = read_examples(self.output / EXAMPLES, key)
        if data is None:
            data = build_examples(*args[:-1], total=args[-1])
            if distributed.is_main():
                write_examples(self.output / EXAMPLES, data, key)
        return data

    def _self_traces(self) -> dict[str, list[int]]:
        """Greedy traces of the base model for a seeded share of the queries (cached on disk).

        Those queries are trained in reasoning form: prompt + the model's own analysis + the
        token, so L_SFT teaches it to end its reasoning with the token and L_KL keeps the
        analysis close to what the base model writes.
        """
        from ..cache import ReasoningCache

        queries = sorted({(e.query_id, e.query) for e in self.examples})
        chosen = random.Random(self.config.seed).sample(queries, round(self.config.reasoning_fraction * len(queries)))
        saved = read_traces(self.output / TRACES, self.config.reasoning_tokens)
        if all(qid in saved for qid, _ in chosen):  # a run continued in a later session: no regeneration
            return {qid: saved[qid] for qid, _ in chosen}
        results = ReasoningCache().reason(self.trace_model(), [q for _, q in chosen],
                                          max_new_tokens=self.config.reasoning_tokens, show_progress=True)
        traces = {qid: r.token_ids for (qid, _), r in zip(chosen, results)}
        if distributed.is_main():
            write_traces(self.output / TRACES, traces, self.config.reasoning_tokens)
        return traces

    def trace_model(self) -> SearchR3:
        """The model that writes the traces: always the base, which is also L_KL's reference.

        A run that continues a trained adapter must not write them itself: an adapter trained
        without traces emits the token at once, so its traces would be empty. The base is loaded
        on its own (not the adapter switched off) so the trace cache is keyed by its weights.
        """
        base = Path(assets.resolve_model(self.model.base)).resolve()
        if base == Path(assets.resolve_model(self.config.init)).resolve():  # a fresh start: a zero LoRA over the base
            return self.model
        return SearchR3.from_pretrained(self.model.base, dtype="fp32", device=str(self.model.device),
                                        config=embed_config(self.config))

    def query_prompt(self, example: Example) -> Prompt:
        """The training prompt of a query: direct, or reasoning with its self-generated trace."""
        prompts = self.model.prompts
        if example.query_id in self.traces:
            return prompts.completed(prompts.reasoning(example.query), self.traces[example.query_id])
        return prompts.query(example.query)

    # ------------------------------------------------------------------ data order
    def batch_at(self, step: int) -> list[Example]:
        """The examples of a step: a fixed per-epoch order (grouped by length with `length_window`),
        so a resumed run sees the same data."""
        c = self.config
        epoch, index = divmod(step, len(self.examples) // c.batch_size)
        if self._epoch[0] != epoch:
            lengths = self.example_lengths if c.length_window else [0] * len(self.examples)
            self._epoch = (epoch, epoch_batches(lengths, c.batch_size, c.length_window, c.seed * 1000 + epoch))
        return [self.examples[i] for i in self._epoch[1][index]]

    @functools.cached_property
    def example_lengths(self) -> list[int]:
        """Each example's `example_slots` as trained (queries with their traces): what batches group by."""
        return [example_slots(q, d) for q, d in prompt_lengths(self.examples, self.model.prompts, self.query_prompt)]

    # ------------------------------------------------------------------ one step
    def _reference_logits(self, ids, mask, pos, rows, positions) -> torch.Tensor:
        with torch.no_grad():
            if self.reference is not None:
                hidden = self.reference.get_decoder()(input_ids=ids, attention_mask=mask,
                                                       position_ids=pos).last_hidden_state
                return self.reference.get_output_embeddings()(hidden[rows, positions])
            with self.model.model.disable_adapter():
                hidden, _ = self.model.hidden_states(ids, mask, pos)
                return self.model.model.get_output_embeddings()(hidden[rows, positions])

    def _forward(self, q_ids, q_mask, q_pos, d_ids, d_mask, d_pos, rows, positions):
        """Query and document hidden states (B, T, H) and the LM head's logits (N, V) at the assistant
        positions: every use of the trained weights that gradients flow back through (run by `self.forward`)."""
        m = self.model
        with self.autocast:
            q_hidden, _ = m.hidden_states(q_ids, q_mask, q_pos)
            d_hidden, _ = m.hidden_states(d_ids, d_mask, d_pos)
            logits = m.model.get_output_embeddings()(q_hidden[rows, positions])  # (N, V)
        return q_hidden, d_hidden, logits

    def losses(self, batch: list[Example]) -> dict[str, torch.Tensor]:
        """All loss terms of one global micro-batch on this rank's shard; `total` is their weighted sum.

        Each rank embeds its shard's queries and documents; document vectors are gathered
        from all ranks, so InfoNCE and triplet see the whole global batch as candidates.
        """
        c, m = self.config, self.model
        w = distributed.world()
        shards = [batch[r * len(batch) // w:(r + 1) * len(batch) // w] for r in range(w)]
        local = shards[distributed.rank()]
        q_prompts = [self.query_prompt(e) for e in local]
        doc_ids = [d for part in shards for d in [e.positive_id for e in part] + [n for e in part for n in e.negative_ids]]
        doc_texts = [e.positive for e in local] + [t for e in local for t in e.negatives]
        q_ids, q_mask, q_pos = m.collate([p.ids for p in q_prompts], side="right")
        d_ids, d_mask, d_pos = m.collate([m.prompts.document(t).ids for t in doc_texts], side="right")
        rows, positions, targets = assistant_positions(q_prompts)
        q_hidden, d_hidden, logits = self.forward(q_ids, q_mask, q_pos, d_ids, d_mask, d_pos, rows, positions)
        queries = embed_token_states(q_hidden, q_ids, m.embed_token_id, [e.query_id for e in local])
        docs = distributed.gather(embed_token_states(d_hidden, d_ids, m.embed_token_id))  # (world·n_docs, H)
        offset = distributed.rank() * len(doc_texts)  # this shard's documents start here in the gather
        positive = offset + torch.arange(len(local), device=queries.device)
        exclude = torch.tensor([[d in e.relevant_ids for d in doc_ids] for e in local], device=queries.device)
        target = torch.tensor(targets, device=logits.device)
        token_at = target == m.embed_token_id
        out = {"sft": losses.sft_nll(logits, target),
               "token": losses.sft_nll(logits[token_at], target[token_at]),
               "infonce": losses.info_nce(queries, docs, positive, c.tau, exclude),
               "triplet": losses.triplet(queries, docs, positive, c.margin, exclude)}
        # KL only where the base has a distribution worth keeping: not on the new token itself,
        # which the base never saw and which L_SFT must teach.
        kl_at = [i for i, t in enumerate(targets) if t != m.embed_token_id]
        if c.w_kl > 0 and kl_at:
            ref = self._reference_logits(q_ids, q_mask, q_pos, [rows[i] for i in kl_at], [positions[i] for i in kl_at])
            out["kl"] = losses.kl_to_reference(logits[kl_at], ref)
        else:
            out["kl"] = logits.sum() * 0.0
        if c.w_distill > 0:  # the teacher scores this shard's queries against the same global candidates
            texts = [t for part in shards for t in [e.positive for e in part] + [t for e in part for t in e.negatives]]
            teacher = self.teacher.scores([e.query for e in local], texts).to(queries.device)  # (B, N)
            own = torch.nn.functional.one_hot(positive, len(doc_ids)).bool()  # in both distributions
            out["distill"] = losses.distill_kl(queries, docs, teacher, c.tau, c.teacher_tau, exclude & ~own)
        else:
            out["distill"] = queries.sum() * 0.0
        out["total"] = (c.w_sft * out["sft"] + c.w_kl * out["kl"] + c.w_infonce * out["infonce"]
                        + c.w_triplet * out["triplet"] + c.w_token * out["token"] + c.w_distill * out["distill"])
        out["tokens"] = torch.tensor(float(q_mask.sum() + d_mask.sum()))
        out["padding"] = 1 - out["tokens"] / (q_mask.numel() + d_mask.numel())  # share of the batch that is padding
        return out

    def token_losses(self, batch: list[Example]) -> dict[str, torch.Tensor]:
        """L_token alone, for the token warm-up: only the token's row learns, from queries alone.

        The token is each prompt's last id, so the hidden states that predict it never saw its
        embedding: L_token reaches the row only through the (tied) LM head. The backbone runs
        without autograd, on this rank's queries only (no documents, no reference model), so a
        step costs one forward pass over them and the LoRA weights get no gradient.
        """
        m, w = self.model, distributed.world()
        local = batch[distributed.rank() * len(batch) // w:(distributed.rank() + 1) * len(batch) // w]
        prompts = [self.query_prompt(e) for e in local]
        ids, mask, pos = m.collate([p.ids for p in prompts], side="right")
        rows, positions, targets = assistant_positions(prompts)
        at = [i for i, t in enumerate(targets) if t == m.embed_token_id]
        with self.autocast:
            with torch.no_grad():
                hidden, _ = m.hidden_states(ids, mask, pos)
            logits = m.model.get_output_embeddings()(hidden[[rows[i] for i in at], [positions[i] for i in at]])
        token = losses.sft_nll(logits, torch.full((len(at),), m.embed_token_id, device=logits.device))
        return {"token": token, "total": token, "tokens": torch.tensor(float(mask.sum())),
                "padding": 1 - mask.sum() / mask.numel()}

    def train_step(self) -> dict[str, float]:
        """One optimiser step over `batch_size` examples in `grad_accum` micro-batches (the token
        warm-up's loss for the first `token_warmup_steps`, then the full loss)."""
        c = self.config
        self.model.model.train()
        batch = self.batch_at(self.step)
        micro = c.batch_size // c.grad_accum
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, c)
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        warmup = self.step < c.token_warmup_steps
        for k in range(c.grad_accum):
            part = batch[k * micro:(k + 1) * micro]
            if warmup:  # outside the DDP wrapper (no LoRA weight is used): the token row's gradient is averaged below
                terms = self.token_losses(part)
                self.accelerator.backward(terms["total"] / c.grad_accum)
            else:  # DDP all-reduces the accumulated gradients in the last micro-batch's backward only
                with nullcontext() if k == c.grad_accum - 1 else self.accelerator.no_sync(self.forward):
                    terms = self.losses(part)
                    self.accelerator.backward(terms["total"] / c.grad_accum)
            for name, value in terms.items():
                v = float(value.detach())
                v = v * distributed.world() if name == "tokens" else distributed.mean(v) / c.grad_accum
                totals[name] = totals.get(name, 0.0) + v
        params = [p for p in self.model.model.parameters() if p.requires_grad]
        if warmup and distributed.world() > 1:
            for p in params:
                if p.grad is not None:
                    p.grad = self.accelerator.reduce(p.grad, reduction="mean")
        totals["grad_norm"] = float(self.accelerator.clip_grad_norm_(params, c.max_grad_norm))
        totals["skipped"] = float(not math.isfinite(totals["grad_norm"]))
        if totals["skipped"]:  # one bad batch must not turn every weight into NaN
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.optimizer.step()
        self.step += 1
        totals["lr"] = self.optimizer.param_groups[0]["lr"]
        return totals

    # ------------------------------------------------------------------ what the shared loop asks
    @property
    def schedule(self) -> Schedule:
        c = self.config
        return Schedule(c.steps, c.eval_every, c.save_every, c.log_every, c.time_limit_minutes)

    def settings(self) -> dict:
        return asdict(self.config)

    def summary(self) -> dict:
        """Examples per source and hardware, for the card."""
        examples: dict[str, int] = {}
        for e in self.examples:
            examples[e.source] = examples.get(e.source, 0) + 1
        return {"examples": examples, "data": self.data_report, "hardware": hardware_description(self.model.device)
                + (", bf16 autocast" if self.use_bf16 else ", fp32")}

    def progress(self, record: dict) -> dict[str, str]:
        shown = ("total", "sft", "kl", "infonce", "triplet", "token") + (("distill",) if self.config.w_distill else ())
        return {k: f"{record[k]:.3f}" for k in shown if k in record}

    def plot(self, metrics: Path, path: Path) -> None:
        plot_losses(metrics, path)


def train_sft(config: SFTConfig, output: str | os.PathLike, resume: bool = False) -> Path:
    """Run Stage 1 with `config`, writing a loadable model to `output`."""
    return SFTTrainer(config, output).train(resume=resume)
