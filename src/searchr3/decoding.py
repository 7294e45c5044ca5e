"""Reasoning decode: write an analysis, then read the embed token's state on the same KV cache.

`LogitsProcessor` is the one next-token distribution: decoding samples from it here and the Stage-2
policy scores its log-probs with it, so sampled tokens and their probabilities agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .prefix_cache import prefill
from .readout import embed_token_states


@dataclass
class Reasoning:
    """One reasoned query: its trace, whether the token was forced, and its vector."""

    trace: str  # the generated analysis, without the embed token
    forced: bool  # True when the budget ran out (or the turn ended) and the token was appended
    token_ids: list[int] = field(repr=False)  # generated ids, the last one is the embed token
    vector: np.ndarray = field(repr=False)  # (H,) float32, L2-normalised
    stop: str = "token"  # why it ended: "token" (emitted), "eos" (ended its turn; token appended), "budget"


@dataclass(frozen=True)
class LogitsProcessor:
    """The one next-token distribution: temperature, nucleus (top-p) and a minimum reasoning length.

    Decoding samples from `log_probs` and the Stage-2 policy scores its rollouts with the same
    call, so a sampled token's probability in the loss is the probability it was drawn with
    (with top-p < 1, a plain softmax would score a wider distribution than the one sampled).
    """

    embed_token_id: int
    eos_token_id: int | None
    temperature: float = 1.0
    top_p: float = 1.0
    min_tokens: int = 0  # the token and end of turn are barred at reasoning steps below this

    def log_probs(self, logits: torch.Tensor, steps: int | torch.Tensor, keep: torch.Tensor | None = None,
                  min_tokens: int | torch.Tensor | None = None) -> torch.Tensor:
        """Log-probabilities (..., V) of the next token, -inf outside the allowed set.

        Args:
            logits: raw LM-head logits (..., V).
            steps: the reasoning step each row decides (an int, or a tensor broadcast to logits[..., 0]).
            keep: ids (...) kept in the nucleus whatever their rank: a policy scoring its own sampled
                tokens on recomputed logits, which rounding may move just past the top-p edge.
            min_tokens: the minimum length instead of the processor's (an int, or a tensor broadcast
                like `steps`): Stage 2 scores rollouts drawn under different minimums in one batch.
        """
        x = logits.float() / self.temperature
        floor = self.min_tokens if min_tokens is None else min_tokens
        if not isinstance(floor, int) or floor:
            ends = torch.zeros(x.shape[-1], dtype=torch.bool, device=x.device)
            ends[[i for i in (self.embed_token_id, self.eos_token_id) if i is not None]] = True
            barred = torch.as_tensor(steps, device=x.device) < torch.as_tensor(floor, device=x.device)
            x = x.masked_fill(barred[..., None] & ends, float("-inf"))
        logp = torch.log_softmax(x, dim=-1)
        if self.top_p >= 1.0:
            return logp
        with torch.no_grad():
            sorted_p, order = logp.exp().sort(dim=-1, descending=True)
            inside = sorted_p.cumsum(dim=-1) - sorted_p < self.top_p  # always keeps the most likely id
            nucleus = torch.zeros_like(inside).scatter(-1, order, inside)
            if keep is not None:
                nucleus.scatter_(-1, keep[..., None], True)
        return torch.log_softmax(logp.masked_fill(~nucleus, float("-inf")), dim=-1)


def next_tokens(log_probs: torch.Tensor, sample: bool, generator: torch.Generator | list[torch.Generator]) -> torch.Tensor:
    """Pick the next id per row from (B, V) processed log-probs: argmax, or a draw (one generator
    for the batch, or one per row)."""
    if not sample:
        return log_probs.argmax(dim=-1)
    probs = log_probs.exp()
    if isinstance(generator, list):
        return torch.cat([torch.multinomial(probs[i:i + 1], 1, generator=g) for i, g in enumerate(generator)]).squeeze(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def reason_batch(model, rows: list[list[int]], budget: int, processor: LogitsProcessor, sample: bool,
                 generator) -> list[Reasoning]:
    """Decode one left-padded batch with a KV cache until every row has fed its embed token.

    `model` is a `SearchR3` (its public collate, hidden_states, tokenizer and ids); feeding the
    embed token as the next input yields its state in one extra step, with no re-encoding.
    """
    B = len(rows)
    hidden, cache, _, mask, pos = prefill(model, rows, model.prefix_cache, use_cache=True)
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
        tok = next_tokens(processor.log_probs(logits, step), sample, generator)  # (B,)
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
