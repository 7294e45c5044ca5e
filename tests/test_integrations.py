"""sentence-transformers-style shortcuts and the MTEB encoder, on the tiny model."""

import numpy as np
import pytest
import torch
from mteb.types import PromptType

from searchr3 import MTEBEncoder

QUERIES = ["does aspirin thin the blood?", "capital of France"]
DOCS = ["Aspirin inhibits platelet aggregation.", "Paris is the capital of France."]


def test_encode_query_and_document_shapes(tiny):
    np.testing.assert_array_equal(tiny.encode_query(QUERIES), tiny.embed_queries(QUERIES))
    np.testing.assert_array_equal(tiny.encode_document(DOCS), tiny.embed_documents(DOCS))
    one = tiny.encode_query(QUERIES[0])
    assert one.shape == (tiny.dim,)
    np.testing.assert_array_equal(one, tiny.embed_queries(QUERIES[:1])[0])
    assert tiny.encode_document(DOCS[0]).shape == (tiny.dim,)
    np.testing.assert_allclose(tiny.encode_query(QUERIES, reasoning=True), tiny.embed_queries(QUERIES, reasoning=True),
                               atol=1e-6)


def test_similarity_is_cosine(tiny):
    q, d = tiny.encode_query(QUERIES), tiny.encode_document(DOCS)
    sim = tiny.similarity(q, d)
    assert isinstance(sim, torch.Tensor) and sim.shape == (2, 2)
    np.testing.assert_allclose(sim.numpy(), q @ d.T, atol=1e-6)
    # Not assuming normalised inputs: scaling a vector leaves its cosine unchanged.
    np.testing.assert_allclose(tiny.similarity(3 * q[0], d).numpy(), sim[:1].numpy(), atol=1e-6)


def test_mteb_encoder_maps_prompt_types(tiny):
    enc = MTEBEncoder(tiny)
    np.testing.assert_array_equal(enc.encode(QUERIES, task_name="SciFact", prompt_type=PromptType.query),
                                  tiny.embed_queries(QUERIES))
    np.testing.assert_array_equal(enc.encode(DOCS, task_name="SciFact", prompt_type=PromptType.document),
                                  tiny.embed_documents(DOCS))
    # Symmetric tasks (no prompt type) use the document template: one pass, deterministic.
    np.testing.assert_array_equal(enc.encode(DOCS, task_name="STS12"), tiny.embed_documents(DOCS))
    # Newer mteb versions hand over batches of dicts.
    batches = [{"text": DOCS[:1]}, {"text": DOCS[1:]}]
    np.testing.assert_array_equal(enc.encode(batches, task_name="SciFact", prompt_type="document"),
                                  tiny.embed_documents(DOCS))
    reasoning = MTEBEncoder(tiny, reasoning=True)
    np.testing.assert_allclose(reasoning.encode(QUERIES, task_name="x", prompt_type="query"),
                               tiny.embed_queries(QUERIES, reasoning=True), atol=1e-6)
    with pytest.raises(ValueError, match="prompt_type"):
        enc.encode(QUERIES, task_name="x", prompt_type="passage")
