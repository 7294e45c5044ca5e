"""Reasoning decode: write an analysis, then read the embed token's state on the same KV cache.

`bar_ending` is the one logits processor: decoding applies it here and the Stage-2 policy applies
it to its log-probs, so sampled tokens and their probabilities come from one distribution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .readout import embed_token_states


@dataclass
class Reasoning:
    """One reasoned query: its trace, whether the token was forced, and its vector."""

    trace: str  # the generated analysis, without the embed token
    forced: bool  # True when the budget ran out (or the turn ended) and the token was appended
    token_ids: list[int] = field(repr=False)  # generated ids, the last one is the embed token
    vector: np.ndarray = field(repr=False)  # (H,) float32, L2-normalised
    stop: str = "token"  # why it ended: "token" (emitted), "eos" (ended its turn; token appended), "budget"


def bar_ending(logits: torch.Tensor, embed_token_id: int, eos_token_id: int | None) -> torch.Tensor:
    """Logits with the embed token and end-of-turn made impossible (a minimum reasoning length).

    Decoding and the Stage-2 log-probs both apply it, so sampled tokens and their
    probabilities come from the same distribution.
    """
    out = logits.clone()
    out[..., embed_token_id] = float("-inf")
    if eos_token_id is not None:
        out[..., eos_token_id] = float("-inf")
    return out


def next_tokens(logits: torch.Tensor, sampling: tuple[float, float] | None,
                generator: torch.Generator | list[torch.Generator]) -> torch.Tensor:
    """Pick the next id per row from (B, V) logits: argmax, or temperature + top-p sampling
    (with one generator for the batch, or one per row)."""
    if sampling is None:
        return logits.argmax(dim=-1)
    temperature, top_p = sampling
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_p, sorted_ids = probs.sort(dim=-1, descending=True)
    keep = sorted_p.cumsum(dim=-1) - sorted_p < top_p  # always keeps the most likely id
    sorted_p = sorted_p * keep
    dist = sorted_p / sorted_p.sum(dim=-1, keepdim=True)
    if isinstance(generator, list):
        choice = torch.cat([torch.multinomial(dist[i:i + 1], 1, generator=g) for i, g in enumerate(generator)])
    else:
        choice = torch.multinomial(dist, 1, generator=generator)
    return sorted_ids.gather(-1, choice).squeeze(-1)


def reason_batch(model, rows: list[list[int]], budget: int, sampling: tuple[float, float] | None,
                 generator) -> list[Reasoning]:
    """Decode one left-padded batch with a KV cache until every row has fed its embed token.

    `model` is a `SearchR3` (its public collate, hidden_states, tokenizer and ids); feeding the
    embed token as the next input yields its state in one extra step, with no re-encoding.
    """
    B = len(rows)
    ids, mask, pos = model.collate(rows)
    hidden, cache = model.hidden_states(ids, mask, pos, use_cache=True)
    head = model.model.get_output_embeddings()
    logits = head(hidden[:, -1])  # (B, V)
    next_pos = pos[:, -1:] + 1  # (B, 1)
    eos = model.tokenizer.eos_token_id
    generated: list[list[int]] = [[] for _ in range(B)]
    forced = torch.zeros(B, dtype=torch.bool, device=model.device)
    by_eos = torch.zeros(B, dtype=torch.bool, device=model.device)
    done = torch.zeros(B, dtype=torch.bool, device=model.device)
    vectors = torch.zeros(B, model.dim, device=model.device)
    for step in range(budget + 1):
        if step < min(model.config.min_reasoning_tokens, budget):
            logits = bar_ending(logits, model.embed_token_id, eos)
        tok = next_tokens(logits, sampling, generator)  # (B,)
        force = ~done & (tok != model.embed_token_id) & ((tok == eos) | (step >= budget))
        by_eos |= force & (tok == eos)
        tok = torch.where(force, torch.full_like(tok, model.embed_token_id), tok)
        tok = torch.where(done, torch.full_like(tok, model.pad_token_id), tok)  # finished rows idle
        forced |= force
        ids_now, live = tok.tolist(), (~done).tolist()  # one device sync per step
        for i in range(B):
            if live[i]:
                generated[i].append(ids_now[i])
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        hidden, cache = model.hidden_states(tok[:, None], mask, next_pos, cache=cache, use_cache=True)
        finishing = ~done & (tok == model.embed_token_id)
        if finishing.any():
            vectors[finishing] = embed_token_states(hidden[finishing], tok[finishing, None], model.embed_token_id)
        done |= finishing
        if bool(done.all()):
            break
        logits = head(hidden[:, -1])
        next_pos = next_pos + 1
    out = []
    for i in range(B):
        trace = model.tokenizer.decode(generated[i][:-1], skip_special_tokens=True,
                                      clean_up_tokenization_spaces=False).strip()
        stop = "eos" if by_eos[i] else "budget" if forced[i] else "token"
        out.append(Reasoning(trace, bool(forced[i]), generated[i], vectors[i].cpu().numpy(), stop))
    return out
