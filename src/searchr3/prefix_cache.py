"""Prompt-prefix reuse: the shared chat-template prefix is run through the model once, not per text.

Every document prompt starts with the same chat-template and system-prompt ids, and so does every
query prompt and every reasoning prompt. For a short query that prefix is most of the prompt. The
prefix's keys and values are computed once per weights and copied into each batch's KV cache, so a
forward pass runs only the text and what follows it.

Batches stay left-padded: the pads sit between the prefix and the text, masked out, and positions
continue from the prefix's end, so each text sees the same keys, values and positions as in a full
forward (equal to it within float rounding; tests/test_prefix_cache.py).

The cache is keyed by the weights' storage and version counters, so an optimiser step, a loaded
adapter or a dtype change recomputes it; in training mode (dropout) it is not used.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch


def weights_state(module: torch.nn.Module) -> tuple:
    """What changes when the function the module computes changes: each parameter's storage, in-place
    version counter, dtype and kind, and which adapters are active (peft's `set_adapter`,
    `disable_adapter`). A quantised weight (a tensor subclass) reports storage 0, so its identity counts."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    params = tuple((p.data_ptr() or id(p), p._version, p.dtype, type(p.data)) for p in module.parameters())
    adapters = tuple((m.disable_adapters, tuple(m.active_adapters), m.merged)
                     for m in module.modules() if isinstance(m, BaseTunerLayer))
    return params, adapters


class PrefixCache:
    """KV of known prompt prefixes (one per prompt kind), computed lazily and reused across batches.

    Args:
        prefixes: the prompt kinds' shared leading ids (`PromptBuilder.prefixes`).
        min_length: shorter prefixes are not worth a cache copy.
    """

    def __init__(self, prefixes: Sequence[Sequence[int]], min_length: int = 4):
        self.prefixes = sorted({tuple(p) for p in prefixes if len(p) >= min_length}, key=len, reverse=True)
        self._kv: dict[tuple[int, ...], object] = {}
        self._state: tuple | None = None
        self.enabled = True

    def match(self, rows: Sequence[Sequence[int]]) -> tuple[int, ...]:
        """The longest known prefix that every row starts with and extends (empty: none)."""
        for prefix in self.prefixes:
            n = len(prefix)
            if all(len(r) > n and tuple(r[:n]) == prefix for r in rows):
                return prefix
        return ()

    def past(self, model, prefix: tuple[int, ...], batch: int):
        """A fresh KV cache holding `prefix` for `batch` rows (the forward pass extends it in place)."""
        state = weights_state(model.model)
        if state != self._state:
            self._kv.clear()
            self._state = state
        if prefix not in self._kv:
            ids = torch.tensor([prefix], dtype=torch.long, device=model.device)
            mask = torch.ones_like(ids)
            positions = torch.arange(len(prefix), device=model.device)[None]
            _, self._kv[prefix] = model.hidden_states(ids, mask, positions, use_cache=True)
        cache = copy.deepcopy(self._kv[prefix])
        for layer in cache.layers:
            layer.batch_repeat_interleave(batch)
        return cache


def prefill(model, rows: Sequence[Sequence[int]], prefixes: PrefixCache | None = None, use_cache: bool = False):
    """Run left-padded `rows` through the backbone, reusing a shared prefix's KV where one matches.

    Returns (hidden (B, T, H), cache, input_ids (B, T), attention_mask (B, P + T), position_ids (B, T)):
    `hidden`, `input_ids` and `position_ids` cover the part after the reused prefix (P ids; P = 0 when
    none was reused); the mask covers the prefix too, as a decode loop continuing the cache needs.
    """
    prefix: tuple[int, ...] = ()
    if prefixes is not None and prefixes.enabled and not model.model.training:
        prefix = prefixes.match(rows)
    n = len(prefix)
    ids, mask, positions = model.collate([r[n:] for r in rows])
    past = None
    if n:
        past = prefixes.past(model, prefix, len(rows))
        mask = torch.cat([torch.ones(len(rows), n, dtype=mask.dtype, device=mask.device), mask], dim=1)
        positions = positions + n
    hidden, cache = model.hidden_states(ids, mask, positions, cache=past, use_cache=use_cache or n > 0)
    return hidden, cache, ids, mask, positions
