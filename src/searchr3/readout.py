"""The read-out: a text's vector is the final hidden state at its last `<|embed_token|>`.

`embed_token_states` is the one function that reads it; inference (`SearchR3`), the reasoning
decoder and both trainers call it, so a vector means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .prompts import EMBED_TOKEN


def embed_token_states(hidden: torch.Tensor, input_ids: torch.Tensor, embed_token_id: int,
                       names: Sequence[str] | None = None) -> torch.Tensor:
    """Return the L2-normalised hidden state at the last embed token of each row: (B, H) float32.

    Args:
        hidden: (B, T, H) final-layer hidden states, after the model's final norm.
        input_ids: (B, T) the ids that produced them; padding may sit on either side.
        embed_token_id: id of EMBED_TOKEN.
        names: optional per-row names (example ids) used in the error message.

    Raises:
        ValueError: a row without the embed token, naming the row.
    """
    is_embed = input_ids == embed_token_id  # (B, T)
    missing = (~is_embed.any(dim=1)).nonzero().flatten().tolist()
    if missing:
        row = missing[0]
        label = f"row {row}" + (f" ({names[row]!r})" if names is not None else "")
        raise ValueError(f"{label} has no {EMBED_TOKEN}; {len(missing)} of {len(input_ids)} rows lack it")
    T = input_ids.shape[1]
    last = T - 1 - is_embed.flip(dims=[1]).int().argmax(dim=1)  # (B,) position of the last embed token
    states = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, H)
    return F.normalize(states.float(), dim=-1)
