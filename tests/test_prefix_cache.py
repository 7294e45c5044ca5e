"""Prompt-prefix reuse gives the vectors and traces of a full forward pass, and never serves stale KV."""

import numpy as np
import pytest
import torch

from searchr3.prefix_cache import PrefixCache, prefill

DOCS = ["Paris is the capital and largest city of France.", "A cat.",
        "Photosynthesis converts light energy into chemical energy stored in glucose molecules, "
        "releasing oxygen as a by-product.", "Rust is a systems programming language."]
QUERIES = ["capital of France", "how do plants make sugar from light", "memory safe language", "cat"]


def _both(model, fn):
    """fn(model) with the prefix reused, then with full prompts."""
    model.prefix_cache.enabled = True
    reused = fn(model)
    model.prefix_cache.enabled = False
    try:
        return reused, fn(model)
    finally:
        model.prefix_cache.enabled = True


def test_prefixes_are_each_kinds_leading_ids(tiny):
    builder = tiny.prompts
    for make in (builder.document, builder.query, builder.reasoning):
        ids = make("some text").ids
        assert any(ids[:len(p)] == p for p in builder.prefixes)
    assert len(tiny.prefix_cache.prefixes) == 3 and all(len(p) >= 4 for p in tiny.prefix_cache.prefixes)


def test_documents_and_queries_equal_a_full_forward(tiny):
    for fn in (lambda m: m.embed_documents(DOCS, batch_size=3), lambda m: m.embed_queries(QUERIES, batch_size=3)):
        reused, full = _both(tiny, fn)
        np.testing.assert_allclose(reused, full, atol=1e-5)
    assert tiny.prefix_cache._kv, "the prefix was never reused"


def test_reasoning_equals_a_full_forward(tiny):
    reused, full = _both(tiny, lambda m: m.reason(QUERIES, batch_size=3))
    for a, b in zip(reused, full):
        assert a.token_ids == b.token_ids and a.stop == b.stop
        np.testing.assert_allclose(a.vector, b.vector, atol=1e-5)


def test_rows_without_a_shared_prefix_run_in_full(tiny):
    """A batch mixing prompt kinds shares no known prefix: nothing is reused, the vectors stay right."""
    prompts = [tiny.prompts.document(DOCS[0]), tiny.prompts.query(QUERIES[0])]
    assert tiny.prefix_cache.match([p.ids for p in prompts]) == ()
    reused, full = _both(tiny, lambda m: m.embed_prompts(prompts, batch_size=2))
    np.testing.assert_allclose(reused, full, atol=1e-5)


def test_changed_weights_recompute_the_prefix(tiny):
    before = tiny.embed_documents(DOCS[:2])
    with torch.no_grad():  # as an optimiser step changes them: in place
        tiny.model.get_decoder().layers[0].self_attn.k_proj.weight.add_(0.05)
    reused, full = _both(tiny, lambda m: m.embed_documents(DOCS[:2]))
    np.testing.assert_allclose(reused, full, atol=1e-5)
    assert not np.allclose(reused, before, atol=1e-3), "the weight change should move the vectors"


def test_switching_adapters_recomputes_the_prefix(tiny):
    from peft import LoraConfig, get_peft_model

    tiny.attach(get_peft_model(tiny.model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)))
    tiny.model.eval()
    with_adapter = tiny.embed_queries(QUERIES)
    with tiny.model.disable_adapter():
        reused, full = _both(tiny, lambda m: m.embed_queries(QUERIES))
    np.testing.assert_allclose(reused, full, atol=1e-5)
    assert not np.allclose(reused, with_adapter, atol=1e-3)
    np.testing.assert_allclose(tiny.embed_queries(QUERIES), with_adapter, atol=1e-5)


def test_training_mode_runs_full_prompts(tiny):
    rows = [tiny.prompts.document(d).ids for d in DOCS]
    tiny.model.train()
    try:
        hidden, _, ids, mask, _ = prefill(tiny, rows, tiny.prefix_cache)
    finally:
        tiny.model.eval()
    assert ids.shape[1] >= max(map(len, rows)) and mask.shape == ids.shape


def test_prefill_mask_covers_the_prefix(tiny):
    rows = [tiny.prompts.query(q).ids for q in QUERIES]
    n = len(tiny.prefix_cache.match(rows))
    assert n > 0
    with torch.inference_mode():
        hidden, cache, ids, mask, pos = prefill(tiny, rows, tiny.prefix_cache, use_cache=True)
    assert mask.shape[1] == n + ids.shape[1] and hidden.shape[1] == ids.shape[1]
    assert cache.get_seq_length() == mask.shape[1]
    assert int(pos[:, -1].min()) == min(len(r) for r in rows) - 1  # positions continue from the prefix


@pytest.mark.parametrize("min_length", [4, 10_000])
def test_short_prefixes_are_not_cached(min_length):
    cache = PrefixCache([[1, 2, 3, 4, 5], [1, 2]], min_length=min_length)
    assert cache.match([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 9]]) == ((1, 2, 3, 4, 5) if min_length == 4 else ())
    assert cache.match([[1, 2, 3, 4, 5]]) == ()  # a row must extend the prefix: its last id is read
