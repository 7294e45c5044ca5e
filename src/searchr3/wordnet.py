"""The `wordnet` training set, built on first use from Princeton WordNet 3.0 (Debian `wordnet-base`).

One document per synset: title = its lemmas ("object, physical object"), text = its part of
speech and what it is a kind of ("noun, a kind of physical entity"). Two kinds of queries:

- the definition → its synset (a reverse dictionary: "a tangible and visible entity; an entity
  that can cast a shadow" → object, physical object);
- each example sentence with the synset's word masked → its synset ("it was full of rackets,
  balls and other ___").

The document does not carry the definition, which would make a definition query a copy of its
positive. Synonyms are the synset's other lemmas, all in the positive's title, so whichever
synonym a sentence uses, the synset is the answer. Hard negatives are hypernym siblings (other
hyponyms of the same hypernym; for a satellite adjective, the other satellites of its head) and
antonyms; an only child takes its hypernym's siblings. They are written to
`negatives/<split>.tsv.gz` for the trainer to use instead of BM25 (which stays the fallback for
the few synsets with none: adverbs and root verbs, mostly). Synsets are split
train / dev by a hash of their id; the corpus is every synset for both splits.

The data files are parsed directly (format: wndb(5WN), "Data File Format"):
`offset lex_filenum ss_type w_cnt(hex) word lex_id(hex) ... p_cnt ptr... [frames] | gloss`.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import assets
from .data import DataError, Document, register_builder, write_dataset

WORDNET_NAME = "wordnet"
WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_INSTALL = "apt-get install wordnet-base"
POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}  # data.<name> and <name>.exc per part of speech
POS_NAMES = {"n": "noun", "v": "verb", "a": "adjective", "r": "adverb"}
HYPERNYMS = {"@": "a kind of", "@i": "an instance of"}  # pointer symbols read as "is a"
DEV_SHARE = 0.05  # of synsets, by hash of the synset id
MAX_NEGATIVES = 8  # hard negatives kept per query (a seeded sample; "person" alone has 400 hyponyms)
MIN_CONTEXT_WORDS = 3  # an example sentence must keep this many words besides the mask
MASK = "___"
FORMAT = 1  # bump to rebuild cached copies when the construction changes


@dataclass(frozen=True)
class Synset:
    """One synset of a WordNet data file; ids are `wn-<pos>-<byte offset>`."""

    id: str
    pos: str  # n, v, a, r (a satellite adjective, ss_type `s`, is `a` with satellite=True)
    lemmas: tuple[str, ...]  # "physical entity": underscores as spaces, adjective markers "(a)" dropped
    definition: str
    examples: tuple[str, ...]
    hypernyms: tuple[tuple[str, str], ...]  # (relation, synset id): @ and @i; `&` to the head of a satellite
    satellite: bool = False
    antonyms: tuple[str, ...] = ()  # synset ids of `!` pointers


def synset_id(pos: str, offset: str) -> str:
    return f"wn-{'a' if pos == 's' else pos}-{offset}"


def split_gloss(gloss: str) -> tuple[str, tuple[str, ...]]:
    """Return (definition, example sentences) of a gloss: `definition; "example"; "example"`.

    >>> split_gloss('draw air into, and expel out of, the lungs; "I can breathe better"; "He respired"')
    ('draw air into, and expel out of, the lungs', ('I can breathe better', 'He respired'))
    """
    gloss = gloss.strip()
    first = re.search(r';\s*"', gloss)
    if not first:
        return gloss.rstrip("; "), ()
    return gloss[:first.start()].strip(), tuple(e.strip() for e in re.findall(r'"([^"]+)"', gloss[first.start():])
                                                if e.strip())


def parse_line(line: str, where: str = "<line>") -> Synset:
    """Parse one synset line of a data.* file; DataError names `where` (file:line) on a bad field."""
    head, bar, gloss = line.partition("|")
    fields = head.split()
    try:
        offset, ss_type, w_cnt = fields[0], fields[2], int(fields[3], 16)
        words = fields[4:4 + 2 * w_cnt:2]
        p_at = 4 + 2 * w_cnt
        p_cnt = int(fields[p_at])
        pointers = [fields[p_at + 1 + 4 * i:p_at + 5 + 4 * i] for i in range(p_cnt)]
        if len(words) != w_cnt or any(len(p) != 4 for p in pointers) or ss_type not in "nvasr" or not bar:
            raise ValueError
    except (IndexError, ValueError):
        raise DataError(f"{where}: not a WordNet synset line: {line[:80]!r}") from None
    lemmas = tuple(dict.fromkeys(re.sub(r"\((?:a|p|ip)\)$", "", w).replace("_", " ") for w in words))
    hypernyms = tuple((sym, synset_id(pos, off)) for sym, off, pos, _ in pointers
                      if sym in HYPERNYMS or (sym == "&" and ss_type == "s"))
    antonyms = tuple(dict.fromkeys(synset_id(pos, off) for sym, off, pos, _ in pointers if sym == "!"))
    definition, examples = split_gloss(gloss)
    return Synset(synset_id(ss_type, offset), "a" if ss_type == "s" else ss_type, lemmas, definition, examples,
                  hypernyms, ss_type == "s", antonyms)


def read_synsets(folder: Path) -> Iterator[Synset]:
    """Every synset of the four data files in `folder` (licence header lines, which start with
    two spaces, skipped)."""
    for name in POS_FILES.values():
        path = folder / f"data.{name}"
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if line.strip() and not line.startswith("  "):
                    yield parse_line(line, f"{path}:{lineno}")


def read_exceptions(folder: Path) -> dict[str, set[str]]:
    """{base form: irregular inflections} from the *.exc files ("geese goose" → goose: {geese})."""
    forms: dict[str, set[str]] = defaultdict(set)
    for name in POS_FILES.values():
        path = folder / f"{name}.exc"
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                inflected, *bases = line.split()
                for base in bases:
                    forms[base.replace("_", " ")].add(inflected.replace("_", " "))
    return forms


def _word_forms(word: str, irregular: dict[str, set[str]]) -> set[str]:
    """A word and its likely inflections: regular suffixes, y→ies/ied, e-drop, doubled consonant."""
    forms = {word, *irregular.get(word, ()), *(word + s for s in ("s", "es", "ed", "d", "ing", "er", "est"))}
    if word.endswith("y"):
        forms |= {word[:-1] + s for s in ("ies", "ied", "ier", "iest")}
    if word.endswith("e"):
        forms |= {word[:-1] + "ing"}
    if len(word) > 2 and word[-1] not in "aeiouwxy":
        forms |= {word + word[-1] + s for s in ("ed", "ing", "er", "est")}
    return forms


def lemma_forms(lemma: str, irregular: dict[str, set[str]]) -> set[str]:
    """Surface forms of a lemma; in a phrase the first word (verbs: "took a breath") or the last
    (nouns: "physical entities") is inflected."""
    words = lemma.split()
    if len(words) == 1:
        return _word_forms(lemma, irregular)
    forms = {lemma, *irregular.get(lemma, ())}
    forms |= {" ".join([f, *words[1:]]) for f in _word_forms(words[0], irregular)}
    forms |= {" ".join([*words[:-1], f]) for f in _word_forms(words[-1], irregular)}
    return forms


def mask(sentence: str, lemmas: Iterable[str], irregular: dict[str, set[str]]) -> str | None:
    """The sentence with every form of the lemmas replaced by MASK, or None when no lemma occurs.

    >>> mask("The patient is respiring", ["breathe", "respire"], {})
    'The patient is ___'
    """
    forms = sorted({f for lemma in lemmas for f in lemma_forms(lemma, irregular)}, key=len, reverse=True)
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(f) for f in forms) + r")(?!\w)", re.IGNORECASE)
    masked, n = pattern.subn(MASK, sentence)
    return masked if n else None


def split_of(synset: str) -> str:
    """Return `dev` or `train` for a synset id: a stable hash, DEV_SHARE of them dev."""
    x = int.from_bytes(hashlib.sha256(synset.encode()).digest()[:8], "big") / 2**64
    return "dev" if x < DEV_SHARE else "train"


def document(synset: Synset, by_id: dict[str, Synset]) -> Document:
    """The synset as a document: its lemmas, then part of speech and its hypernyms' first two lemmas."""
    text = POS_NAMES[synset.pos]
    for relation in ("@", "@i", "&"):
        names = [", ".join(by_id[h].lemmas[:2]) for r, h in synset.hypernyms if r == relation and h in by_id]
        if names:
            text += f", {HYPERNYMS.get(relation, 'similar to')} " + " / ".join(names)
    return Document(synset.id, ", ".join(synset.lemmas), text)


