"""The model: token set-up, the read-out, batching, one-pass reasoning, bad input."""

import numpy as np
import pytest
import torch

from searchr3 import EMBED_TOKEN, EmbedConfig, SearchR3, decoding, embed_token_states

DOCS = ["Aspirin inhibits platelet aggregation.", "", "short",
        "Mitochondria produce most of the chemical energy needed by the cell. " * 3,
        "The Eiffel Tower is in Paris."]


def test_embed_token_added_exactly_once_and_survives_save_load(tiny, tiny_folder, tmp_path):
    again = SearchR3.from_pretrained(tiny_folder, dtype="fp32", device="cpu")
    assert again.embed_token_id == tiny.embed_token_id == len(tiny.tokenizer) - 1
    assert list(tiny.tokenizer.get_vocab()).count(EMBED_TOKEN) == 1
    rows = tiny.model.get_input_embeddings().weight
    assert rows.shape[0] == len(tiny.tokenizer)
    # the new row starts at the mean of the existing rows
    torch.testing.assert_close(rows[tiny.embed_token_id], rows[:-1].mean(0))
    saved = tiny.save_pretrained(tmp_path / "saved")
    reloaded = SearchR3.from_pretrained(saved, dtype="fp32", device="cpu")
    assert len(reloaded.tokenizer) == len(tiny.tokenizer)
    assert reloaded.embed_token_id == tiny.embed_token_id
    assert reloaded.config == tiny.config
    np.testing.assert_allclose(reloaded.embed_documents(DOCS), tiny.embed_documents(DOCS), atol=1e-6)


