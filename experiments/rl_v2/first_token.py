"""How likely is a model to emit the embed token at once, with no reasoning? GRPO can only learn where
reasoning pays if its rollouts sometimes reason: with top-p 0.95, a query whose first-step probability
of the token is above 0.95 has the token as its whole nucleus, so every rollout of it is the direct
vector and its group ties.

    python experiments/rl_v2/first_token.py MODEL [MODEL ...] [--queries 64]

Prints, per model, the first-step probability of the embed token over the first N wiki-known-item
train queries (the GRPO v2 training source): mean, median, min, and the share above top-p 0.95.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from searchr3.data import load_dataset
from searchr3.modeling import SearchR3

TOP_P = 0.95  # configs/rl-v2.yaml


def first_step_probability(model: SearchR3, queries: list[str], batch: int = 16) -> np.ndarray:
    """P(embed token | reasoning prompt) at the first generated position, per query."""
    out = []
    head = model.model.get_output_embeddings()
    with torch.no_grad():
        for i in range(0, len(queries), batch):
            rows = [model.prompts.reasoning(q).ids for q in queries[i:i + batch]]
            ids, mask, pos = model.collate(rows, side="left")
            hidden, _ = model.hidden_states(ids.to(model.device), mask.to(model.device), pos.to(model.device))
            logits = head(hidden[:, -1]).float()
            out += torch.softmax(logits, dim=-1)[:, model.embed_token_id].tolist()
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--queries", type=int, default=64)
    args = parser.parse_args()
    queries = list(load_dataset("wiki-known-item", split="train").queries.values())[:args.queries]
    print(f"first-step P(embed token), {len(queries)} wiki-known-item train queries")
    print("| model | mean | median | min | share > top-p 0.95 |\n|---|---:|---:|---:|---:|")
    for name in args.models:
        p = first_step_probability(SearchR3.from_pretrained(name, dtype="fp32"), queries)
        print(f"| {name} | {p.mean():.3f} | {np.median(p):.3f} | {p.min():.3f} | {(p > TOP_P).mean():.2f} |")


if __name__ == "__main__":
    main()