def near_synsets(synsets: list[Synset]) -> dict[str, list[str]]:
    """{synset id: its hard negatives}: hypernym siblings and antonyms, or for an only child its
    hypernym's siblings; leaving out any that shares a lemma with it (a masked sentence cannot
    tell two senses of one word apart by the word) and its own hypernyms."""
    children: dict[str, list[str]] = defaultdict(list)
    for s in synsets:
        for _, h in s.hypernyms:
            children[h].append(s.id)
    by_id = {s.id: s for s in synsets}
    words = {s.id: {w.lower() for w in s.lemmas} for s in synsets}

    def siblings(s: Synset) -> list[str]:
        return [c for _, h in s.hypernyms for c in children[h] if c != s.id]

    out = {}
    for s in synsets:
        parents = {h for _, h in s.hypernyms}

        def keep(ids: list[str]) -> list[str]:
            return [c for c in dict.fromkeys(ids) if c not in parents and not words[c] & words[s.id]]

        out[s.id] = keep(siblings(s) + [a for a in s.antonyms if a in by_id]) or keep(
            [c for h in parents if h in by_id for c in siblings(by_id[h])])
    return out


def build(source: Path, out: Path) -> dict:
    """Write the BEIR folder (with `negatives/`) for the WordNet database in `source` to `out`;
    returns its counts."""
    synsets = list(read_synsets(source))
    if not synsets:
        raise DataError(f"{source}: no synsets in data.noun, data.verb, data.adj or data.adv")
    by_id = {s.id: s for s in synsets}
    irregular = read_exceptions(source)
    near = near_synsets(synsets)
    corpus = [document(s, by_id) for s in synsets]
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, dict[str, int]]] = {"train": {}, "dev": {}}
    negatives: dict[str, dict[str, list[str]]] = {"train": {}, "dev": {}}
    counts: Counter = Counter()
    for s in synsets:
        split = split_of(s.id)
        asked = []
        if len(s.definition.split()) >= 2:
            asked.append((f"{s.id}-def", s.definition, "definitions"))
        for i, sentence in enumerate(s.examples):
            masked = mask(sentence, s.lemmas, irregular)
            if masked is None or len(masked.replace(MASK, " ").split()) < MIN_CONTEXT_WORDS:
                counts["examples_unmasked"] += 1
                continue
            asked.append((f"{s.id}-ex{i}", masked, "examples"))
        for qid, text, kind in asked:
            queries[qid] = text
            qrels[split][qid] = {s.id: 1}
            counts[f"{split}_{kind}"] += 1
            if near[s.id]:
                rng = random.Random(qid)  # a str seed hashes stably across runs
                negatives[split][qid] = rng.sample(near[s.id], min(MAX_NEGATIVES, len(near[s.id])))
                counts[f"{split}_with_negatives"] += 1
    write_dataset(out, corpus, queries, qrels, negatives_by_split=negatives)
    summary = {"docs": len(corpus), "queries": {sp: len(q) for sp, q in qrels.items()}, "counts": dict(sorted(counts.items()))}
    (out / "README.md").write_text(_readme(source, summary))
    (out / "BUILD.json").write_text(json.dumps({"format": FORMAT, **summary}) + "\n")
    return summary


