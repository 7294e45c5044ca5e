"""Corpus validation, prompt assembly and config loading."""

import gzip
import json

import pytest

from searchr3 import EMBED_TOKEN, DataError, EmbedConfig, read_corpus, read_qrels, read_queries
from searchr3.config import load_section, override
from searchr3.data import resolve_dataset
from searchr3.prompts import DOCUMENT_SYSTEM, document_text


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_read_corpus_plain_and_gz(tmp_path):
    lines = [json.dumps({"_id": 1, "title": "T", "text": "x"}), "", json.dumps({"_id": "b", "text": "y"})]
    docs = read_corpus(_write(tmp_path / "corpus.jsonl", lines))
    assert [(d.id, d.title, d.text) for d in docs] == [("1", "T", "x"), ("b", "", "y")]
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as f:
        f.write("\n".join(lines))
    assert read_corpus(tmp_path / "c.jsonl.gz") == docs


@pytest.mark.parametrize("bad, message", [
    ('{"_id": "a", "text": ', r"corpus.jsonl:2: invalid JSON"),
    ('{"text": "no id"}', r"corpus.jsonl:2: missing '_id'"),
    ('{"_id": "x"}', r"corpus.jsonl:2: missing 'text'"),
    ('{"_id": "a", "text": "again"}', r"corpus.jsonl:2: duplicate id 'a' \(first on line 1\)"),
    ('{"_id": "e", "title": "", "text": "  "}', r"corpus.jsonl:2: empty document 'e'"),
    ('{"_id": "n", "text": 5}', r"corpus.jsonl:2: 'text' and 'title' must be strings"),
    ('[1, 2]', r"corpus.jsonl:2: expected a JSON object"),
])
def test_bad_corpus_lines_name_file_and_line(tmp_path, bad, message):
    path = _write(tmp_path / "corpus.jsonl", ['{"_id": "a", "text": "fine"}', bad])
    with pytest.raises(DataError, match=message):
        read_corpus(path)


def test_bundled_dataset_reads(tmp_path):
    folder = resolve_dataset("scifact")
    queries = read_queries(folder)
    qrels = read_qrels(folder / "qrels" / "test.tsv")
    assert len(queries) == 1109 and len(qrels) == 300
    assert all(s == 1 for q in qrels.values() for s in q.values())
    with pytest.raises(FileNotFoundError, match="bundled sets: .*scifact"):
        resolve_dataset("no-such-set")


def test_document_prompt_ends_with_token_and_keeps_literal_text(tiny):
    p = tiny.prompts.document(f"a text that mentions {EMBED_TOKEN} literally")
    assert p.ids[-1] == tiny.embed_token_id
    assert p.ids.count(tiny.embed_token_id) == 1  # the literal in the text is not the special token
    rendered = tiny.tokenizer.decode(p.ids)
    assert DOCUMENT_SYSTEM in rendered and "<|im_start|>assistant\n" in rendered


def test_reasoning_prompt_ends_at_assistant_header(tiny):
    p = tiny.prompts.reasoning("why is the sky blue")
    assert tiny.tokenizer.decode(p.ids).endswith("why is the sky blue<|im_end|>\n<|im_start|>assistant\n")


def test_document_text_joins_title():
    assert document_text(" Title ", "Body ") == "Title\nBody"
    assert document_text("", "Body") == "Body"


def test_config_rejects_unknown_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("embed:\n  batch_size: 4\n  max_lenght: 9\n")
    with pytest.raises(ValueError, match=r"c.yaml \[embed\]: unknown key 'max_lenght' for EmbedConfig"):
        load_section(path, "embed", EmbedConfig)
    path.write_text("embed:\n  batch_size: 4\n")
    assert load_section(path, "embed", EmbedConfig).batch_size == 4
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        EmbedConfig(batch_size=0)


def test_override_parses_yaml_values_and_rejects_unknown_keys():
    """`--set key=value` on the train commands: typed values, validation, the original untouched."""
    base = EmbedConfig(batch_size=4)
    new = override(base, ["batch_size=8", "top_p=0.5", "reasoning_tokens = 32"])
    assert (new.batch_size, new.top_p, new.reasoning_tokens) == (8, 0.5, 32)
    assert base.batch_size == 4 and override(base, None) == base
    with pytest.raises(ValueError, match=r"--set: unknown key 'batch' for EmbedConfig"):
        override(base, ["batch=8"])
    with pytest.raises(ValueError, match=r"expected key=value, got 'batch_size'"):
        override(base, ["batch_size"])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        override(base, ["batch_size=0"])


def test_quickstart_config_loads():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
    assert load_section(path, "embed", EmbedConfig).reasoning_tokens == 64


def test_every_shipped_config_loads():
    """Each YAML in configs/ builds its dataclasses (unknown keys would raise)."""
    from pathlib import Path

    from searchr3.hybrid import load_hybrid_config
    from searchr3.serve import ServeConfig
    from searchr3.train.grpo import load_rl_config
    from searchr3.train.rft import load_rft_config
    from searchr3.train.sft_config import load_sft_config

    folder = Path(__file__).resolve().parents[1] / "configs"
    loaders = {"quickstart": lambda p: load_section(p, "embed", EmbedConfig), "serve": lambda p: load_section(
        p, "serve", ServeConfig), "sft": load_sft_config, "rl": load_rl_config, "hybrid": load_hybrid_config,
               "rft": load_rft_config}
    paths = sorted(folder.glob("*.yaml"))
    assert len(paths) >= 6
    for path in paths:
        kind = next(k for k in loaders if path.stem.startswith(k))
        assert loaders[kind](path) is not None
    assert load_section(folder / "serve.yaml", "embed", EmbedConfig, missing_ok=True) is None
    assert load_hybrid_config(folder / "serve.yaml") == load_hybrid_config(folder / "hybrid.yaml")


def test_dataset_sample_keeps_judged_documents_and_is_seeded():
    from searchr3.data import load_dataset

    full = load_dataset("birco-wtb", "test")
    qids = sorted(full.queries)[:10]
    small = full.sample(qids, max_docs=100)
    judged = {d for q in qids for d in full.qrels[q]}
    ids = [d.id for d in small.corpus]
    assert len(ids) == 100 and judged <= set(ids)
    assert ids == [d.id for d in full.corpus if d.id in set(ids)]  # corpus order kept
    assert sorted(small.queries) == qids and set(small.qrels) == set(qids)
    assert ids == [d.id for d in full.sample(qids, max_docs=100).corpus]
    assert ids != [d.id for d in full.sample(qids, max_docs=100, seed=1).corpus]
    assert len(full.sample(qids).corpus) == len(full.corpus)
    assert len(full.sample(qids, max_docs=1).corpus) == len(judged)  # judged documents are never dropped
    with pytest.raises(KeyError, match="not in"):
        full.sample(["no-such-query"], max_docs=10)
