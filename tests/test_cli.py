"""CLI smoke tests on the tiny model: embed, index build, search, and bad input."""

import json
from pathlib import Path

import numpy as np

from searchr3 import VectorIndex
from searchr3.cli import main


def _corpus(tmp_path, extra=None):
    rows = [{"_id": f"d{i}", "title": f"Title {i}", "text": f"document number {i} about topic {i % 3}"}
            for i in range(6)]
    lines = [json.dumps(r) for r in rows] + ([extra] if extra else [])
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_index_build_and_search(tiny_folder, tmp_path, capsys):
    out = tmp_path / "ix"
    assert main(["index", "build", "--model", str(tiny_folder), "--corpus", str(_corpus(tmp_path)),
                 "--out", str(out), "--max-length", "32"]) == 0
    index = VectorIndex.load(out)
    assert len(index) == 6 and index.model == str(tiny_folder.resolve())
    capsys.readouterr()
    assert main(["search", "--index", str(out), "-k", "3", "topic one"]) == 0
    text = capsys.readouterr().out
    assert "query: topic one" in text and text.count("Title ") == 3
    assert main(["search", "--index", str(out), "-k", "2", "--reasoning", "--max-new-tokens", "3",
                 "--json", "topic one"]) == 0
    rec = json.loads(capsys.readouterr().out.strip())
    assert rec["forced"] is True and isinstance(rec["trace"], str) and len(rec["hits"]) == 2


def test_bad_corpus_writes_nothing(tiny_folder, tmp_path, capsys):
    out = tmp_path / "ix"
    corpus = _corpus(tmp_path, extra='{"_id": "d1", "text": "duplicate"}')
    assert main(["index", "build", "--model", str(tiny_folder), "--corpus", str(corpus), "--out", str(out)]) == 2
    assert "corpus.jsonl:7: duplicate id 'd1'" in capsys.readouterr().err
    assert not out.exists()


import pytest  # noqa: E402


@pytest.mark.parametrize("content,message", [
    (b'{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "caf\xe9"}\n', "corpus.jsonl:2: not valid UTF-8 (byte 26"),
    (b'{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "x \\ud800 y"}\n', "corpus.jsonl:2: 'text' holds a lone surrogate"),
    (b'\xef\xbb\xbf{"_id": "a", "text": "ok"}\n', "corpus.jsonl:1: the file starts with a byte-order mark"),
    (b"", "corpus.jsonl: no documents"),
    (b"\n\n", "corpus.jsonl: no documents"),
])
def test_bad_bytes_in_a_corpus_are_named_before_any_model_loads(tmp_path, capsys, content, message):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(content)
    out = tmp_path / "ix"
    # the model does not exist: an error about the file shows the file was read first
    assert main(["index", "build", "--model", "no-such-model", "--corpus", str(corpus), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not out.exists()


def test_bad_bytes_in_qrels_and_embed_input_are_named(tmp_path, capsys):
    from searchr3.data import DataError, read_qrels

    qrels = tmp_path / "test.tsv"
    qrels.write_bytes(b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td\xff\t1\n")
    with pytest.raises(DataError, match="test.tsv:3: not valid UTF-8"):
        read_qrels(qrels)
    texts = tmp_path / "texts.txt"
    texts.write_bytes(b"fine\nbad \xc3\x28\n")
    assert main(["embed", "--model", "no-such-model", "--input", str(texts)]) == 2
    assert "texts.txt:2: not valid UTF-8" in capsys.readouterr().err


def test_embed_to_npy_and_jsonl(tiny_folder, tmp_path, capsys):
    npy = tmp_path / "v.npy"
    assert main(["embed", "--model", str(tiny_folder), "--documents", "--output", str(npy), "one", "two"]) == 0
    v = np.load(npy)
    assert v.shape == (2, 64)
    assert main(["embed", "--model", str(tiny_folder), "--reasoning", "--max-length", "16", "why"]) == 0
    rec = json.loads(capsys.readouterr().out.strip())
    assert len(rec["embedding"]) == 64 and "trace" in rec


def test_unknown_model_is_a_clear_error(tmp_path, capsys):
    assert main(["embed", "--model", str(tmp_path / "nowhere"), "x"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_eval_max_docs_samples_the_corpus(tmp_path, capsys):
    out = tmp_path / "bm25.json"
    assert main(["eval", "--model", "bm25", "--data", "birco-wtb", "--max-queries", "20", "--max-docs", "150",
                 "--output", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["data"]["docs"] == 150 and rec["data"]["max_docs"] == 150
    assert rec["data"]["queries_evaluated"] == 20 and len(rec["modes"]["off"]["per_query"]) == 20
    assert main(["eval", "--model", "bm25", "--data", "birco-wtb", "--max-docs", "0"]) == 2
    assert "max_docs must be >= 1" in capsys.readouterr().err


def test_train_set_overrides_reach_the_trainers(monkeypatch, tmp_path):
    """`--set` / `--set-env` change the loaded config (typed) before training starts."""
    import searchr3.train.grpo as grpo
    import searchr3.train.sft as sft

    configs = Path(__file__).resolve().parents[1] / "configs"
    seen = {}
    monkeypatch.setattr(sft, "train_sft", lambda config, output, resume=False: seen.update(sft=config))
    monkeypatch.setattr(grpo, "train_rl", lambda config, env, output, resume=False: seen.update(rl=config, env=env))
    assert main(["train", "sft", "--config", str(configs / "sft-ablation.yaml"), "--output", str(tmp_path / "s"),
                 "--set", "w_sft=0.1", "--set", "sources=[scifact:train]"]) == 0
    assert seen["sft"].w_sft == 0.1 and seen["sft"].sources == ["scifact:train"] and seen["sft"].steps == 30
    assert main(["train", "rl", "--config", str(configs / "rl-cpu.yaml"), "--output", str(tmp_path / "r"),
                 "--set", "w_aux=0", "--set-env", "full_every=5"]) == 0
    assert seen["rl"].w_aux == 0 and seen["env"].full_every == 5


_SERVE_PROBE = """
import sys
import numpy as np
import searchr3.runtime as runtime
import searchr3.serve
from searchr3.cli import main

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

def kept_after_free():
    before = rss_mb()
    chunks = [np.ones(2**20) for _ in range(25)]  # 25 x 8 MB, each over glibc's default mmap threshold
    del chunks
    return rss_mb() - before

def probe(service, **kwargs):  # stands in for uvicorn, after everything `serve` sets up
    print("tuned", runtime._done, "kept", round(kept_after_free()))
    runtime.tune_malloc()  # the control: what the training settings would keep
    print("tuned", runtime._done, "kept", round(kept_after_free()))

searchr3.serve.run = probe
sys.exit(main(["serve", "--model", sys.argv[1], "--index", sys.argv[2], "--max-length", "32"]))
"""


def test_serve_does_not_take_the_training_malloc_settings(tiny_folder, tmp_path):
    """A long-running server must hand freed memory back: `searchr3 serve` leaves glibc's
    malloc as it is, where the training settings keep freed memory in the process."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _SERVE_PROBE, str(tiny_folder), str(tmp_path / "ix")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line.split() for line in done.stdout.splitlines() if line.startswith("tuned")]
    (_, served_tuned, _, served_kept), (_, control_tuned, _, control_kept) = lines
    assert served_tuned == "False" and int(served_kept) < 50  # MB of the 200 MB freed
    assert control_tuned == "True" and int(control_kept) > 150
