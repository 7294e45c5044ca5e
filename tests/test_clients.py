"""Real third-party clients on a searchr3 model, as they are: mteb.evaluate and sentence-transformers'
InformationRetrievalEvaluator must score a local retrieval task exactly as `searchr3 eval` does."""

import json

import mteb  # the dev extra
import numpy as np
import pytest
import torch
from datasets import Dataset as HFDataset  # mteb's own dependency
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.models import ModelMeta
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

from searchr3 import MTEBEncoder
from searchr3.baselines import SearchR3Retriever
from searchr3.data import load_dataset
from searchr3.evaluate import RetrievalEvaluator
from searchr3.prompts import document_text



def scifact_sample(queries: int, docs: int):
    """The first SciFact test queries over their judged documents plus random others (bundled data)."""
    full = load_dataset("scifact", "test")
    data = full.sample(sorted(full.queries)[:queries], max_docs=docs)
    # The three clients differ on a hit whose id equals the query id (BEIR drops it, ST keeps it): none here.
    assert not set(data.queries) & {d.id for d in data.corpus}
    return data


def mteb_task(data):
    """An mteb retrieval task over a searchr3 Dataset, loaded from memory: nothing is downloaded."""

    class LocalRetrieval(AbsTaskRetrieval):
        ignore_identical_ids = True  # BEIR's rule, as RetrievalEvaluator
        metadata = mteb.TaskMetadata(
            name="SearchR3Local", type="Retrieval", main_score="ndcg_at_10", category="t2t",
            description="A local sample of a bundled searchr3 dataset.", reference=None,
            dataset={"path": "local", "revision": data.fingerprint}, eval_splits=["test"], eval_langs=["eng-Latn"],
            date=None, dialect=None, domains=None, task_subtypes=None, license=None, annotations_creators=None,
            modalities=["text"], sample_creation=None, bibtex_citation=None)

        def load_data(self, num_proc=None, **kwargs):
            split = {"corpus": HFDataset.from_list([{"id": d.id, "title": d.title, "text": d.text}
                                                    for d in data.corpus]),
                     "queries": HFDataset.from_list([{"id": q, "text": t} for q, t in data.queries.items()]),
                     "relevant_docs": data.qrels, "top_ranked": None}
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True

    return LocalRetrieval()


def three_clients(model, data, tmp_path) -> dict[str, tuple[float, dict[str, list[str]]]]:
    """nDCG@10 and each query's top 10 from searchr3's evaluator, mteb.evaluate and ST's IR evaluator."""
    out = {}
    retrieval, scores = RetrievalEvaluator(data).run(SearchR3Retriever(model, reasoning=False, use_cache=False))
    out["searchr3"] = (np.mean([s["ndcg@10"] for s in scores.values()]),
                       {q: sorted(r, key=lambda d: (-r[d], d))[:10] for q, r in retrieval.run.items()})

    result = mteb.evaluate(MTEBEncoder(model), mteb_task(data), cache=None, prediction_folder=tmp_path / "mteb",
                           show_progress_bar=False)
    run = json.loads((tmp_path / "mteb" / "SearchR3Local_predictions.json").read_text())["default"]["test"]
    out["mteb"] = (result.task_results[0].scores["test"][0]["ndcg_at_10"],
                   {q: sorted(r, key=lambda d: (-r[d], d))[:10] for q, r in run.items()})

    evaluator = InformationRetrievalEvaluator(
        data.queries, {d.id: document_text(d.title, d.text) for d in data.corpus},
        {q: {d for d, g in docs.items() if g > 0} for q, docs in data.qrels.items()},
        name="local", write_predictions=True)
    metrics = evaluator(model, output_path=str(tmp_path / "st"))
    lines = (tmp_path / "st" / "Information-Retrieval_evaluation_local_predictions_cosine.jsonl").read_text()
    rows = [json.loads(line) for line in lines.splitlines()]
    out["sentence-transformers"] = (metrics["local_cosine_ndcg@10"],
                                    {r["query_id"]: [h["corpus_id"] for h in r["results"][:10]] for r in rows})
    assert model.model_card_data.results["InformationRetrievalEvaluator/local"] == metrics
    return out


def assert_agree(results):
    ndcg = {name: score for name, (score, _) in results.items()}
    print("nDCG@10:", ndcg)
    assert ndcg["mteb"] == pytest.approx(ndcg["searchr3"], abs=5e-6)  # mteb rounds to 5 decimals
    assert ndcg["sentence-transformers"] == pytest.approx(ndcg["searchr3"], abs=1e-9)
    # The same rankings, not only the same mean: documents were joined and embedded alike.
    assert results["mteb"][1] == results["searchr3"][1] == results["sentence-transformers"][1]


