"""Micro-batching: concurrent requests of one kind run as one model call.

The service answers each HTTP request in a worker thread of its pool. Without gathering, eight
clients asking for embeddings get one client's throughput: the model runs eight batches of one,
one after another. Here every request hands its texts to a single model thread and waits; that
thread takes the first waiting request, gathers the others of the same kind that arrive within
`wait_ms` (up to `max_texts` texts), embeds them in one call and hands each request its rows.

The model is only ever used by that thread, so no model work runs on the event loop or in two
threads at once. A batched vector equals the lone request's up to float rounding: rows are padded
to the batch's longest prompt, which changes the order of a few sums (|Δ| ~1e-6 in fp32); greedy
reasoning in a batch can therefore, rarely, pick a different token where two are within rounding.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KINDS = ("document", "query", "reasoning")
_STOP = object()  # queued by close(): the thread ends after the requests before it


@dataclass
class _Job:
    kind: str  # one of KINDS, or "call": a function run alone on the model thread
    texts: list[str]
    fn: Callable[[], Any] | None = None
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """Gathers requests of one kind for up to `wait_ms` and runs them as one model call.

    Args:
        model: a `SearchR3`; from now on only the batcher's thread may use it.
        wait_ms: how long the first request of a batch waits for others (0: take only what is queued).
        max_texts: the most texts gathered into one call (a larger request still runs whole).
    """

    def __init__(self, model, wait_ms: float = 5.0, max_texts: int = 64):
        if wait_ms < 0 or max_texts < 1:
            raise ValueError(f"wait_ms must be >= 0 and max_texts >= 1, got {wait_ms} and {max_texts}")
        self.model, self.wait, self.max_texts = model, wait_ms / 1000, max_texts
        self._queue: queue.Queue = queue.Queue()
        self._held = None  # a job of another kind met while gathering: it opens the next batch
        self.batches = self.requests = 0  # model calls and the requests they served (gathering works: batches < requests)
        self._thread = threading.Thread(target=self._loop, name="searchr3-model", daemon=True)
        self._thread.start()

    def run(self, kind: str, texts: list[str]):
        """Embed `texts` as `kind` ("document", "query", "reasoning"), batched with concurrent requests.

        Returns float32 vectors (N, H) for documents and queries, a list of `Reasoning` for reasoning.
        Raises what the model raised, in the calling thread.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return self._submit(_Job(kind, list(texts)))

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn()` on the model thread, between batches, and return its result (or raise its error).

        For other uses of the model or its tokenizer (a fast tokenizer is not safe to share
        between threads): they then never run beside a batch.
        """
        return self._submit(_Job("call", [], fn))

    def _submit(self, job: _Job) -> Any:
        if not self._thread.is_alive():
            raise RuntimeError("the batcher is closed")
        self._queue.put(job)
        return job.future.result()

    def close(self, timeout: float | None = 30.0) -> None:
        """Finish the requests already queued, then stop the model thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    # ------------------------------------------------------------------ the model thread
    def _gather(self, first: _Job) -> list[_Job]:
        jobs, size = [first], len(first.texts)
        deadline = time.monotonic() + self.wait
        while size < self.max_texts and first.kind != "call":
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is _STOP or job.kind != first.kind or size + len(job.texts) > self.max_texts:
                self._held = job  # runs next, in arrival order among its kind
                break
            jobs.append(job)
            size += len(job.texts)
        return jobs

    def _loop(self) -> None:
        while True:
            first, self._held = (self._held, None) if self._held is not None else (self._queue.get(), None)
            if first is _STOP:
                return
            self._serve(self._gather(first))

    def _serve(self, jobs: list[_Job]) -> None:
        if jobs[0].kind == "call":
            try:
                jobs[0].future.set_result(jobs[0].fn())
            except BaseException as e:
                jobs[0].future.set_exception(e)
            return
        texts = [t for job in jobs for t in job.texts]
        try:
            out = self._embed(jobs[0].kind, texts)
        except BaseException as e:  # every waiting request hears of it; the thread lives on
            for job in jobs:
                job.future.set_exception(e)
            return
        self.batches += 1
        self.requests += len(jobs)
        start = 0
        for job in jobs:
            job.future.set_result(out[start:start + len(job.texts)])
            start += len(job.texts)

    def _embed(self, kind: str, texts: list[str]):
        m = self.model
        if kind == "document":
            return m.embed_documents(texts, show_progress=False)
        if kind == "query":
            return m.embed_queries(texts, show_progress=False)
        return m.reason(texts, show_progress=False)