def _readme(source: Path, summary: dict) -> str:
    c, q = summary["counts"], summary["queries"]
    return f"""# {WORDNET_NAME} — WordNet 3.0 word-sense retrieval (built by searchr3, training only)

Documents: one per synset, title = its lemmas, text = its part of speech and hypernyms
("noun, a kind of physical entity"). Queries: a synset's definition, and each example
sentence with the synset's word masked as `{MASK}`; the relevant document is the synset.
Hard negatives (`negatives/<split>.tsv.gz`): up to {MAX_NEGATIVES} per query, drawn from the
synset's hypernym siblings and antonyms (an only child: its hypernym's siblings).
Built on first use by `searchr3.wordnet` from `{source}` (Debian package `wordnet-base`).

| docs | split | definition queries | example queries | queries with their own hard negatives |
|---:|---|---:|---:|---:|
| {summary['docs']:,} | train ({q['train']:,}) | {c.get('train_definitions', 0):,} | {c.get('train_examples', 0):,} | {c.get('train_with_negatives', 0):,} |
| | dev ({q['dev']:,}) | {c.get('dev_definitions', 0):,} | {c.get('dev_examples', 0):,} | {c.get('dev_with_negatives', 0):,} |

{c.get('examples_unmasked', 0):,} example sentences are not queries: none of the synset's lemmas (or
their inflections) occurs in them, or fewer than {MIN_CONTEXT_WORDS} other words remain. Splits are by
synset (hash of the id): no query of a dev synset is a train query. No test split: a training source.

## Licence
WordNet 3.0 licence (Princeton University; permissive: use, copy, modify and distribute for any
purpose, keeping the copyright notice "WordNet 3.0 Copyright 2006 by Princeton University. All
rights reserved." and the disclaimer). Built locally, not redistributed by searchr3.
"""


def wordnet_dataset(source: Path = WORDNET_DIR) -> Path:
    """Return the folder of the WordNet set, building it on first use (~1 min on a busy 2-core CPU)."""
    out = assets.home() / "data" / WORDNET_NAME
    built = out / "BUILD.json"
    if built.is_file() and json.loads(built.read_text()).get("format") == FORMAT:
        return out
    missing = [f"data.{n}" for n in POS_FILES.values() if not (source / f"data.{n}").is_file()]
    if missing:
        raise FileNotFoundError(f"{source} has no WordNet 3.0 database ({', '.join(missing)} missing); "
                                f"install Debian's package wordnet-base: {WORDNET_INSTALL}")
    build(source, out)
    return out


register_builder(WORDNET_NAME, wordnet_dataset)
