"""The order of training examples: a seeded shuffle per epoch, optionally grouped by length.

A batch is padded to its longest prompt, so a batch that mixes a 20-token definition with a
256-token abstract spends most of its compute on padding. Grouping sorts each window of
`window` batches by length and cuts it into batches, then shuffles the batches: which examples
share a batch stays random across windows, and the order of long and short batches is random.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..prompts import Prompt, PromptBuilder
    from .examples import Example


def epoch_batches(lengths: Sequence[int], batch_size: int, window: int, seed: int) -> list[list[int]]:
    """Return one epoch's batches as lists of example indices (the remainder that fills no batch is dropped).

    Args:
        lengths: a length per example (e.g. its query and documents' total tokens); unused when window is 0.
        batch_size: examples per batch.
        window: batches sorted together by length; 0: no grouping (plain shuffled batches).
        seed: seeds the shuffle; the same seed gives the same epoch, so a resumed run sees the same data.

    >>> epoch_batches([5, 1, 4, 2, 3, 6], batch_size=2, window=0, seed=0)
    [[4, 2], [1, 0], [5, 3]]
    >>> epoch_batches([5, 1, 4, 2, 3, 6], batch_size=2, window=3, seed=0)  # lengths 6+5, 2+1, 4+3
    [[5, 0], [3, 1], [2, 4]]
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    order = order[:len(order) // batch_size * batch_size]
    if window == 0:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    span = window * batch_size
    batches = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start:start + span], key=lambda i: -lengths[i])  # stable: ties keep the shuffle
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def example_slots(query: int, documents: Sequence[int]) -> int:
    """The key batches are grouped by: token slots an example fills in a batch padded to it (its query
    row, and one row per document at its longest document's length).

    Documents dominate the cost, and a batch pads all of them to the longest one: this groups
    better than the plain token total (on configs/sft.yaml's sources at batch 32, window 16:
    23% padding against 32%; see experiments/length_grouping/).

    >>> example_slots(40, (120, 250))
    540
    """
    return query + len(documents) * max(documents, default=0)


def padded(lengths: Sequence[int], multiple: int = 1) -> int:
    """Token slots of a right-padded batch: rows × the longest length rounded up to `multiple`
    (as `SearchR3.collate` pads)."""
    return len(lengths) * -(-max(lengths) // multiple) * multiple if lengths else 0


def prompt_lengths(examples: Sequence[Example], prompts: PromptBuilder,
                   query_prompt: Callable[[Example], Prompt] | None = None) -> list[tuple[int, tuple[int, ...]]]:
    """(query prompt tokens, (each document prompt's tokens: positive, then negatives)) per example,
    as the trainer assembles them; `query_prompt` defaults to the direct query prompt."""
    query_prompt = query_prompt or (lambda e: prompts.query(e.query))
    docs: dict[str, int] = {}  # a document recurs across examples (positive of one, negative of others)
    out = []
    for e in examples:
        for t in (e.positive, *e.negatives):
            if t not in docs:
                docs[t] = len(prompts.document(t).ids)
        out.append((len(query_prompt(e).ids), tuple(docs[t] for t in (e.positive, *e.negatives))))
    return out
