"""Stage-2 settings (configs/rl*.yaml, section `rl`) and the policy they start from."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from .. import assets
from ..config import load_section
from ..fingerprint import SEARCHR3_FILE
from ..modeling import EmbedConfig, SearchR3
from . import reward
from .env import EnvConfig
from .examples import parse_source

REFERENCE = "reference"  # name of the frozen copy of the initial adapter


@dataclass
class RLConfig:
    """Stage-2 settings (configs/rl.yaml, section `rl`; the environment's are in `env`)."""

    init: str = "searchr3-smollm2-135m-sft"  # Stage-1 adapter (or a base model) to start from
    data: str = "scifact:train"  # queries and judgements; never a test split
    max_queries: int = field(default=200, metadata={"ge": 1})  # a seeded sample of the split's queries
    # 0: the split's whole corpus; N: a pooled corpus (BM25 top-N of each query + positives)
    corpus_depth: int = field(default=0, metadata={"ge": 0})
    # with corpus_depth 0: a seeded sample of this many documents that keeps every judged one (0: the whole corpus)
    corpus_sample: int = field(default=0, metadata={"ge": 0})
    max_length: int = field(default=128, metadata={"ge": 1})  # tokens of query/document text
    # tokens of query text; None: what the init model saved (its queries are read as it was trained), else max_length
    query_max_length: int | None = field(default=None, metadata={"ge": 1})
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
    # advantages: std (GRPO: (r - mean) / std per group) or mean (Dr. GRPO: r - mean; a near-tie stays small)
    advantage: str = field(default="mean", metadata={"choices": reward.NORMS})
    # dynamic sampling (DAPO): a group whose rollouts all got the same reward is dropped and another query
    # drawn in its place, for up to this many rounds (0: keep every group)
    resample_rounds: int = field(default=2, metadata={"ge": 0})
    # Exploration branches (train/branches.py): of each group's G rollouts, the last `explore_members` are
    # drawn with the token barred for their first `explore_min_tokens` steps, so a policy that has learnt
    # to emit it at once still compares reasoning with its direct vector; advantages are taken within
    # each branch, and `w_decide` weighs a loss that teaches the first step to reason where the group's
    # reasoning beat its direct vector by more than `decide_margin` in mean reward. Off by default (0, so
    # runs saved before these settings existed continue unchanged).
    explore_members: int = field(default=0, metadata={"ge": 0})
    explore_min_tokens: int = field(default=0, metadata={"ge": 0})
    w_decide: float = field(default=0.0, metadata={"ge": 0})
    decide_margin: float = field(default=0.0, metadata={"ge": 0})
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
        if self.advantage not in reward.NORMS:
            raise ValueError(f"advantage must be one of {reward.NORMS}, got {self.advantage!r}")
        if self.explore_members:
            if self.group - self.explore_members < 1:
                raise ValueError("explore_members must leave at least one rollout per group drawn by the policy "
                                 "itself: the decision compares its direct vector with the forced reasoning")
            if not 1 <= self.explore_min_tokens <= self.reasoning_tokens:
                raise ValueError(f"explore_min_tokens must be 1 to the reasoning budget ({self.reasoning_tokens}), "
                                 f"got {self.explore_min_tokens}")
            if self.explore_min_tokens <= self.min_reasoning_tokens:
                raise ValueError(f"explore_min_tokens ({self.explore_min_tokens}) must exceed min_reasoning_tokens "
                                 f"({self.min_reasoning_tokens}), or the exploring branch explores nothing new")
        elif self.explore_min_tokens:
            raise ValueError("explore_min_tokens is set but explore_members is 0: no rollout would use it")
        if self.w_decide and self.min_reasoning_tokens:
            raise ValueError("w_decide needs min_reasoning_tokens 0: with a forced minimum no rollout can be "
                             "direct, so the reason-or-not decision has nothing to learn from")
        parse_source(self.data)  # refuses test splits


def load_rl_config(path: str | os.PathLike) -> tuple[RLConfig, EnvConfig]:
    return load_section(path, "rl", RLConfig), load_section(path, "env", EnvConfig)


def saved_query_max_length(init: str) -> int | None:
    """The query length the init model saved with its settings (None: it follows max_length).

    Stage 2 must read queries as the model it continues was trained to: before this, a run from a
    64-token-query round read them at max_length (256), and its test scores differed from the round's
    partly for that reason (docs/rl-v2.md).
    """
    meta = assets.resolve_model(init) / SEARCHR3_FILE
    return json.loads(meta.read_text()).get("config", {}).get("query_max_length") if meta.is_file() else None


def prepare_policy(config: RLConfig) -> tuple[SearchR3, bool]:
    """The trainable policy and whether a frozen reference adapter was loaded beside it."""
    from peft import LoraConfig, get_peft_model

    query_length = config.query_max_length or saved_query_max_length(config.init)
    embed = EmbedConfig(max_length=config.max_length, query_max_length=query_length,
                        reasoning_tokens=config.reasoning_tokens, min_reasoning_tokens=config.min_reasoning_tokens,
                        temperature=config.temperature, top_p=config.top_p)
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
