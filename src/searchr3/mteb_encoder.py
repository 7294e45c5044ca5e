"""An encoder with MTEB's interface, so `mteb.evaluate` can run a searchr3 model.

MTEB calls `encode(sentences, task_name=..., prompt_type=...)`; `prompt_type` is "query",
"document" or None (symmetric tasks such as STS and classification). Queries go through the
query template (with reasoning when asked), documents and symmetric inputs through the
document template: one forward pass, deterministic. The mteb package itself is optional;
newer versions pass batches of dicts with a "text" key, which are flattened here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .modeling import SearchR3


def _kind(prompt_type: Any) -> str | None:
    value = getattr(prompt_type, "value", prompt_type)  # mteb.PromptType is a str Enum
    if value not in (None, "query", "document"):
        raise ValueError(f"prompt_type must be 'query', 'document' or None, got {prompt_type!r}")
    return value


def _texts(sentences: Any) -> list[str]:
    if isinstance(sentences, str):
        return [sentences]
    out: list[str] = []
    for item in sentences if isinstance(sentences, Iterable) else [sentences]:
        if isinstance(item, dict):  # a batch from mteb's DataLoader: {"text": [...], ...}
            text = item["text"]
            out.extend([text] if isinstance(text, str) else text)
        else:
            out.append(item)
    return out


class MTEBEncoder:
    """Wrap a `SearchR3` model for MTEB.

    Args:
        model: a loaded model, or a registered name / folder to load.
        reasoning: reason about queries before embedding them (slower; documents never reason).
        batch_size: texts per forward pass (default: the model's setting).
    """

    def __init__(self, model: SearchR3 | str, reasoning: bool = False, batch_size: int | None = None):
        self.model = model if isinstance(model, SearchR3) else SearchR3.from_pretrained(model)
        self.reasoning, self.batch_size = reasoning, batch_size

    def encode(self, sentences: Any, *, task_name: str | None = None, prompt_type: Any = None,
               **kwargs: Any) -> np.ndarray:
        """Return (n, H) float32 L2-normalised vectors; extra MTEB keyword arguments are ignored."""
        texts = _texts(sentences)
        bs = kwargs.get("batch_size") or self.batch_size
        if _kind(prompt_type) == "query":
            return self.model.embed_queries(texts, reasoning=self.reasoning, batch_size=bs, show_progress=False)
        return self.model.embed_documents(texts, batch_size=bs, show_progress=False)

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.model.similarity(a, b).numpy()
