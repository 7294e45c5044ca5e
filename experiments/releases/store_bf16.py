"""Store the released adapters' weights in bf16 where reloading keeps every vector (cosine >= 0.9999).

Texts: the first 64 SciFact test queries and the first 64 corpus abstracts (a test split's
texts are fine here: nothing is tuned on them, the check only compares two stores of one model).

    python experiments/releases/store_bf16.py
"""

from searchr3.assets import RELEASED_MODELS
from searchr3.data import load_dataset
from searchr3.prompts import document_text
from searchr3.release import store_bf16

data = load_dataset("scifact", "test")
queries = [data.queries[q] for q in sorted(data.queries)[:64]]
documents = [document_text(d.title, d.text) for d in data.corpus[:64]]
for name, release in RELEASED_MODELS.items():
    print(name, store_bf16(release.path, documents, queries), flush=True)