def test_mteb_and_sentence_transformers_score_like_searchr3_eval(tiny, tmp_path):
    data = scifact_sample(queries=20, docs=60)
    results = three_clients(tiny, data, tmp_path)
    assert_agree(results)
    assert 0 < results["searchr3"][0] < 1  # a random model: neither nothing nor everything found


@pytest.mark.integration
def test_clients_agree_on_the_real_model(real_model, tmp_path):
    assert_agree(three_clients(real_model, scifact_sample(queries=5, docs=30), tmp_path))


QUERIES = ["does aspirin thin the blood?", "capital of France"]
DOCS = ["Aspirin inhibits platelet aggregation.", "Paris is the capital of France.", "Cats sleep a lot."]


def test_encode_honours_sentence_transformers_options(tiny):
    docs = tiny.embed_documents(DOCS)
    tensor = tiny.encode_document(DOCS, convert_to_tensor=True, batch_size=1, show_progress_bar=False)
    assert isinstance(tensor, torch.Tensor) and tensor.device == tiny.device
    np.testing.assert_allclose(tensor.numpy(), docs, atol=1e-6)
    listed = tiny.encode_document(DOCS, convert_to_numpy=False)
    assert isinstance(listed, list) and len(listed) == 3 and listed[0].shape == (tiny.dim,)
    one = tiny.encode_query(QUERIES[0], convert_to_tensor=True)
    assert one.shape == (tiny.dim,)
    np.testing.assert_array_equal(one.numpy(), tiny.embed_queries(QUERIES[:1])[0])
    cut = tiny.encode_document(DOCS, truncate_dim=8)
    np.testing.assert_array_equal(cut, docs[:, :8])
    unit = tiny.encode_document(DOCS, truncate_dim=8, normalize_embeddings=True)
    np.testing.assert_allclose(unit, docs[:, :8] / np.linalg.norm(docs[:, :8], axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_array_equal(tiny.encode(DOCS), docs)  # symmetric input: the document template


def test_encode_refuses_what_it_cannot_honour(tiny):
    with pytest.raises(ValueError, match="prompt and prompt_name are not supported"):
        tiny.encode_query(QUERIES, prompt_name="query")
    with pytest.raises(ValueError, match="prompt and prompt_name are not supported"):
        tiny.encode_document(DOCS, prompt="passage: ")
    with pytest.raises(ValueError, match="float32 vectors only"):
        tiny.encode_document(DOCS, precision="int8")
    with pytest.raises(ValueError, match="sentence embeddings only"):
        tiny.encode(DOCS, output_value="token_embeddings")
    with pytest.raises(TypeError, match=r"encode_query\(\) got unexpected keyword argument\(s\): normalize$"):
        tiny.encode_query(QUERIES, normalize=True)


def test_similarity_and_pairwise_are_cosine(tiny):
    q, d = tiny.encode_query(QUERIES), tiny.encode_document(DOCS[:2])
    assert tiny.similarity_fn_name == "cosine"
    pairwise = tiny.similarity_pairwise(q, 2 * d)  # scale does not change a cosine
    np.testing.assert_allclose(pairwise.numpy(), np.diag(q @ d.T), atol=1e-6)
    np.testing.assert_allclose(tiny.similarity_pairwise(torch.from_numpy(q), list(torch.from_numpy(d))).numpy(),
                               pairwise.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="equal shapes"):
        tiny.similarity_pairwise(q, tiny.encode_document(DOCS))


def test_mteb_encoder_rejoins_documents_and_describes_the_model(tiny):
    enc = MTEBEncoder(tiny)
    # A corpus batch as mteb builds it: "text" is mteb's own "title body" join; searchr3's is used instead.
    batch = {"id": ["a", "b"], "text": ["Aspirin Aspirin thins blood.", "no title"],
             "body": ["Aspirin thins blood.", "no title"], "title": ["Aspirin", ""]}
    np.testing.assert_array_equal(enc.encode([batch], prompt_type="document"),
                                  tiny.embed_documents(["Aspirin\nAspirin thins blood.", "no title"]))
    assert isinstance(enc, mteb.EncoderProtocol)  # runtime-checkable: every member mteb calls is there
    meta = enc.mteb_model_meta
    assert isinstance(meta, ModelMeta)
    assert (meta.revision, meta.embed_dim, meta.similarity_fn_name) == (tiny.fingerprint, tiny.dim, "cosine")
    assert meta.experiment_kwargs is None and MTEBEncoder(tiny, reasoning=True).mteb_model_meta.experiment_kwargs
    np.testing.assert_allclose(enc.similarity_pairwise(np.eye(2), np.eye(2)).numpy(), [1.0, 1.0])
