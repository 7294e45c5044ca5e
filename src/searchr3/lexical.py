"""BM25 over a fixed set of documents: the one lexical ranker of searchr3.

The BM25 baseline, hybrid search and training-negative mining all rank with `BM25Index`, so
a BM25 number in a table and the lexical side of a hybrid search are the same function.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class BM25Index:
    """Okapi BM25 via bm25s, Lucene variant, English stemming and stop words.

    k1 = 0.9 and b = 0.4 are Anserini's defaults, the setting of the BEIR paper's BM25.
    A bm25s index cannot change after it is built: to add or remove documents, build a new
    one (tokenising and indexing wiki-known-item's 10,033 articles took 6 s on a busy 2-core machine).

    Args:
        ids: document ids, in the order of `texts`.
        texts: the text to index per document (title and body joined by `prompts.document_text`).
    """

    def __init__(self, ids: Sequence[str], texts: Sequence[str], k1: float = 0.9, b: float = 0.4,
                 stem: bool = True):
        import bm25s
        import Stemmer

        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        self.k1, self.b, self.stem = k1, b, stem
        self.ids = np.array([str(i) for i in ids], dtype=object)
        self._stemmer = Stemmer.Stemmer("english") if stem else None
        self._model = None  # None: no document has an indexable word (bm25s refuses an empty vocabulary)
        tokens = bm25s.tokenize(list(texts), stopwords="en", stemmer=self._stemmer, show_progress=False)
        if any(len(doc) for doc in tokens.ids):
            self._model = bm25s.BM25(k1=k1, b=b, method="lucene")
            self._model.index(tokens, show_progress=False)

    def __len__(self) -> int:
        return len(self.ids)

    def identity(self) -> dict:
        import bm25s

        return {"library": f"bm25s {bm25s.__version__}", "k1": self.k1, "b": self.b,
                "stemmer": "english (PyStemmer)" if self.stem else None, "stopwords": "en"}

    def search(self, queries: Sequence[str], k: int = 10, matched_only: bool = False) -> list[dict[str, float]]:
        """Return the k best documents of each query as {id: score}, best first.

        bm25s fills the k places with zero-scored documents when fewer match; `matched_only`
        leaves those out (hybrid search sets it, so a document that shares no word with the
        query gets no lexical rank). The baseline keeps them, as its recorded runs did.
        """
        import bm25s

        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if self._model is None or not len(queries):
            return [{} for _ in queries]
        tokens = bm25s.tokenize(list(queries), stopwords="en", stemmer=self._stemmer, show_progress=False)
        docs, scores = self._model.retrieve(tokens, k=min(k, len(self.ids)), show_progress=False, n_threads=1)
        return [{str(d): float(s) for d, s in zip(self.ids[docs[n]], scores[n]) if not matched_only or s > 0}
                for n in range(len(queries))]