def test_a_saved_config_is_checked_on_load(tiny, tmp_path):
    import json

    from searchr3.config import ConfigError

    saved = tiny.save_pretrained(tmp_path / "saved")
    meta = json.loads((saved / "searchr3.json").read_text())
    meta["config"]["batch_size"] = "16"  # hand-edited into a string
    (saved / "searchr3.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"searchr3\.json \(config\).*batch_size"):
        SearchR3.from_pretrained(saved, dtype="fp32", device="cpu")


def test_save_overwrites_atomically(tiny, tmp_path):
    target = tmp_path / "m"
    tiny.save_pretrained(target)
    tiny.save_pretrained(target)  # replacing an existing model leaves one complete folder
    assert (target / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_readout_picks_last_embed_token_under_any_padding():
    E = 7
    ids = torch.tensor([[0, 0, 3, 4, E],  # left padded
                        [3, E, 5, E, 0],  # two tokens, right padded: the last one counts
                        [E, 1, 2, 3, 4]])
    hidden = torch.randn(3, 5, 8)
    out = embed_token_states(hidden, ids, E)
    expected = torch.nn.functional.normalize(torch.stack([hidden[0, 4], hidden[1, 3], hidden[2, 0]]), dim=-1)
    torch.testing.assert_close(out, expected)
    assert out.dtype == torch.float32 and out.shape == (3, 8)


def test_readout_names_the_row_without_token():
    ids = torch.tensor([[1, 2, 7], [1, 2, 3]])
    with pytest.raises(ValueError, match=r"row 1 \('q-42'\) has no <\|embed_token\|>"):
        embed_token_states(torch.randn(2, 3, 4), ids, 7, names=["q-41", "q-42"])


def test_vectors_are_normalised_float32(tiny):
    v = tiny.embed_documents(DOCS)
    assert v.shape == (len(DOCS), tiny.dim) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(v[0], v[4])  # different texts, different vectors


def test_batch_equals_one_by_one_with_mixed_lengths(tiny):
    batched = tiny.embed_documents(DOCS, batch_size=5)
    single = np.stack([tiny.embed_documents([d])[0] for d in DOCS])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    queries = tiny.embed_queries(DOCS, batch_size=3)
    np.testing.assert_allclose(queries, np.stack([tiny.embed_queries([d])[0] for d in DOCS]), atol=1e-5)
    assert not np.allclose(queries, batched, atol=1e-3)  # query and document templates differ


def test_readout_position_matches_unpadded_forward(tiny):
    """The collated batch reads the state at the embed token, same as each row alone."""
    prompts = [tiny.prompts.document(d).ids for d in DOCS]
    ids, mask, pos = tiny.collate(prompts)
    assert (ids[:, -1] == tiny.embed_token_id).all()  # left padding puts every token last
    with torch.inference_mode():
        hidden, _ = tiny.hidden_states(ids, mask, pos)
        batched = embed_token_states(hidden, ids, tiny.embed_token_id)
        for row, p in enumerate(prompts):
            t = torch.tensor([p])
            h, _ = tiny.hidden_states(t, torch.ones_like(t), torch.arange(len(p))[None])
            torch.testing.assert_close(batched[row], embed_token_states(h, t, tiny.embed_token_id)[0],
                                       atol=1e-5, rtol=0)


def _full_forward(model, prompt_ids, generated):
    ids = torch.tensor([prompt_ids + generated])
    with torch.inference_mode():
        h, _ = model.hidden_states(ids, torch.ones_like(ids), torch.arange(ids.shape[1])[None])
        return embed_token_states(h, ids, model.embed_token_id)[0].numpy()


@pytest.mark.parametrize("sample", [False, True])
def test_one_pass_reasoning_equals_full_forward(tiny, sample):
    queries = ["what causes rain", "x", "a much longer question about the history of the french revolution"]
    results = tiny.reason(queries, sample=sample, seed=3, batch_size=3)
    for q, r in zip(queries, results):
        assert r.token_ids[-1] == tiny.embed_token_id
        full = _full_forward(tiny, tiny.prompts.reasoning(q).ids, r.token_ids)
        np.testing.assert_allclose(r.vector, full, rtol=0, atol=1e-5)


def test_reasoning_is_deterministic_and_batch_independent(tiny):
    queries = ["what causes rain", "x", "why is the sky blue during the day"]
    batched = tiny.reason(queries, batch_size=3)
    again = tiny.reason(queries, batch_size=3)
    single = [tiny.reason([q])[0] for q in queries]
    for a, b, c in zip(batched, again, single):
        assert a.token_ids == b.token_ids == c.token_ids
        np.testing.assert_allclose(a.vector, c.vector, atol=1e-5)
    np.testing.assert_allclose(tiny.embed_queries(queries, reasoning=True), np.stack([r.vector for r in batched]))


def test_sampling_is_seeded(tiny):
    a = tiny.reason(["rain"] * 3, sample=True, seed=1, max_new_tokens=10)
    b = tiny.reason(["rain"] * 3, sample=True, seed=1, max_new_tokens=10)
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    assert len({tuple(r.token_ids) for r in a}) > 1  # different samples within the batch


def test_token_forced_when_budget_exhausted(tiny):
    for budget in (0, 5):
        r = tiny.reason(["what causes rain"], max_new_tokens=budget)[0]
        assert r.forced
        assert len(r.token_ids) == budget + 1 and r.token_ids[-1] == tiny.embed_token_id
        assert tiny.embed_token_id not in r.token_ids[:-1]


def _scripted(model, script):
    """Replace next-token choice by a script of per-step ids (same id for every row)."""
    steps = iter(script)
    return lambda logits, sampling, generator: torch.full((logits.shape[0],), next(steps), dtype=torch.long)


def test_emitted_token_stops_generation(tiny, monkeypatch):
    hello = tiny.tokenizer(" hello", add_special_tokens=False)["input_ids"][0]
    monkeypatch.setattr(decoding, "next_tokens", _scripted(tiny, [hello, hello, tiny.embed_token_id]))
    r = tiny.reason(["q"], max_new_tokens=10)[0]
    assert not r.forced and r.token_ids == [hello, hello, tiny.embed_token_id]
    assert r.trace == "hello hello"
    full = _full_forward(tiny, tiny.prompts.reasoning("q").ids, r.token_ids)
    np.testing.assert_allclose(r.vector, full, rtol=0, atol=1e-5)


def test_end_of_turn_forces_the_token(tiny, monkeypatch):
    hello = tiny.tokenizer(" hello", add_special_tokens=False)["input_ids"][0]
    eos = tiny.tokenizer.eos_token_id
    monkeypatch.setattr(decoding, "next_tokens", _scripted(tiny, [hello, eos]))
    r = tiny.reason(["q"], max_new_tokens=10)[0]
    assert r.forced and r.token_ids == [hello, tiny.embed_token_id] and r.trace == "hello"


def test_empty_inputs(tiny):
    assert tiny.embed_documents([]).shape == (0, tiny.dim)
    assert tiny.embed_queries([]).shape == (0, tiny.dim)
    assert tiny.embed_queries([], reasoning=True).shape == (0, tiny.dim)
    assert tiny.reason([]) == []
    v = tiny.embed_documents([""])
    assert v.shape == (1, tiny.dim) and abs(np.linalg.norm(v) - 1) < 1e-5


def test_long_text_truncated_with_warning(tiny):
    long = " ".join(["word"] * 500)  # 500 tokens: "word" then " word" x 499
    with pytest.warns(UserWarning, match=r"1 of 2 texts exceed max_length=48 tokens.*texts\[1\], 500 tokens"):
        v = tiny.embed_documents(["short", long])
    np.testing.assert_allclose(v[1], tiny.embed_documents([" ".join(["word"] * 48)])[0], atol=1e-5)


def test_non_string_names_position(tiny):
    with pytest.raises(TypeError, match=r"texts\[2\] is int"):
        tiny.embed_documents(["a", "b", 3])
    with pytest.raises(TypeError, match="single str"):
        tiny.embed_queries("a query")
    with pytest.raises(TypeError, match=r"texts\[0\] is NoneType"):
        tiny.reason([None])


def test_dtype_auto_picks_fp32_without_native_bf16(tiny_folder, monkeypatch):
    import searchr3.precision as precision

    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    assert precision.resolve_dtype("auto", torch.device("cpu")) == torch.float32
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    assert precision.resolve_dtype("auto", torch.device("cpu")) == torch.bfloat16
    m = SearchR3.from_pretrained(tiny_folder, dtype="bf16", device="cpu")
    v = m.embed_documents(["bf16 still returns float32"])
    assert v.dtype == np.float32 and abs(np.linalg.norm(v) - 1) < 1e-3
    with pytest.raises(ValueError, match="unknown dtype"):
        precision.resolve_dtype("fp8", torch.device("cpu"))


def test_min_reasoning_tokens_bars_the_token_until_then(tiny_folder):
    from searchr3 import EmbedConfig, SearchR3

    model = SearchR3.from_pretrained(tiny_folder, dtype="fp32", device="cpu",
                                     config=EmbedConfig(max_length=48, reasoning_tokens=6, min_reasoning_tokens=4))
    for r in model.reason(["why is the sky blue?", "tides"], sample=True, seed=1):
        assert len(r.token_ids) >= 5 and model.embed_token_id not in r.token_ids[:4]
    with pytest.raises(ValueError, match="min_reasoning_tokens"):
        EmbedConfig(reasoning_tokens=4, min_reasoning_tokens=5)


def test_queries_and_documents_have_their_own_lengths(tiny_folder, tmp_path):
    import json

    model = SearchR3.from_pretrained(tiny_folder, dtype="fp32", device="cpu",
                                     config=EmbedConfig(batch_size=4, max_length=48, query_max_length=8))
    long = " ".join(["word"] * 40)  # 40 tokens: whole as a document, cut as a query
    assert not model.prompts.document(long).truncated
    with pytest.warns(UserWarning, match=r"1 of 1 texts exceed query_max_length=8 tokens"):
        cut = model.embed_queries([long])
    np.testing.assert_allclose(cut, model.embed_queries([" ".join(["word"] * 8)]), atol=1e-5)
    assert model.prompts.reasoning(long).text_tokens == 40 and model.prompts.reasoning(long).truncated
    assert not np.allclose(model.embed_documents([long]), model.embed_documents([" ".join(["word"] * 8)]), atol=1e-3)

    saved = model.save_pretrained(tmp_path / "saved")  # both lengths travel with the model
    assert json.loads((saved / "searchr3.json").read_text())["config"]["query_max_length"] == 8
    reloaded = SearchR3.from_pretrained(saved, dtype="fp32", device="cpu")
    assert (reloaded.config.max_length, reloaded.config.query_length) == (48, 8)
    reloaded.set_max_length(20)  # documents only: the saved query length stays
    assert (reloaded.prompts.max_length, reloaded.prompts.query_max_length) == (20, 8)

    meta = json.loads((saved / "searchr3.json").read_text())
    del meta["config"]["query_max_length"]  # a model saved before queries had their own length
    (saved / "searchr3.json").write_text(json.dumps(meta))
    old = SearchR3.from_pretrained(saved, dtype="fp32", device="cpu")
    assert old.config.query_max_length is None and old.prompts.query_max_length == 48
    same = SearchR3.from_pretrained(saved, dtype="fp32", device="cpu",
                                    config=EmbedConfig(batch_size=4, max_length=48, query_max_length=48))
    assert same.prompts.fingerprint == old.prompts.fingerprint  # caches written before stay valid
    assert model.prompts.fingerprint != old.prompts.fingerprint
    with pytest.raises(ValueError, match="query_max_length must be >= 1"):
        EmbedConfig(query_max_length=0)


def test_logits_processor_bars_the_ending_early_and_cuts_the_nucleus():
    proc = decoding.LogitsProcessor(embed_token_id=3, eos_token_id=2, temperature=1.0, top_p=0.9, min_tokens=2)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    early = proc.log_probs(logits, 1).exp()[0]  # token (3) and end of turn (2) barred, then renormalised
    assert early.tolist() == pytest.approx([0.625, 0.375, 0.0, 0.0])
    late = proc.log_probs(logits, 2).exp()[0]  # 0.5 + 0.3 + 0.15 reach 0.9: the last id falls outside
    assert late.tolist() == pytest.approx([0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0])
    kept = proc.log_probs(logits, 2, keep=torch.tensor([3])).exp()[0]  # a scored choice stays possible
    assert kept.tolist() == pytest.approx([0.5, 0.3, 0.15, 0.05])
    per_row = proc.log_probs(logits.expand(2, 4), torch.tensor([0, 5])).exp()
    assert per_row[0, 3] == 0 and per_row[1, 2] > 0  # steps per row: barred in the first only
    assert decoding.next_tokens(proc.log_probs(logits, 0), False, None).tolist() == [0]
