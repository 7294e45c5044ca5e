"""sentence-transformers' model interface for SearchR3, so its evaluators run on a searchr3 model as-is.

sentence-transformers' evaluators call the model they are given directly. The
`InformationRetrievalEvaluator` (v5/v6) reads `similarity_fn_name` and `similarity`, calls
`encode_query` / `encode_document` with its own keyword arguments (`prompt_name`, `prompt`,
`batch_size`, `show_progress_bar`, `convert_to_tensor`, `truncate_dim`) and stores its metrics
through `model_card_data.set_evaluation_metrics`. `SentenceTransformerMixin` supplies those
members on top of the host's `embed_queries` / `embed_documents`, with sentence-transformers'
meaning for each keyword. searchr3 builds its own chat templates, so a prompt is refused, never
silently dropped.

Documents given to these methods are embedded as they are: join a title and body with
`searchr3.prompts.document_text` (what `searchr3 eval` does) to get the same vectors.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

Vectors = np.ndarray | torch.Tensor | list[torch.Tensor]


@dataclass(frozen=True)
class EncodeOptions:
    """sentence-transformers' `encode` keyword arguments, checked once.

    Output (`convert_to_tensor`, `convert_to_numpy`, `normalize_embeddings`, `truncate_dim`,
    `device`: where returned tensors are put; the model computes on its own device) and speed
    (`batch_size`, `show_progress_bar`) options are honoured. The others are accepted only at the
    value that means "do nothing special", because searchr3 cannot honour anything else.
    """

    prompt_name: str | None = None
    prompt: str | None = None
    batch_size: int | None = None  # None: the model's EmbedConfig.batch_size
    show_progress_bar: bool | None = None
    output_value: str | None = "sentence_embedding"
    precision: str = "float32"
    convert_to_numpy: bool = True
    convert_to_tensor: bool = False
    device: str | torch.device | None = None
    normalize_embeddings: bool = False  # vectors are unit length already; matters only after truncate_dim
    truncate_dim: int | None = None
    pool: Any = None
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        if self.prompt_name is not None or self.prompt is not None:
            raise ValueError("searchr3 builds its own query and document templates; prompt and prompt_name are "
                             f"not supported (got prompt_name={self.prompt_name!r}, prompt={self.prompt!r})")
        if self.output_value != "sentence_embedding":
            raise ValueError(f"searchr3 returns sentence embeddings only, got output_value={self.output_value!r}")
        if self.precision != "float32":
            raise ValueError(f"searchr3 returns float32 vectors only, got precision={self.precision!r}")
        if self.pool is not None or self.chunk_size is not None:
            raise ValueError("multi-process encoding (pool, chunk_size) is not supported by searchr3")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.truncate_dim is not None and self.truncate_dim < 1:
            raise ValueError(f"truncate_dim must be >= 1, got {self.truncate_dim}")

    @classmethod
    def parse(cls, method: str, kwargs: Mapping[str, Any]) -> "EncodeOptions":
        """Options from keyword arguments; an unknown keyword raises TypeError naming `method`."""
        unknown = sorted(set(kwargs) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"{method}() got unexpected keyword argument(s): {', '.join(unknown)}")
        return cls(**kwargs)


@dataclass
class EvaluationLog:
    """Where sentence-transformers' evaluators leave their metrics (`model.model_card_data`).

    `results` maps an evaluator (class name, plus its `name` when set) to the metrics dict of
    its latest call; `history` keeps every call with its epoch and step, in order.
    """

    results: dict[str, dict[str, float]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    def set_evaluation_metrics(self, evaluator: Any, metrics: Mapping[str, float], epoch: int = 0,
                               step: int = 0) -> None:
        name = type(evaluator).__name__ + (f"/{evaluator.name}" if getattr(evaluator, "name", "") else "")
        self.results[name] = dict(metrics)
        self.history.append({"evaluator": name, "epoch": epoch, "step": step, "metrics": dict(metrics)})


def _as_list(inputs: str | Sequence[str]) -> tuple[list[str], bool]:
    return ([inputs], True) if isinstance(inputs, str) else (list(inputs), False)


class SentenceTransformerMixin:
    """`encode_query`, `encode_document`, `encode`, `similarity`, `similarity_pairwise`,
    `similarity_fn_name` and `model_card_data`, as sentence-transformers defines them.

    The host class provides `embed_queries(texts, reasoning, batch_size, show_progress)`,
    `embed_documents(texts, batch_size, show_progress)` and `device`.
    """

    similarity_fn_name = "cosine"  # vectors are L2-normalised, so cosine equals the dot product

    @functools.cached_property
    def model_card_data(self) -> EvaluationLog:
        """Metrics recorded by sentence-transformers' evaluators called on this model."""
        return EvaluationLog()

    def encode_query(self, inputs: str | Sequence[str], *, reasoning: bool = False, **kwargs: Any) -> Vectors:
        """Query vectors through the query template (`embed_queries`), in sentence-transformers' shapes.

        A str gives one (H,) vector, a list (N, H): a numpy array by default, a tensor with
        `convert_to_tensor=True`, a list of tensors with `convert_to_numpy=False`. `reasoning=True`
        reasons about each query first (greedy, so deterministic). Other keywords: `EncodeOptions`.
        """
        options = EncodeOptions.parse("encode_query", kwargs)
        texts, single = _as_list(inputs)
        vectors = self.embed_queries(texts, reasoning=reasoning, batch_size=options.batch_size,
                                     show_progress=options.show_progress_bar)
        return self._st_output(vectors, single, options)

    def encode_document(self, inputs: str | Sequence[str], **kwargs: Any) -> Vectors:
        """Document vectors through the document template (`embed_documents`); shapes as `encode_query`."""
        options = EncodeOptions.parse("encode_document", kwargs)
        texts, single = _as_list(inputs)
        vectors = self.embed_documents(texts, batch_size=options.batch_size, show_progress=options.show_progress_bar)
        return self._st_output(vectors, single, options)

    def encode(self, inputs: str | Sequence[str], **kwargs: Any) -> Vectors:
        """Symmetric inputs (STS, clustering, classification) use the document template: one pass, no reasoning."""
        options = EncodeOptions.parse("encode", kwargs)
        texts, single = _as_list(inputs)
        vectors = self.embed_documents(texts, batch_size=options.batch_size, show_progress=options.show_progress_bar)
        return self._st_output(vectors, single, options)

    def _st_output(self, vectors: np.ndarray, single: bool, options: EncodeOptions) -> Vectors:
        """Shape (N, H) float32 vectors as sentence-transformers returns them for these options."""
        if options.truncate_dim is not None:
            vectors = vectors[:, :options.truncate_dim]
        if options.normalize_embeddings:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        if options.convert_to_tensor or not options.convert_to_numpy:
            device = torch.device(options.device) if options.device is not None else self.device
            tensor = torch.from_numpy(np.ascontiguousarray(vectors)).to(device)
            out: Vectors = tensor if options.convert_to_tensor else list(tensor)
        else:
            out = vectors
        return out[0] if single else out

    @staticmethod
    def similarity(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Cosine similarity matrix (n, m) of two sets of vectors (a single (H,) vector counts as n = 1)."""
        x, y = _unit_rows(a), _unit_rows(b)
        return x @ y.to(x.device).T

    @staticmethod
    def similarity_pairwise(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Cosine similarity (n,) of each row of `a` with the same row of `b`."""
        x, y = _unit_rows(a), _unit_rows(b)
        if x.shape != y.shape:
            raise ValueError(f"similarity_pairwise needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
        return (x * y.to(x.device)).sum(dim=-1)


def _unit_rows(v: np.ndarray | torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """(n, H) float32 tensor of L2-normalised rows from an array, a tensor or a list of (H,) tensors."""
    if isinstance(v, (list, tuple)) and v and torch.is_tensor(v[0]):
        v = torch.stack(list(v))
    t = v if torch.is_tensor(v) else torch.from_numpy(np.asarray(v, dtype=np.float32))
    t = t.float()
    return torch.nn.functional.normalize(t.reshape(-1, t.shape[-1]), dim=-1)
