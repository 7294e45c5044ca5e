"""A run's built training examples, kept in its folder (gzip JSON) so later chunks skip building them.

Building a five-source mix mines BM25 negatives over every source corpus and loads every test
split for de-duplication: about 20 minutes on a 2-core CPU, paid again by each chunk of a run
that spans sessions. The file is keyed by everything the build depends on (the data settings
and the sizes of the data files read); a different key means the file is ignored and rebuilt.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path

from ..data import load_dataset, resolve_dataset, split_folder
from ..prompts import document_text
from .examples import Example, TrainingSet, parse_source

EXAMPLES = "examples.json.gz"


def data_key(settings: dict, sources: Sequence[str], tests: Sequence[str]) -> dict:
    """The build's settings and, per split read, the sizes of its data files (a changed file changes the key)."""
    files: dict[str, int] = {}
    for source in [*sources, *(f"{t}:test" for t in tests)]:
        name, split = source.partition(":")[::2]
        folder = split_folder(resolve_dataset(name), split)
        read = [*folder.glob("*.jsonl*"), *folder.glob(f"qrels/{split}.tsv"), *folder.glob(f"negatives/{split}.tsv*")]
        files.update({f"{source}/{p.relative_to(folder)}": p.stat().st_size for p in sorted(read)})
    return {"settings": settings, "files": files}


def write_examples(path: Path, data: TrainingSet, key: dict) -> None:
    """Ids only (texts come back from the data on reading): a few hundred kB to commit, not tens of MB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [[e.source, e.query_id, e.positive_id, list(e.negative_ids)] for e in data.examples]
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        json.dump({"key": key, "report": data.report, "examples": rows}, f)
    tmp.replace(path)


def read_examples(path: Path, key: dict) -> TrainingSet | None:
    """The examples written at `path` under the same key (texts read from each source), else None."""
    if not path.is_file():
        return None
    with gzip.open(path, "rt", encoding="utf-8") as f:
        saved = json.load(f)
    if saved.get("key") != json.loads(json.dumps(key)):  # compared as JSON: tuples read back as lists
        return None
    sources = {}
    for source in sorted({row[0] for row in saved["examples"]}):
        data = load_dataset(*parse_source(source))
        texts = {d.id: document_text(d.title, d.text) for d in data.corpus}
        relevant = {q: frozenset(d for d, g in rel.items() if g > 0) for q, rel in data.qrels.items()}
        sources[source] = (data.queries, texts, relevant)
    examples = []
    for source, qid, pid, nids in saved["examples"]:
        queries, texts, relevant = sources[source]
        examples.append(Example(source, qid, queries[qid], pid, texts[pid], tuple(nids),
                                tuple(texts[n] for n in nids), relevant[qid]))
    return TrainingSet(examples, saved["report"])
