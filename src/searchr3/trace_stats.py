"""How a model ends its own reasoning: pure statistics over `Reasoning` results.

Stage 2 can only improve reasoning the model ends by itself: a trace whose token had to be forced
at the budget, or one that repeats a word over and over, gives GRPO nothing to compare. These are
the two numbers the Stage-1 release checks on dev queries (docs/sft-v3.md).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from .decoding import Reasoning

LOOP_SHARE = 0.3  # a trace loops when one word is more than this share of its words
MIN_LOOP_WORDS = 5  # shorter traces are not called loops: "yes yes" is two words, not a loop


def loops(trace: str, share: float = LOOP_SHARE, min_words: int = MIN_LOOP_WORDS) -> bool:
    """Whether one word (case-folded) makes up more than `share` of the trace's words.

    >>> loops("the the the the the cat")
    True
    >>> loops("A claim about vitamin D and bone density in older adults.")
    False
    """
    words = re.findall(r"\w+", trace.casefold())
    if len(words) < min_words:
        return False
    return Counter(words).most_common(1)[0][1] > share * len(words)


def readiness(results: Sequence[Reasoning], budget: int) -> dict[str, float]:
    """Shares of traces that end with the model's own token within `budget` generated tokens
    (the token counted), that ended their turn instead, that hit the budget, and that loop;
    plus the mean trace length in tokens.
    """
    if not results:
        raise ValueError("no reasoning results")
    n = len(results)
    own = [r for r in results if r.stop == "token" and not r.forced and len(r.token_ids) - 1 <= budget]
    return {"queries": n, "own_token": len(own) / n,
            "eos": sum(r.stop == "eos" for r in results) / n,
            "budget": sum(r.stop == "budget" for r in results) / n,
            "loops": sum(loops(r.trace) for r in results) / n,
            "mean_tokens": sum(len(r.token_ids) for r in results) / n}
