"""An encoder with MTEB's interface, so `mteb.evaluate(MTEBEncoder(model), task)` runs a searchr3 model.

It follows mteb 2.x's `EncoderProtocol`: `encode(inputs, *, task_metadata, hf_split, hf_subset,
prompt_type)` over a DataLoader of dict batches, `similarity`, `similarity_pairwise` and
`mteb_model_meta`. `prompt_type` is "query", "document" or None (symmetric tasks such as STS
and classification). Queries go through the query template (with reasoning when asked),
documents and symmetric inputs through the document template: one forward pass, deterministic.

mteb joins a document's title and body as "title body"; searchr3 joins them with
`document_text` ("title\\nbody"). The encoder rebuilds each document from the batch's `title` and
`body` columns with `document_text`, so MTEB scores the vectors `searchr3 eval` scores.
The mteb package is optional (a dev extra); only `mteb_model_meta` imports it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from .modeling import SearchR3
from .prompts import document_text


def _kind(prompt_type: Any) -> str | None:
    value = getattr(prompt_type, "value", prompt_type)  # mteb.PromptType is a str Enum
    if value not in (None, "query", "document"):
        raise ValueError(f"prompt_type must be 'query', 'document' or None, got {prompt_type!r}")
    return value


def _batch_texts(batch: dict) -> list[str]:
    """Texts of one mteb batch; a corpus batch (it has `body`) is re-joined with `document_text`."""
    text = batch["text"]
    if isinstance(text, str):
        batch = {k: [v] for k, v in batch.items()}
    if "body" not in batch:
        return list(batch["text"])
    titles = batch.get("title") or [""] * len(batch["body"])
    return [document_text(t or "", b or "") for t, b in zip(titles, batch["body"], strict=True)]


def _texts(sentences: Any) -> list[str]:
    if isinstance(sentences, str):
        return [sentences]
    out: list[str] = []
    for item in sentences if isinstance(sentences, Iterable) else [sentences]:
        out.extend(_batch_texts(item) if isinstance(item, dict) else [item])
    return out


class MTEBEncoder:
    """Wrap a `SearchR3` model for MTEB.

    Args:
        model: a loaded model, or a registered name / folder to load.
        reasoning: reason about queries before embedding them (slower; documents never reason).
        batch_size: texts per forward pass (default: mteb's `encode_kwargs["batch_size"]`, which
            mteb.evaluate sets to 32 when not given, else the model's setting).
    """

    def __init__(self, model: SearchR3 | str, reasoning: bool = False, batch_size: int | None = None):
        self.model = model if isinstance(model, SearchR3) else SearchR3.from_pretrained(model)
        self.reasoning, self.batch_size = reasoning, batch_size

    def encode(self, inputs: Any, *, task_metadata: Any = None, hf_split: str | None = None,
               hf_subset: str | None = None, prompt_type: Any = None, **kwargs: Any) -> np.ndarray:
        """Return (n, H) float32 L2-normalised vectors.

        `inputs`: mteb's DataLoader of dict batches, or a list of strings. Of mteb's encode
        keywords only `batch_size` is used, when the encoder was given none.
        """
        texts = _texts(inputs)
        bs = self.batch_size or kwargs.get("batch_size")
        if _kind(prompt_type) == "query":
            return self.model.embed_queries(texts, reasoning=self.reasoning, batch_size=bs, show_progress=False)
        return self.model.embed_documents(texts, batch_size=bs, show_progress=False)

    def similarity(self, a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Cosine similarity matrix (n, m)."""
        return self.model.similarity(a, b)

    def similarity_pairwise(self, a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Cosine similarity (n,) of each pair of rows."""
        return self.model.similarity_pairwise(a, b)

    @property
    def mteb_model_meta(self):
        """mteb's `ModelMeta` for this model, so mteb neither loads nor downloads one.

        mteb keys its result cache on (name, revision, experiment_kwargs): the revision is the
        weights' fingerprint and reasoning is an experiment setting, so a retrained adapter under
        the same name, or reasoning on and off, never reuse each other's cached scores.
        """
        from mteb.models import ModelMeta

        m = self.model
        name = m.name.rstrip("/").rsplit("/", 1)[-1]  # a folder path becomes its last part
        return ModelMeta(
            loader=None, name=f"searchr3/{name}", revision=m.fingerprint, release_date=None, languages=None,
            n_parameters=sum(p.numel() for p in m.model.parameters()), memory_usage_mb=None,
            max_tokens=m.config.max_length, embed_dim=m.dim, license=None, open_weights=None,
            public_training_code=None, public_training_data=None, framework=["PyTorch"],
            similarity_fn_name=m.similarity_fn_name, use_instructions=True, training_datasets=None,
            adapted_from=m.base if m.base != m.name else None,
            experiment_kwargs={"reasoning": True} if self.reasoning else None)
