"""Stage-1 settings (configs/sft.yaml, section `sft`) and the schedule and inference settings they imply."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from ..config import load_section
from ..modeling import EmbedConfig
from .dedup import BUNDLED_TEST_SETS


@dataclass
class SFTConfig:
    """Stage-1 settings (configs/sft.yaml, section `sft`)."""

    # data
    init: str = "smollm2-135m-instruct"  # base model: registered name or folder
    sources: list[str] = field(default_factory=lambda: ["scifact:train", "birco-wtb:dev", "wiki-known-item:train"])
    max_per_source: int | None = field(default=None, metadata={"ge": 1})  # cap examples per source (None: all)
    # Mixing weight per source (every source named, each > 0): examples are drawn per source in
    # proportion to it (train/examples.py `mix`). Empty: sources pooled, so each counts by its size.
    source_weights: dict[str, float] = field(default_factory=dict)
    # Sets whose test split no training query or positive may equal (train/dedup.py); [] turns it off.
    dedup_against: list[str] = field(default_factory=lambda: list(BUNDLED_TEST_SETS))
    negatives: int = field(default=1, metadata={"ge": 0})  # BM25 hard negatives per query
    neg_rank_min: int = field(default=3, metadata={"ge": 0})  # skip BM25's top ranks (often unjudged positives)
    neg_rank_max: int = field(default=30, metadata={"ge": 1})
    max_length: int = field(default=256, metadata={"ge": 1})  # tokens of document text (saved with the model)
    query_max_length: int | None = field(default=None, metadata={"ge": 1})  # tokens of query text (None: max_length)
    reasoning_fraction: float = field(default=0.0, metadata={"ge": 0, "le": 1})  # share in reasoning form (own trace)
    reasoning_tokens: int = field(default=64, metadata={"ge": 1})  # budget of those self-generated traces
    # model
    lora_r: int = field(default=16, metadata={"ge": 0})  # 0 = full fine-tune
    lora_alpha: int = field(default=32, metadata={"ge": 1})
    lora_dropout: float = field(default=0.0, metadata={"ge": 0, "lt": 1})
    # loss (Search-R3: plain sum)
    w_sft: float = field(default=1.0, metadata={"ge": 0})
    w_kl: float = field(default=1.0, metadata={"ge": 0})
    w_infonce: float = field(default=1.0, metadata={"ge": 0})
    w_triplet: float = field(default=1.0, metadata={"ge": 0})
    w_token: float = field(default=0.0, metadata={"ge": 0})  # extra NLL on the token alone (module docstring)
    w_distill: float = field(default=0.0, metadata={"ge": 0})  # KL to the MiniLM teacher (0: none is loaded)
    teacher_tau: float = field(default=0.05, metadata={"gt": 0})  # the teacher's temperature τ_T (as τ by default)
    tau: float = field(default=0.05, metadata={"gt": 0})  # InfoNCE temperature τ
    margin: float = field(default=0.1, metadata={"ge": 0})  # triplet margin θ
    # optimisation
    steps: int = field(default=200, metadata={"ge": 1})
    batch_size: int = field(default=16, metadata={"ge": 2})  # queries per step (each: a positive + negatives)
    grad_accum: int = field(default=1, metadata={"ge": 1})  # micro-batches per step; batch_size must divide by it
    # batches sorted together by length, so padding wastes less (0: random batches; train/batching.py)
    length_window: int = field(default=0, metadata={"ge": 0})
    lr: float = field(default=2e-4, metadata={"gt": 0})  # LoRA; ~3e-5 for a full fine-tune
    weight_decay: float = field(default=0.0, metadata={"ge": 0})
    warmup_steps: int = field(default=10, metadata={"ge": 0})  # linear lr warm-up, after any token warm-up
    # token warm-up: the first steps of `steps` train only the token's row on L_token (`token_losses`)
    token_warmup_steps: int = field(default=0, metadata={"ge": 0})  # 0: none; its length is chosen on dev
    token_warmup_lr: float | None = field(default=None, metadata={"gt": 0})  # its constant lr (None: lr)
    max_grad_norm: float = field(default=1.0, metadata={"gt": 0})
    # autocast: auto (only where bf16 is native), on, off
    bf16: str = field(default="auto", metadata={"choices": ("auto", "on", "off")})
    seed: int = field(default=0, metadata={"ge": 0})
    # logging and evaluation
    log_every: int = field(default=1, metadata={"ge": 1})
    eval_every: int = field(default=50, metadata={"ge": 0})  # pooled dev nDCG@10 every N steps (0: never)
    dev: str = "wiki-known-item:dev"
    dev_queries: int = field(default=100, metadata={"ge": 1})
    dev_depth: int = field(default=20, metadata={"ge": 1})
    save_every: int = field(default=50, metadata={"ge": 0})  # checkpoint every N steps (0: only at the end)
    time_limit_minutes: float | None = field(default=None, metadata={"gt": 0})  # stop (and save) after this long

    def __post_init__(self) -> None:
        if not 0.0 <= self.reasoning_fraction <= 1.0:
            raise ValueError(f"reasoning_fraction must be in [0, 1], got {self.reasoning_fraction}")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size {self.batch_size} must divide by grad_accum {self.grad_accum}")
        if self.steps < 1 or self.batch_size < 2:
            raise ValueError("steps must be >= 1 and batch_size >= 2 (InfoNCE needs in-batch negatives)")
        if self.token_warmup_steps >= self.steps:
            raise ValueError(f"token_warmup_steps {self.token_warmup_steps} leaves none of the {self.steps} steps "
                             "for the full loss; raise steps")
        if self.bf16 not in ("auto", "on", "off"):
            raise ValueError(f"bf16 must be auto, on or off, got {self.bf16!r}")
        repeated = sorted({s for s in self.sources if self.sources.count(s) > 1})
        if repeated:
            raise ValueError(f"source {repeated[0]!r} is listed twice in sources (weigh it with source_weights)")
        weights = self.source_weights
        problems = ([f"{s!r} is not in sources" for s in sorted(set(weights) - set(self.sources))]
                    + [f"no weight for {s!r}" for s in self.sources if weights and s not in weights]
                    + [f"{s!r} has weight {w}" for s, w in weights.items() if not (math.isfinite(w) and w > 0)])
        if problems:
            raise ValueError("source_weights must give every source a weight > 0: " + "; ".join(problems))


def load_sft_config(path: str | os.PathLike) -> SFTConfig:
    return load_section(path, "sft", SFTConfig)


def lr_at(step: int, config: SFTConfig) -> float:
    """The token warm-up's constant rate, then linear warm-up to lr and cosine decay to 0 at `steps`."""
    if step < config.token_warmup_steps:
        return config.token_warmup_lr or config.lr
    step -= config.token_warmup_steps
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.token_warmup_steps - config.warmup_steps)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def embed_config(config: SFTConfig) -> EmbedConfig:
    """The inference settings a run trains under; saved with the model, so evaluation uses the same lengths
    (and, when it trains on traces, the reasoning budget they were cut at)."""
    budget = {"reasoning_tokens": config.reasoning_tokens} if config.reasoning_fraction > 0 else {}
    return EmbedConfig(max_length=config.max_length, query_max_length=config.query_max_length, **budget)
