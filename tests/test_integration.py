"""Integration tests on the real bundled SmolLM2 (offline)."""

import os

import numpy as np
import pytest
import torch

from searchr3 import EmbedConfig, embed_token_states
from searchr3.prompts import document_text

pytestmark = pytest.mark.integration


def test_loads_offline_and_embeds(real_model):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert real_model.dim == 576 and real_model.name == "smollm2-135m-instruct"
    docs = ["Aspirin irreversibly inhibits cyclooxygenase in platelets.", "The Eiffel Tower is in Paris."]
    v = real_model.embed_documents(docs)
    assert v.shape == (2, 576)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(real_model.embed_documents(docs[:1])[0], v[0], atol=1e-5)


def test_reasons_and_ends_with_token(real_model):
    queries = ["does aspirin reduce the risk of heart attack", "tallest tower in paris"]
    results = real_model.reason(queries)
    for q, r in zip(queries, results):
        assert r.token_ids[-1] == real_model.embed_token_id
        assert len(r.token_ids) <= real_model.config.reasoning_tokens + 1
        assert len(r.trace.split()) >= 3  # the instruct model writes an analysis
        ids = torch.tensor([real_model.prompts.reasoning(q).ids + r.token_ids])
        with torch.inference_mode():
            h, _ = real_model.hidden_states(ids, torch.ones_like(ids), torch.arange(ids.shape[1])[None])
        full = embed_token_states(h, ids, real_model.embed_token_id)[0].numpy()
        np.testing.assert_allclose(r.vector, full, rtol=0, atol=1e-5)
    again = real_model.embed_queries(queries, reasoning=True)
    np.testing.assert_allclose(again, np.stack([r.vector for r in results]), atol=1e-5)


def test_released_adapter_loads_by_name_and_ranks_better_than_the_base(real_model):
    """The shipped adapter is a small LoRA over the bundled base and has learned to retrieve.

    Held-out check on SciFact *test* queries (the training recipes never read a test split):
    each query's cited abstract must rank higher, on average, among 48 other abstracts than
    with the base.
    """
    import random

    from searchr3 import RELEASED_MODELS, SearchR3
    from searchr3.data import load_dataset

    folder = RELEASED_MODELS["searchr3-smollm2-135m-sft-v3"].path
    assert (folder / "adapter_model.safetensors").stat().st_size < 40 * 2**20
    assert (folder / "README.md").read_text().count("searchr3-smollm2-135m-sft") >= 2
    sft = SearchR3.from_pretrained("searchr3-smollm2-135m-sft", dtype="fp32", device="cpu",
                                   config=EmbedConfig(batch_size=8, max_length=128, reasoning_tokens=24))
    assert sft.name == "searchr3-smollm2-135m-sft-v3" and sft.base == "smollm2-135m-instruct"
    assert sft.fingerprint != real_model.fingerprint

    data = load_dataset("scifact", "test")
    rng = random.Random(0)
    qids = rng.sample(sorted(data.qrels), 12)
    positives = {q: sorted(data.qrels[q])[0] for q in qids}
    docs = {d.id: d for d in data.corpus}
    others = rng.sample(sorted(set(docs) - {d for q in qids for d in data.qrels[q]}), 48)
    pool = sorted(set(positives.values()) | set(others))
    texts = [document_text(docs[d].title, docs[d].text) for d in pool]

    def mrr(model):
        scores = model.embed_queries([data.queries[q] for q in qids]) @ model.embed_documents(texts).T
        ranks = [1 + int((row > row[pool.index(positives[q])]).sum()) for q, row in zip(qids, scores)]
        return float(np.mean([1 / r for r in ranks]))

    assert mrr(sft) > mrr(real_model) + 0.2


def test_released_rl_adapter_loads_by_name_and_reasons_at_least_its_minimum(real_model):
    """The Stage-2 adapter ships beside the Stage-1 one: small, its own weights, and it keeps the
    minimum reasoning length it was trained with (saved in its settings)."""
    from searchr3 import RELEASED_MODELS, SearchR3

    folder = RELEASED_MODELS["searchr3-smollm2-135m-rl-v1"].path
    assert (folder / "adapter_model.safetensors").stat().st_size < 40 * 2**20
    assert (folder / "README.md").read_text().count("searchr3-smollm2-135m-rl") >= 2
    assert (folder / "reward.png").stat().st_size > 0
    rl = SearchR3.from_pretrained("searchr3-smollm2-135m-rl", dtype="fp32", device="cpu")
    assert rl.name == "searchr3-smollm2-135m-rl-v1" and rl.base == "smollm2-135m-instruct"
    assert rl.fingerprint not in {real_model.fingerprint, SearchR3.from_pretrained("searchr3-smollm2-135m-sft").fingerprint}
    floor = rl.config.min_reasoning_tokens
    assert floor >= 1
    for r in rl.reason(["does aspirin reduce the risk of heart attack", "tallest tower in paris"]):
        assert r.token_ids[-1] == rl.embed_token_id and len(r.token_ids) - 1 >= floor
