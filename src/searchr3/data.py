"""BEIR-layout datasets: read and validate corpus, queries and qrels; name bundled sets.

Layout: `corpus.jsonl[.gz]` (`_id`, `title`, `text`), `queries.jsonl[.gz]` (`_id`, `text`),
`qrels/<split>.tsv` (header `query-id corpus-id score`), and optionally `negatives/<split>.tsv[.gz]`
(header `query-id corpus-id`): hard negatives a set supplies for its training queries (searchr3's
extension; BEIR sets have none). Every error names file and line.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import random
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class DataError(ValueError):
    """Malformed dataset input; the message names file and line."""


@dataclass(frozen=True)
class Document:
    """One corpus entry. Every retriever and client embeds or indexes it as
    `prompts.document_text(title, text)`: title and body on separate lines."""

    id: str
    title: str
    text: str


DATA_ENV = "SEARCHR3_DATA"  # a folder of BEIR-layout sets, found by name; the wheel ships no data


def project_data_dir() -> Path:
    """Return the `data/` folder of bundled sets in a checkout (it exists only there)."""
    return Path(__file__).resolve().parents[2] / "data"


# Sets built on first use, by name: each builder returns the set's folder. Builders register
# themselves (wiki.py, imported by the package), so this module imports none of them.
BUILDERS: dict[str, Callable[[], Path]] = {}


def register_builder(name: str, build: Callable[[], Path]) -> None:
    """Make `name` resolve to the folder `build()` returns (building it on first use)."""
    BUILDERS[name] = build


def data_dirs() -> list[Path]:
    """Folders whose sub-folders are set names: `$SEARCHR3_DATA`, then a checkout's `data/`."""
    folders = []
    if os.environ.get(DATA_ENV):
        folder = Path(os.environ[DATA_ENV]).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"${DATA_ENV} is {os.environ[DATA_ENV]!r}, which is not a folder")
        folders.append(folder)
    checkout = project_data_dir()
    if checkout.is_dir() and (checkout.parent / "pyproject.toml").is_file():
        folders.append(checkout)
    return folders


def bundled_names() -> list[str]:
    """Names usable in place of a dataset path: sets in data_dirs() and sets built on first use."""
    shipped = {p.name for folder in data_dirs() for p in folder.iterdir() if p.is_dir()}
    return sorted(shipped) + sorted(BUILDERS)


def resolve_dataset(name_or_path: str | Path) -> Path:
    """Return a dataset folder for a bundled name (`scifact`, `wiki-known-item`) or a path."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    if str(name_or_path) in BUILDERS:
        return BUILDERS[str(name_or_path)]()
    folders = data_dirs()
    for folder in folders:
        if (folder / str(name_or_path)).is_dir():
            return folder / str(name_or_path)
    if not folders:
        raise FileNotFoundError(
            f"no dataset at {name_or_path!r}: not a folder, and the bundled sets do not ship with the installed "
            f"package. Point ${DATA_ENV} at a folder of BEIR-layout sets, such as the data/ folder at the root "
            f"of a searchr3 source checkout: export {DATA_ENV}=/path/to/searchr3/data")
    raise FileNotFoundError(f"no dataset at {name_or_path!r}: not a folder, nor a set in "
                            f"{', '.join(map(str, folders))} (bundled sets: {', '.join(bundled_names())}; "
                            f"${DATA_ENV} names another folder of sets)")


def _find(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder} has no {stem}.jsonl or {stem}.jsonl.gz")


def text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file (gzip when named .gz), without line endings.

    A byte-order mark or bytes that are not UTF-8 raise DataError naming the file, line and byte,
    instead of a decoding error that names neither.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raise DataError(f"{path}:1: the file starts with a byte-order mark (U+FEFF); save it as UTF-8 "
                                "without a BOM")
            try:
                yield lineno, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid UTF-8 (byte {e.start + 1} of the line, "
                                f"{raw[e.start:e.start + 1]!r})") from None


def _check_unicode(path: Path, lineno: int, rec: dict) -> None:
    """JSON can spell lone surrogates (\\ud800), which no tokenizer or UTF-8 store accepts."""
    for key, value in rec.items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as e:
                raise DataError(f"{path}:{lineno}: {key!r} holds a lone surrogate (character {e.start + 1}), "
                                "which is not valid Unicode") from None


def _jsonl(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) for each non-blank line, checking JSON and required string fields."""
    for lineno, line in text_lines(path):
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
        _check_unicode(path, lineno, rec)
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
    if not docs:
        raise DataError(f"{path}: no documents")
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
    qrels: dict[str, dict[str, int]] = {}
    for _, qid, did, score in _qrels_rows(Path(path)):
        qrels.setdefault(qid, {})[did] = score
    return qrels


