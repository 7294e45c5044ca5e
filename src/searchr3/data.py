"""BEIR-layout datasets: read and validate corpus, queries and qrels; name bundled sets.

Layout: `corpus.jsonl[.gz]` (`_id`, `title`, `text`), `queries.jsonl[.gz]` (`_id`, `text`),
`qrels/<split>.tsv` (header `query-id corpus-id score`). Every error names file and line.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class DataError(ValueError):
    """Malformed dataset input; the message names file and line."""


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str


def project_data_dir() -> Path:
    """Return the `data/` folder of bundled sets (next to the source tree in a checkout)."""
    return Path(__file__).resolve().parents[2] / "data"


def resolve_dataset(name_or_path: str | Path) -> Path:
    """Return a dataset folder for a bundled name (`scifact`) or a path."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    bundled = project_data_dir() / str(name_or_path)
    if bundled.is_dir():
        return bundled
    known = sorted(p.name for p in project_data_dir().iterdir() if p.is_dir()) if project_data_dir().is_dir() else []
    raise FileNotFoundError(f"no dataset at {name_or_path!r} (bundled sets: {', '.join(known) or 'none'})")


def _find(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder} has no {stem}.jsonl or {stem}.jsonl.gz")


def _open_text(path: Path) -> io.TextIOBase:
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _jsonl(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) for each non-blank line, checking JSON and required string fields."""
    with _open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            for key in required:
                if key not in rec:
                    raise DataError(f"{path}:{lineno}: missing {key!r}")
            rec["_id"] = str(rec["_id"])
            yield lineno, rec


def read_corpus(path: str | Path, allow_empty: bool = False) -> list[Document]:
    """Return the documents of a corpus file (or a dataset folder) in file order.

    Raises DataError on invalid JSON, a missing `_id`/`text`, a non-string text, a
    repeated id or (unless `allow_empty`) an empty document, naming file and line.
    """
    path = Path(path)
    if path.is_dir():
        path = _find(path, "corpus")
    docs: list[Document] = []
    seen: dict[str, int] = {}
    for lineno, rec in _jsonl(path, ("_id", "text")):
        title, text = rec.get("title") or "", rec["text"]
        if not isinstance(text, str) or not isinstance(title, str):
            raise DataError(f"{path}:{lineno}: 'text' and 'title' must be strings (id {rec['_id']!r})")
        if rec["_id"] in seen:
            raise DataError(f"{path}:{lineno}: duplicate id {rec['_id']!r} (first on line {seen[rec['_id']]})")
        if not allow_empty and not (title.strip() or text.strip()):
            raise DataError(f"{path}:{lineno}: empty document {rec['_id']!r}")
        seen[rec["_id"]] = lineno
        docs.append(Document(rec["_id"], title, text))
    return docs


def read_queries(path: str | Path) -> dict[str, str]:
    """Return {query id: text} from a queries file or a dataset folder."""
    path = Path(path)
    if path.is_dir():
        path = _find(path, "queries")
    queries: dict[str, str] = {}
    for lineno, rec in _jsonl(path, ("_id", "text")):
        if not isinstance(rec["text"], str) or not rec["text"].strip():
            raise DataError(f"{path}:{lineno}: empty or non-string query text (id {rec['_id']!r})")
        if rec["_id"] in queries:
            raise DataError(f"{path}:{lineno}: duplicate query id {rec['_id']!r}")
        queries[rec["_id"]] = rec["text"]
    return queries


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """Return {query id: {doc id: relevance}} from a `query-id corpus-id score` TSV."""
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, row in enumerate(csv.reader(f, delimiter="\t"), start=1):
            if not row or (lineno == 1 and row[0] == "query-id"):
                continue
            if len(row) != 3:
                raise DataError(f"{path}:{lineno}: expected 3 tab-separated fields, got {len(row)}")
            try:
                score = int(float(row[2]))
            except ValueError:
                raise DataError(f"{path}:{lineno}: score {row[2]!r} is not a number") from None
            qrels.setdefault(row[0], {})[row[1]] = score
    return qrels
