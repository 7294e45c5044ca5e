"""quantize_int8: SmoothQuant-calibrated int8 keeps the vectors, reuses prompt prefixes, and says what it is;
dtype="int8" is refused with the way to opt in, since int8 missed the quality bar a dtype must meet."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from searchr3 import SearchR3, quantize_int8
from searchr3._extras import MissingExtra
from searchr3.quantization import calibration_texts, is_quantized

DOCS = ["Paris is the capital and largest city of France.", "A cat sat on the mat.",
        "Photosynthesis converts light energy into chemical energy stored in glucose molecules.",
        "Rust is a systems programming language focused on memory safety."]
QUERIES = ["capital of France", "how do plants make sugar", "memory safe language"]


@pytest.fixture(scope="module")
def pair(tiny_folder):
    from searchr3 import EmbedConfig

    config = EmbedConfig(batch_size=4, max_length=48, reasoning_tokens=6)
    fp32 = SearchR3.from_pretrained(tiny_folder, dtype="fp32", device="cpu", config=config)
    int8 = SearchR3.from_pretrained(tiny_folder, dtype="fp32", device="cpu", config=EmbedConfig(**vars(config)))
    quantize_int8(int8)
    return fp32, int8


def _weight_kinds(model: SearchR3) -> dict[str, str]:
    """Each linear layer's weight class: `Tensor` where it stayed in full precision."""
    return {name: type(m.weight.data).__name__ for name, m in model.model.named_modules()
            if isinstance(m, torch.nn.Linear)}


def test_shipped_calibration_texts_exist_and_are_not_tiny():
    documents, queries = calibration_texts()
    assert len(documents) >= 32 and len(queries) >= 32
    assert all(len(d.split()) >= 20 for d in documents)


def test_int8_quantises_every_linear_but_lm_head(pair):
    fp32, int8 = pair
    assert int8.precision == "int8" and fp32.precision == "float32"
    kinds = _weight_kinds(int8)
    assert kinds.pop("lm_head") == "Tensor"
    assert kinds and all(k != "Tensor" for k in kinds.values()), kinds


def test_int8_keep_leaves_the_named_layers_in_full_precision(tiny_folder):
    from searchr3 import EmbedConfig

    model = SearchR3.from_pretrained(tiny_folder, dtype="fp32", device="cpu", config=EmbedConfig(max_length=48))
    quantize_int8(model, documents=DOCS, queries=QUERIES, keep=("down_proj",))
    kinds = _weight_kinds(model)
    kept = {name for name, kind in kinds.items() if kind == "Tensor"}
    assert kept == {n for n in kinds if n.endswith(("down_proj", "lm_head"))}
    assert len(kept) < len(kinds)


def test_int8_vectors_are_close_to_fp32_but_not_equal(pair):
    fp32, int8 = pair
    for fn in (lambda m: m.embed_documents(DOCS), lambda m: m.embed_queries(QUERIES)):
        a, b = fn(fp32), fn(int8)
        np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
        cos = np.sum(a * b, axis=1)
        assert cos.min() > 0.95, cos
        assert np.abs(a - b).max() > 1e-6, "int8 gave fp32's vectors exactly: nothing was quantised"


def test_int8_prefix_reuse_equals_full_prompts(pair):
    _, int8 = pair
    int8.prefix_cache.enabled = True
    reused = int8.embed_documents(DOCS)
    assert int8.prefix_cache._kv
    int8.prefix_cache.enabled = False
    try:
        full = int8.embed_documents(DOCS)
    finally:
        int8.prefix_cache.enabled = True
    assert np.sum(reused * full, axis=1).min() > 0.999


def test_int8_reasoning_runs_and_is_deterministic(pair):
    _, int8 = pair
    first = int8.reason(QUERIES[:2])
    second = int8.reason(QUERIES[:2])
    assert [r.trace for r in first] == [r.trace for r in second]
    np.testing.assert_allclose(int8.stack(first), int8.stack(second), atol=1e-6)


def test_int8_keys_caches_apart_but_indexes_together(pair):
    fp32, int8 = pair
    assert int8.fingerprint != fp32.fingerprint  # cached vectors of one are not the other's
    assert int8.weights_fingerprint == fp32.weights_fingerprint  # same files: an index built by either serves both


def test_int8_refuses_what_it_cannot_do(pair, tiny_folder):
    _, int8 = pair
    with pytest.raises(ValueError, match="already quantised"):
        quantize_int8(int8)
    bf16 = SearchR3.from_pretrained(tiny_folder, dtype="bf16", device="cpu")
    with pytest.raises(ValueError, match="fp32 model on the CPU"):
        quantize_int8(bf16)
    with pytest.raises(ValueError, match="at least one document"):
        quantize_int8(SearchR3.from_pretrained(tiny_folder, dtype="fp32", device="cpu"), documents=[], queries=[])
    assert not is_quantized(bf16.model)


def test_missing_torchao_names_the_extra(tiny_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao", None)
    with pytest.raises(MissingExtra, match=r"searchr3\[int8\]"):
        quantize_int8(SearchR3.from_pretrained(tiny_folder, dtype="fp32", device="cpu"))


def test_dtype_int8_is_refused_with_the_way_to_opt_in(tiny_folder):
    with pytest.raises(ValueError, match=r"not offered.*0\.011.*quantize_int8\(model\)"):
        SearchR3.from_pretrained(tiny_folder, dtype="int8", device="cpu")


def test_importing_torchao_after_searchr3_prints_nothing():
    """torchao's import warns about CUDA kernels and a deprecated pytree call on every CPU machine;
    peft imports it for every adapter, so unfiltered it would print on each model load."""
    done = subprocess.run([sys.executable, "-c", "import searchr3, torchao, peft"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Failed to load" not in done.stderr and "Enum subclass" not in done.stderr, done.stderr


@pytest.mark.parametrize("fast", [True, False])
def test_int8_warns_where_the_cpu_has_no_int8_dot_product(tiny_folder, monkeypatch, caplog, fast):
    from searchr3 import quantization

    monkeypatch.setattr(quantization, "cpu_supports_int8_dot", lambda: fast)
    with caplog.at_level("WARNING", logger="searchr3.quantization"):
        model = SearchR3.from_pretrained(tiny_folder, dtype="fp32", device="cpu")
        quantize_int8(model)
    assert is_quantized(model.model)  # it still works: the warning is about speed, not results
    warned = [r for r in caplog.records if "no int8 dot-product" in r.getMessage()]
    assert bool(warned) is not fast


def test_cpu_flags_decide_int8_and_bf16(monkeypatch):
    from searchr3 import precision

    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2", "avx512f", "avx512_vnni"})
    assert precision.cpu_supports_int8_dot() and not precision.cpu_supports_bf16()
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2", "fma"})
    assert not precision.cpu_supports_int8_dot() and not precision.cpu_supports_bf16()
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"amx_bf16", "amx_int8"})
    assert precision.cpu_supports_int8_dot() and precision.cpu_supports_bf16()
