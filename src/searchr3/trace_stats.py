"""How a model ends its own reasoning: pure statistics over `Reasoning` results.

Stage 2 can only improve reasoning the model ends by itself: a trace whose token had to be forced
at the budget, or one that repeats a word over and over, gives GRPO nothing to compare. These are
the two numbers the Stage-1 release checks on dev queries (docs/sft-v3.md). A model that may
emit the token at once decides per query whether to reason: `adaptive_gain` reports how often it
did and what that gained.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence

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


def adaptive_gain(traces: Mapping[str, Mapping], with_reasoning: Mapping[str, Mapping[str, float]],
                  direct: Mapping[str, Mapping[str, float]], metric: str = "ndcg@10") -> dict[str, float]:
    """For what share of queries the model reasoned (wrote at least one token before the embed token),
    and what reasoning gained on that share and on all queries (mean `metric`, reasoning − direct).

    Args:
        traces: query id -> {"tokens": generated ids, the token counted} (a retriever's traces).
        with_reasoning, direct: per-query metrics of the same queries in each mode.
    """
    qids = sorted(set(traces) & set(with_reasoning) & set(direct))
    if not qids:
        raise ValueError("no query has a trace and metrics in both modes")
    reasoned = [q for q in qids if traces[q]["tokens"] > 1]
    gain = lambda qs: sum(with_reasoning[q][metric] - direct[q][metric] for q in qs) / len(qs) if qs else 0.0  # noqa: E731
    return {"queries": len(qids), "reasoned_share": len(reasoned) / len(qids), "reasoned_queries": len(reasoned),
            f"gain_{metric}_reasoned": gain(reasoned), f"gain_{metric}_all": gain(qids)}
