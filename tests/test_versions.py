"""Versioned names, aliases and weight fingerprints: an index opens only with the weights that built it."""

import shutil

import pytest
import torch

from searchr3 import ALIASES, DEFAULT_MODEL, RELEASED_MODELS, IndexMismatchError, SearchR3, VectorIndex, build_index
from searchr3.assets import canonical_name, resolve_model
from searchr3.data import Document
from searchr3.durable import DurableIndex

DOCS = [Document("a", "Paris", "Paris is the capital of France."), Document("b", "Rome", "Rome is in Italy.")]


def test_aliases_point_at_versioned_releases_and_the_default_is_trained():
    assert set(ALIASES.values()) <= set(RELEASED_MODELS)
    assert canonical_name(DEFAULT_MODEL) in RELEASED_MODELS  # never the untrained base
    assert resolve_model("searchr3-smollm2-135m-sft") == RELEASED_MODELS[ALIASES["searchr3-smollm2-135m-sft"]].path


def test_released_adapters_share_one_tokenizer_and_are_stored_in_bf16():
    from safetensors import safe_open

    for release in RELEASED_MODELS.values():
        assert not (release.path / "tokenizer.json").exists()
        with safe_open(release.path / "adapter_model.safetensors", "pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}


def test_weights_fingerprint_ignores_dtype_and_follows_the_files(tiny_folder, tmp_path):
    fp32 = SearchR3.from_pretrained(tiny_folder, dtype="fp32", device="cpu")
    bf16 = SearchR3.from_pretrained(tiny_folder, dtype="bf16", device="cpu")
    assert fp32.weights_fingerprint == bf16.weights_fingerprint
    assert fp32.fingerprint != bf16.fingerprint  # output caches still tell the dtypes apart
    other = tmp_path / "other"
    shutil.copytree(tiny_folder, other)
    from safetensors.torch import load_file, save_file

    weights = load_file(other / "model.safetensors")
    name = next(k for k in weights if k.endswith("q_proj.weight"))
    weights[name] = weights[name] + 0.01
    save_file(weights, other / "model.safetensors", metadata={"format": "pt"})
    assert SearchR3.from_pretrained(other, device="cpu").weights_fingerprint != fp32.weights_fingerprint


def test_an_index_refuses_other_weights_under_the_same_name(tiny_folder, tiny_config, tmp_path):
    """Retraining into the same folder keeps the name; the saved index must still be refused."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_folder, folder)
    model = SearchR3.from_pretrained(folder, dtype="fp32", device="cpu", config=tiny_config)
    build_index(model, DOCS).save(tmp_path / "ix")
    VectorIndex.load(tmp_path / "ix", model.name, model.weights_fingerprint)  # same weights: fine

    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    weights = {k: v * 1.01 for k, v in weights.items()}
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    retrained = SearchR3.from_pretrained(folder, dtype="fp32", device="cpu", config=tiny_config)
    assert retrained.name == model.name
    with pytest.raises(IndexMismatchError) as err:
        VectorIndex.load(tmp_path / "ix", retrained.name, retrained.weights_fingerprint)
    message = str(err.value)
    assert model.weights_fingerprint in message and retrained.weights_fingerprint in message
    with pytest.raises(IndexMismatchError):
        DurableIndex.open(tmp_path / "ix", retrained.name, retrained.dim, fingerprint=retrained.weights_fingerprint)


def test_an_old_index_that_records_only_an_alias_is_refused(tiny, tmp_path):
    index = VectorIndex(tiny.dim, "searchr3-smollm2-135m-sft")  # as saved before fingerprints
    index.add(["a"], tiny.embed_documents(["x"]))
    index.save(tmp_path / "ix")
    with pytest.raises(IndexMismatchError, match="rebuild"):
        VectorIndex.load(tmp_path / "ix", "searchr3-smollm2-135m-sft", "0123456789abcdef")
