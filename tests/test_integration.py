"""Integration tests on the real bundled SmolLM2 (offline)."""

import os

import numpy as np
import pytest
import torch

from searchr3 import embed_token_states

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
        assert float(full @ r.vector) >= 0.9999
    again = real_model.embed_queries(queries, reasoning=True)
    np.testing.assert_allclose(again, np.stack([r.vector for r in results]), atol=1e-5)
