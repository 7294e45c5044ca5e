"""How traces end: the statistics behind Stage 1's reasoning-readiness check."""

import doctest

import numpy as np
import pytest

from searchr3 import trace_stats
from searchr3.decoding import Reasoning
from searchr3.trace_stats import loops, readiness


def _result(trace: str, n_tokens: int, stop: str) -> Reasoning:
    return Reasoning(trace, stop != "token", list(range(n_tokens)), np.zeros(4, dtype=np.float32), stop)


def test_doctests():
    assert doctest.testmod(trace_stats).failed == 0


def test_a_loop_is_one_word_over_the_share_of_the_words():
    assert loops("bone bone bone density and vitamin D")  # 3 of 7 words: 43%
    assert not loops("bone density and vitamin D in older adults over seventy")
    assert not loops("no no no")  # too short to call a loop
    assert loops("Bone, BONE; bone... density and")  # words are case-folded, punctuation ignored
    assert not loops("a b a c d e f g h i", share=0.3)  # 2 of 10: 20%


def test_readiness_counts_own_tokens_within_the_budget():
    results = [_result("a short analysis of the claim", 7, "token"),
               _result("it goes on and on until the budget ends", 33, "budget"),
               _result("ended its turn", 4, "eos"),
               _result("the the the the the the", 7, "token"),
               _result("a late token after the budget", 40, "token")]
    stats = readiness(results, budget=32)
    assert stats["queries"] == 5
    assert stats["own_token"] == pytest.approx(2 / 5)  # the late one exceeds 32 trace tokens
    assert (stats["eos"], stats["budget"]) == pytest.approx((1 / 5, 1 / 5))
    assert stats["loops"] == pytest.approx(1 / 5)
    assert stats["mean_tokens"] == pytest.approx((7 + 33 + 4 + 7 + 40) / 5)
    with pytest.raises(ValueError):
        readiness([], 32)


def test_adaptive_gain_splits_queries_by_whether_the_model_reasoned():
    traces = {"a": {"tokens": 1}, "b": {"tokens": 9}, "c": {"tokens": 4}, "d": {"tokens": 1}}
    on = {"a": {"ndcg@10": 0.5}, "b": {"ndcg@10": 1.0}, "c": {"ndcg@10": 0.2}, "d": {"ndcg@10": 0.3}}
    off = {"a": {"ndcg@10": 0.5}, "b": {"ndcg@10": 0.6}, "c": {"ndcg@10": 0.4}, "d": {"ndcg@10": 0.3}}
    out = trace_stats.adaptive_gain(traces, on, off)
    assert out["reasoned_share"] == 0.5 and out["reasoned_queries"] == 2  # b and c wrote tokens before the token
    assert out["gain_ndcg@10_reasoned"] == pytest.approx((0.4 - 0.2) / 2)
    assert out["gain_ndcg@10_all"] == pytest.approx(0.2 / 4)
    with pytest.raises(ValueError, match="no query"):
        trace_stats.adaptive_gain({}, on, off)
