"""Micro-batching: concurrent requests of one kind share a model call, and each gets its own rows."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from searchr3.microbatch import MicroBatcher


class Recorder:
    """A stand-in model that records each call's kind, texts and thread, and embeds a text as its length."""

    def __init__(self, delay: float = 0.0):
        self.calls, self.delay = [], delay

    def _record(self, kind, texts):
        self.calls.append((kind, list(texts), threading.current_thread().name))
        time.sleep(self.delay)
        if any(t == "boom" for t in texts):
            raise RuntimeError("boom")
        return np.array([[len(t), ord(kind[0])] for t in texts], dtype=np.float32)

    def embed_documents(self, texts, show_progress=False):
        return self._record("document", texts)

    def embed_queries(self, texts, show_progress=False):
        return self._record("query", texts)

    def reason(self, texts, show_progress=False):
        return list(self._record("reasoning", texts))


def _concurrently(batcher, requests):
    """Submit (kind, texts) requests from as many threads at once; results in request order."""
    barrier = threading.Barrier(len(requests))

    def one(req):
        barrier.wait()
        return batcher.run(*req)

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(one, requests))


def test_concurrent_requests_share_a_call_and_get_their_own_rows():
    model = Recorder(delay=0.05)
    batcher = MicroBatcher(model, wait_ms=100, max_texts=64)
    try:
        requests = [("query", [f"q{i}" * (i + 1), "x" * i]) for i in range(8)]
        results = _concurrently(batcher, requests)
    finally:
        batcher.close()
    for (kind, texts), out in zip(requests, results):
        assert out[:, 0].tolist() == [len(t) for t in texts] and set(out[:, 1]) == {ord("q")}
    assert batcher.requests == 8 and batcher.batches < 8, "nothing was gathered"
    assert {thread for _, _, thread in model.calls} == {"searchr3-model"}


def test_kinds_are_never_mixed_and_max_texts_holds():
    model = Recorder(delay=0.02)
    batcher = MicroBatcher(model, wait_ms=50, max_texts=5)
    try:
        requests = [("document" if i % 2 else "query", ["a" * (i + 1)] * 2) for i in range(10)]
        results = _concurrently(batcher, requests)
    finally:
        batcher.close()
    for (kind, texts), out in zip(requests, results):
        assert out[:, 0].tolist() == [len(t) for t in texts] and set(out[:, 1]) == {ord(kind[0])}
    assert all(len(texts) <= 5 for _, texts, _ in model.calls)
    assert sum(len(texts) for _, texts, _ in model.calls) == 20


def test_a_request_larger_than_max_texts_runs_whole():
    model = Recorder()
    batcher = MicroBatcher(model, wait_ms=0, max_texts=2)
    try:
        assert batcher.run("document", ["a", "bb", "ccc"])[:, 0].tolist() == [1, 2, 3]
    finally:
        batcher.close()


def test_errors_reach_the_caller_and_the_thread_lives_on():
    batcher = MicroBatcher(Recorder(), wait_ms=0)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            batcher.run("query", ["boom"])
        with pytest.raises(ValueError, match="kind must be one of"):
            batcher.run("passage", ["x"])
        with pytest.raises(ZeroDivisionError):
            batcher.call(lambda: 1 / 0)
        assert batcher.run("query", ["ok"])[0, 0] == 2
        assert batcher.call(lambda: threading.current_thread().name) == "searchr3-model"
    finally:
        batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.run("query", ["late"])


def test_close_finishes_queued_requests():
    model = Recorder(delay=0.05)
    batcher = MicroBatcher(model, wait_ms=0, max_texts=1)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(batcher.run, "query", [str(i)]) for i in range(4)]
        time.sleep(0.02)
        batcher.close()
        assert [f.result()[0, 0] for f in futures] == [1, 1, 1, 1]


def test_batched_vectors_equal_lone_requests(tiny):
    """The real model: gathered rows equal each request embedded alone, to float rounding."""
    queries = ["capital of France", "how do plants make sugar from light", "cat", "a much longer query " * 3]
    alone = [tiny.embed_queries([q]) for q in queries]
    alone_reasoning = [tiny.reason([q])[0] for q in queries]
    batcher = MicroBatcher(tiny, wait_ms=200)
    try:
        together = _concurrently(batcher, [("query", [q]) for q in queries])
        traces = _concurrently(batcher, [("reasoning", [q]) for q in queries])
    finally:
        batcher.close()
    assert batcher.batches < batcher.requests
    for a, b in zip(alone, together):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for a, (b,) in zip(alone_reasoning, traces):
        assert a.token_ids == b.token_ids
        np.testing.assert_allclose(a.vector, b.vector, atol=1e-5)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="wait_ms"):
        MicroBatcher(Recorder(), wait_ms=-1)