def write_jsonl(path: Path, records: Sequence[Mapping]) -> None:
    """Write records as JSON lines (gzip when the name ends in .gz)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def write_qrels(path: Path, qrels: Mapping[str, Mapping[str, int]]) -> None:
    """Write a `query-id corpus-id score` TSV with header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, docs in qrels.items():
            for did, score in docs.items():
                f.write(f"{qid}\t{did}\t{score}\n")


def write_negatives(path: Path, negatives: Mapping[str, Sequence[str]]) -> None:
    """Write a `query-id corpus-id` TSV (gzip when the name ends in .gz), one row per hard negative."""
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\n")
        for qid, docs in negatives.items():
            for did in docs:
                f.write(f"{qid}\t{did}\n")


def write_dataset(folder: Path, corpus: Sequence[Document], queries: Mapping[str, str],
                  qrels_by_split: Mapping[str, Mapping[str, Mapping[str, int]]], compress: bool = True,
                  negatives_by_split: Mapping[str, Mapping[str, Sequence[str]]] | None = None) -> None:
    """Write a BEIR folder atomically (built in a temp folder, then renamed into place)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        ext = ".jsonl.gz" if compress else ".jsonl"
        write_jsonl(tmp / f"corpus{ext}", [{"_id": d.id, "title": d.title, "text": d.text} for d in corpus])
        write_jsonl(tmp / "queries.jsonl", [{"_id": q, "text": t} for q, t in queries.items()])
        for split, qrels in qrels_by_split.items():
            write_qrels(tmp / "qrels" / f"{split}.tsv", qrels)
        for split, negatives in (negatives_by_split or {}).items():
            write_negatives(tmp / "negatives" / f"{split}.tsv.gz", negatives)
        tmp.chmod(0o755)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Dataset:
    """One split of a BEIR dataset, validated: every qrels id names a real query and document."""

    name: str
    path: Path
    split: str
    corpus: list[Document]
    queries: dict[str, str]  # only the queries judged in this split
    qrels: dict[str, dict[str, int]]
    skipped: list[str] = field(default_factory=list)  # problems skipped with skip_invalid=True
    negatives: dict[str, list[str]] = field(default_factory=dict)  # hard negatives the set supplies, per query

    @property
    def fingerprint(self) -> str:
        """A short hash of corpus, queries and qrels: names the exact data a result came from."""
        h = hashlib.sha256()
        for d in self.corpus:
            h.update(f"{d.id}\0{d.title}\0{d.text}\0".encode())
        for q in sorted(self.queries):
            h.update(f"{q}\0{self.queries[q]}\0".encode())
        for q in sorted(self.qrels):
            h.update(json.dumps(sorted(self.qrels[q].items())).encode())
        return h.hexdigest()[:16]

    def sample(self, query_ids: Sequence[str], max_docs: int | None = None, seed: int = 0) -> "Dataset":
        """These queries over a smaller corpus: every document judged for them, plus a seeded
        random sample of the others up to `max_docs` in all (None: the whole corpus).

        The distractors are drawn at random, not from any retriever's results, so the sample
        favours no method; scores on it are higher than on the full corpus and are comparable
        only with runs on the same sample (same queries, max_docs and seed).
        """
        if max_docs is not None and max_docs < 1:
            raise ValueError(f"max_docs must be >= 1, got {max_docs}")
        qids = sorted(query_ids)
        unknown = [q for q in qids if q not in self.queries]
        if unknown:
            raise KeyError(f"{len(unknown)} query ids not in {self.name}/{self.split} (first: {unknown[0]!r})")
        corpus = self.corpus
        if max_docs is not None and max_docs < len(corpus):
            judged = {d for q in qids for d in self.qrels.get(q, {})}
            others = [i for i, d in enumerate(corpus) if d.id not in judged]
            room = max(0, max_docs - (len(corpus) - len(others)))
            keep = set(random.Random(seed).sample(others, min(room, len(others))))
            corpus = [d for i, d in enumerate(corpus) if d.id in judged or i in keep]
        return Dataset(self.name, self.path, self.split, corpus, {q: self.queries[q] for q in qids},
                       {q: self.qrels[q] for q in qids if q in self.qrels})


def split_folder(folder: Path, split: str) -> Path:
    """Return the folder holding `split`: the set itself, or a sub-folder named after the split."""
    if (folder / "qrels" / f"{split}.tsv").is_file():
        return folder
    if (folder / split / "qrels" / f"{split}.tsv").is_file():
        return folder / split
    available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) + sorted(
        p.parent.parent.name for p in folder.glob("*/qrels/*.tsv"))
    raise FileNotFoundError(f"{folder} has no split {split!r} (available: {', '.join(available) or 'none'})")


def load_dataset(name_or_path: str | Path, split: str = "test", skip_invalid: bool = False) -> Dataset:
    """Load and validate one split of a BEIR dataset (a bundled name or a folder).

    qrels rows naming an unknown query or document raise DataError with file and line;
    with `skip_invalid=True` they are dropped with a warning instead (the user's choice).
    """
    root = resolve_dataset(name_or_path)
    folder = split_folder(root, split)
    corpus = read_corpus(folder, allow_empty=skip_invalid)
    skipped: list[str] = [f"{folder}: empty document {d.id!r}" for d in corpus if not (d.title.strip() or d.text.strip())]
    corpus = [d for d in corpus if d.title.strip() or d.text.strip()]
    all_queries = read_queries(folder)
    doc_ids = {d.id for d in corpus}
    qrels_path = folder / "qrels" / f"{split}.tsv"
    qrels: dict[str, dict[str, int]] = {}
    for lineno, qid, did, score in _qrels_rows(qrels_path):
        problem = (f"unknown query-id {qid!r}" if qid not in all_queries
                   else f"unknown corpus-id {did!r}" if did not in doc_ids else None)
        if problem:
            message = f"{qrels_path}:{lineno}: {problem}"
            if not skip_invalid:
                raise DataError(message)
            skipped.append(message)
            continue
        qrels.setdefault(qid, {})[did] = score
    negatives: dict[str, list[str]] = {}
    for neg_path in [p for p in (folder / "negatives" / f"{split}.tsv", folder / "negatives" / f"{split}.tsv.gz")
                     if p.is_file()][:1]:
        for lineno, qid, did in _negative_rows(neg_path):
            problem = (f"query-id {qid!r} is not judged in {split}" if qid not in qrels
                       else f"unknown corpus-id {did!r}" if did not in doc_ids else None)
            if problem:
                if not skip_invalid:
                    raise DataError(f"{neg_path}:{lineno}: {problem}")
                skipped.append(f"{neg_path}:{lineno}: {problem}")
                continue
            negatives.setdefault(qid, []).append(did)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} invalid rows (first: {skipped[0]})", stacklevel=2)
    queries = {q: all_queries[q] for q in qrels}
    name = Path(name_or_path).name if os.sep in str(name_or_path) else str(name_or_path)
    return Dataset(name, folder, split, corpus, queries, qrels, skipped, negatives)


def _negative_rows(path: Path) -> Iterator[tuple[int, str, str]]:
    for lineno, line in text_lines(path):
        row = line.split("\t")
        if not line.strip() or (lineno == 1 and row[0] == "query-id"):
            continue
        if len(row) != 2:
            raise DataError(f"{path}:{lineno}: expected 2 tab-separated fields, got {len(row)}")
        yield lineno, row[0], row[1]


def _qrels_rows(path: Path) -> Iterator[tuple[int, str, str, int]]:
    for lineno, line in text_lines(path):
        row = next(csv.reader([line], delimiter="\t"), [])
        if not row or (lineno == 1 and row[0] == "query-id"):
            continue
        if len(row) != 3:
            raise DataError(f"{path}:{lineno}: expected 3 tab-separated fields, got {len(row)}")
        try:
            score = int(float(row[2]))
        except ValueError:
            raise DataError(f"{path}:{lineno}: score {row[2]!r} is not a number") from None
        yield lineno, row[0], row[1], score


def dataset_summary(name: str) -> dict:
    """Return counts for `searchr3 data list`: docs and judged queries per split."""
    root = resolve_dataset(name)
    splits = {}
    for qrels in sorted(root.glob("qrels/*.tsv")) + sorted(root.glob("*/qrels/*.tsv")):
        splits[qrels.stem] = len({row[1] for row in _qrels_rows(qrels)})
    docs = sum(1 for _ in _jsonl(_find(root, "corpus"), ("_id", "text")))
    readme = root / "README.md"
    licence = ""
    if readme.is_file():
        text = readme.read_text()
        marker = text.find("## Licen")
        if marker >= 0:
            licence = text[marker:].splitlines()[1:3]
            licence = " ".join(line.strip() for line in licence if line.strip())[:90]
    return {"name": name, "path": str(root), "docs": docs, "splits": splits, "licence": licence}
