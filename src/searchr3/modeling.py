"""SearchR3: a causal LM that reasons about a query, then emits an embedding token.

The vector of a text is the final-layer hidden state (after the final norm) at
`<|embed_token|>`, L2-normalised, read by `readout.embed_token_states`. This module loads,
saves and batches; the reasoning decode loop is `decoding`, the dtype choice `precision`.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import assets
from .config import from_dict
from .decoding import LogitsProcessor, Reasoning, reason_batch
from .fingerprint import SEARCHR3_FILE, tensors_digest, tokenizer_folder, weights_fingerprint
from .precision import resolve_dtype
from .prefix_cache import PrefixCache, prefill
from .prompts import EMBED_TOKEN, Prompt, PromptBuilder, validate_texts
from .readout import embed_token_states
from .st_compat import SentenceTransformerMixin

# peft reads transformers' deprecated `is_gradient_checkpointing` alias whenever it wraps a model;
# the FutureWarning is theirs, says nothing to our users, and would print on every adapter load.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)



@dataclass
class EmbedConfig:
    """Inference settings; every default can be overridden from YAML (configs/)."""

    batch_size: int = field(default=16, metadata={"ge": 1})  # texts per forward pass
    max_length: int = field(default=512, metadata={"ge": 1})  # tokens of user text kept per document
    # tokens kept per query (None: max_length); queries are short, documents carry the evidence
    query_max_length: int | None = field(default=None, metadata={"ge": 1})
    reasoning_tokens: int = field(default=64, metadata={"ge": 1})  # reasoning budget before the token is forced
    min_reasoning_tokens: int = field(default=0, metadata={"ge": 0})  # token and end of turn barred before this many
    temperature: float = field(default=0.7, metadata={"gt": 0})  # only when sampling (RL rollouts, sample=True)
    top_p: float = field(default=0.95, metadata={"gt": 0, "le": 1})  # nucleus sampling mass, only when sampling
    pad_to_multiple: int = field(default=16, metadata={"ge": 1})  # pad batch length to a multiple (steadier kernels)

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_length", "query_max_length", "reasoning_tokens", "pad_to_multiple"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"EmbedConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.min_reasoning_tokens <= self.reasoning_tokens:
            raise ValueError(f"EmbedConfig.min_reasoning_tokens must be in [0, reasoning_tokens], "
                             f"got {self.min_reasoning_tokens}")
        if self.temperature <= 0:
            raise ValueError(f"EmbedConfig.temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"EmbedConfig.top_p must be in (0, 1], got {self.top_p}")

    @property
    def query_length(self) -> int:
        """Tokens of query text kept: `query_max_length`, else `max_length`."""
        return self.max_length if self.query_max_length is None else self.query_max_length


def add_embed_token(model, tokenizer) -> bool:
    """Add EMBED_TOKEN once; its new embedding row is the mean of the existing rows.

    Returns True when the token was added. The matrix is only grown when the tokenizer
    outgrows it (some models pad their vocab, and shrinking would drop real rows).
    """
    if EMBED_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([EMBED_TOKEN], special_tokens=True)
    elif tokenizer.convert_tokens_to_ids(EMBED_TOKEN) < model.get_input_embeddings().weight.shape[0]:
        return False  # tokenizer and weights both have it (a saved full model)
    # else: a saved tokenizer over base weights (a LoRA adapter): give the base the same new row
    new_id = tokenizer.convert_tokens_to_ids(EMBED_TOKEN)
    inp = model.get_input_embeddings()
    out = model.get_output_embeddings()
    tied = out is not None and out.weight is inp.weight
    input_mean = inp.weight.detach()[:new_id].mean(dim=0)
    output_mean = None if out is None or tied else out.weight.detach()[:new_id].mean(dim=0)
    if new_id >= inp.weight.shape[0]:
        model.resize_token_embeddings(new_id + 1, mean_resizing=False)
    with torch.no_grad():
        model.get_input_embeddings().weight[new_id] = input_mean
        if output_mean is not None:
            model.get_output_embeddings().weight[new_id] = output_mean
    return True


def _kwarg_name(fn, *candidates: str) -> str:
    params = inspect.signature(fn).parameters
    return next((c for c in candidates if c in params), candidates[-1])


class SearchR3(SentenceTransformerMixin):
    """A reason-then-embed search model (with sentence-transformers' interface: `st_compat`).

    >>> model = SearchR3.from_pretrained()   # the default released adapter   # doctest: +SKIP
    >>> docs = model.embed_documents(["Paris is the capital of France."])
    >>> queries = model.embed_queries(["capital of France"], reasoning=True)
    >>> scores = queries @ docs.T
    """

    def __init__(self, model, tokenizer, name: str, config: EmbedConfig | None = None, base: str | None = None):
        self.base = base or name  # the registered base model a LoRA adapter applies to
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.config = config or EmbedConfig()
        self.embed_token_id = tokenizer.convert_tokens_to_ids(EMBED_TOKEN)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.prompts = PromptBuilder(tokenizer, self.config.max_length, self.config.query_max_length)
        self.prefix_cache = PrefixCache(self.prompts.prefixes)  # set .enabled = False to run full prompts
        self._backbone = model.get_decoder()
        self._cache_kw = _kwarg_name(self._backbone.forward, "cache", "past_key_values")
        self._weights_source: str | None = None  # the name or folder the weights were loaded from

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = assets.DEFAULT_MODEL, *,
                        dtype: str | torch.dtype = "auto", device: str | None = None,
                        config: EmbedConfig | None = None) -> "SearchR3":
        """Load a registered name or a local folder, adding the embed token if missing.

        Args:
            name_or_path: a registered name (`searchr3.assets.registered_names()`: bundled bases,
                released adapters such as "searchr3-smollm2-135m-sft-v2", and aliases such as
                "searchr3-smollm2-135m-sft", which load the latest release) or a folder. Default:
                the best released adapter (`searchr3.DEFAULT_MODEL`).
            dtype: "auto" (bf16 where the hardware runs it fast, else fp32), "bf16" or "fp32".
                int8 is not a dtype here (it moved nDCG@10 significantly, by up to 0.011);
                `searchr3.quantize_int8` applies it to an fp32 CPU model for those who accept that.
            device: "cpu", "cuda", ...; default: cuda when available, else cpu.
            config: inference settings; default: the settings saved with the model, else defaults.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = assets.resolve_model(name_or_path)
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch_dtype = resolve_dtype(dtype, dev)
        meta_file = folder / SEARCHR3_FILE
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        is_adapter = (folder / "adapter_config.json").is_file()
        weights = assets.resolve_model(meta["base"]) if is_adapter else folder
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(folder), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(weights, dtype=torch.float32, local_files_only=True)
        add_embed_token(model, tokenizer)
        if is_adapter:  # a LoRA adapter over a base: apply it, then merge for plain-speed inference
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, folder, is_trainable=False).merge_and_unload()
        if config is None and "config" in meta:
            config = from_dict(EmbedConfig, meta["config"], f"{folder / SEARCHR3_FILE} (config)")
        is_registered = str(name_or_path) in assets.registered_names()
        name = assets.canonical_name(str(name_or_path)) if is_registered else str(Path(folder).resolve())
        base = meta.get("base", name) if meta else name
        loaded = cls(model.to(device=dev, dtype=torch_dtype), tokenizer, name, config, base=base)
        loaded._weights_source = name
        return loaded

    @classmethod
    def from_adapter_trainable(cls, name_or_path: str | os.PathLike, *, config: EmbedConfig | None = None,
                               dtype: str | torch.dtype = "fp32") -> "SearchR3 | None":
        """A saved LoRA adapter over its base, *unmerged* and trainable; None if it is not an adapter.

        Training must continue the adapter itself: merging it and adding a fresh one would save
        a second adapter that is only right over the first, yet names the plain base.
        """
        from peft import PeftModel

        folder = assets.resolve_model(name_or_path)
        if not (folder / "adapter_config.json").is_file():
            return None
        model = cls.from_pretrained(json.loads((folder / SEARCHR3_FILE).read_text())["base"], dtype=dtype,
                                    config=config)
        model.attach(PeftModel.from_pretrained(model.model, folder, is_trainable=True))
        return model

    def save_pretrained(self, path: str | os.PathLike, keep: Sequence[str] = ()) -> Path:
        """Write model (or LoRA adapter), tokenizer and settings to `path` atomically.

        The folder is written beside `path` and renamed into place; entries of an existing
        `path` named in `keep` (e.g. a training run's checkpoints and logs) are carried over.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
        try:
            tmp.chmod(0o755)
            # A PEFT model saves only the adapter and the new token's row, not the resized matrix.
            # Only the trained adapter: a frozen reference copy (Stage 2) is not part of the model.
            extra = ({"save_embedding_layers": False, "selected_adapters": ["default"]}
                     if hasattr(self.model, "peft_config") else {})
            self.model.save_pretrained(tmp, **extra)
            if extra:  # PEFT writes a boilerplate card and the base's local path; name the base instead
                (tmp / "README.md").unlink(missing_ok=True)
                adapter_config = json.loads((tmp / "adapter_config.json").read_text())
                adapter_config["base_model_name_or_path"] = self.base
                (tmp / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n")
            self.tokenizer.save_pretrained(tmp)
            meta = {"embed_token": EMBED_TOKEN, "source": self.name, "base": self.base, "config": asdict(self.config)}
            (tmp / SEARCHR3_FILE).write_text(json.dumps(meta, indent=2) + "\n")
            old = None
            if path.exists():
                for name in keep:
                    if (path / name).exists():
                        (path / name).rename(tmp / name)
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                path.rename(old)
            tmp.rename(path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    def attach(self, model) -> None:
        """Swap in a wrapped model (e.g. a PEFT model around this one) for training."""
        self.model = model
        self._backbone = model.get_decoder()
        self._cache_kw = _kwarg_name(self._backbone.forward, "cache", "past_key_values")
        self._forget_fingerprints()

    def _forget_fingerprints(self) -> None:
        """The weights changed: neither the loaded files nor cached hashes describe them any more."""
        self._weights_source = None
        self.outputs_changed()
        self.__dict__.pop("weights_fingerprint", None)

    def outputs_changed(self) -> None:
        """Prompts or arithmetic changed (e.g. quantisation): cached vectors keyed on `fingerprint` are stale."""
        self.__dict__.pop("fingerprint", None)

    def load_trainable(self, folder: str | os.PathLike) -> None:
        """Load weights saved by `save_pretrained` into this (possibly PEFT-wrapped) model in place."""
        from safetensors.torch import load_file

        folder = Path(folder)
        if (folder / "adapter_model.safetensors").is_file():
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.model, load_file(folder / "adapter_model.safetensors"))
        else:
            missing, unexpected = self.model.load_state_dict(load_file(folder / "model.safetensors"), strict=False)
            if unexpected or any("lm_head" not in k for k in missing):
                raise ValueError(f"{folder}: weights do not match the model (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
        self._forget_fingerprints()

    def set_max_length(self, max_length: int, query_max_length: int | None = None) -> None:
        """Change how many tokens of text are kept per document, and per query if given.

        A model whose queries follow the document length (`query_max_length` None) keeps doing so.
        """
        self.config.max_length = max_length
        if query_max_length is not None:
            self.config.query_max_length = query_max_length
        self.prompts = PromptBuilder(self.tokenizer, max_length, self.config.query_max_length)
        self.outputs_changed()  # prompts are part of the fingerprint

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Vector dimension (the model's hidden size)."""
        return int(self.model.config.hidden_size)

    @functools.cached_property
    def fingerprint(self) -> str:
        """A short hash of the weights, tokenizer size and prompts: keys on-disk caches of outputs."""
        return tensors_digest(self.model.state_dict(), f"{len(self.tokenizer)}|{self.prompts.fingerprint}")

    @functools.cached_property
    def weights_fingerprint(self) -> str:
        """A hash of the weights this model was loaded from, the same in every dtype and machine.

        Indexes and the service key compatibility on it (see `searchr3.fingerprint`). A model
        built in memory, or changed by training, hashes its tensors in fp32 instead.
        """
        if self._weights_source is not None:
            return weights_fingerprint(self._weights_source)
        return tensors_digest(self.model.state_dict(), f"{len(self.tokenizer)}", as_fp32=True)

    @property
    def precision(self) -> str:
        """What the weights compute in: "int8" (quantised), else the parameters' dtype ("float32", ...)."""
        from .quantization import is_quantized

        return "int8" if is_quantized(self.model) else str(next(self.model.parameters()).dtype).removeprefix("torch.")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ batching
    def collate(self, rows: Sequence[Sequence[int]], side: str = "left") -> tuple[torch.Tensor, torch.Tensor,
                                                                                   torch.Tensor]:
        """Pad id lists to one length: (ids, attention_mask, position_ids), each (B, T).

        Inference pads on the left (generation appends on the right). Training pads on the
        right: a left pad position attends to nothing, and on CUDA such fully masked rows
        can put NaN into the backward pass even though their outputs are never used.
        """
        m = self.config.pad_to_multiple
        T = -(-max(len(r) for r in rows) // m) * m
        ids = torch.full((len(rows), T), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        for i, r in enumerate(rows):
            span = slice(T - len(r), T) if side == "left" else slice(0, len(r))
            ids[i, span] = torch.tensor(r, dtype=torch.long)
            mask[i, span] = 1
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # padding must not shift positions
        return ids.to(self.device), mask.to(self.device), positions.to(self.device)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      position_ids: torch.Tensor, cache=None, use_cache: bool = False):
        """Return (final-normed hidden states (B, T, H), cache) from the decoder backbone.

        The LM head is skipped: embedding needs only hidden states, and decoding applies
        the head to one position per row.
        """
        out = self._backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             use_cache=use_cache, **{self._cache_kw: cache})
        if not use_cache:
            return out.last_hidden_state, None
        new_cache = out["cache"] if "cache" in out else out["past_key_values"]  # renamed in transformers 5.x
        return out.last_hidden_state, new_cache

    def _warn_truncated(self, prompts: Sequence[Prompt], what: str, queries: bool = False) -> None:
        cut = [i for i, p in enumerate(prompts) if p.truncated]
        if cut:
            first = cut[0]
            limit = (f"query_max_length={self.config.query_max_length}" if queries and self.config.query_max_length
                     else f"max_length={self.config.max_length}")
            warnings.warn(f"{len(cut)} of {len(prompts)} {what} exceed {limit} tokens "
                          f"and were truncated (first: {what}[{first}], {prompts[first].text_tokens} tokens)",
                          stacklevel=3)

    def embed_prompts(self, prompts: Sequence[Prompt], batch_size: int | None = None, desc: str = "texts",
                      show_progress: bool | None = None) -> np.ndarray:
        """Embed assembled prompts whose last id is the embed token (e.g. `prompts.completed` reasoning
        with a given trace); batches sorted by length."""
        out = np.zeros((len(prompts), self.dim), dtype=np.float32)
        if not prompts:
            return out
        bs = batch_size or self.config.batch_size
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i].ids))
        show = len(prompts) > bs if show_progress is None else show_progress
        with torch.inference_mode(), tqdm(total=len(prompts), desc=desc, unit="text", disable=not show) as bar:
            for start in range(0, len(order), bs):
                idx = order[start:start + bs]
                hidden, _, ids, _, _ = prefill(self, [prompts[i].ids for i in idx], self.prefix_cache)
                out[idx] = embed_token_states(hidden, ids, self.embed_token_id).cpu().numpy()
                bar.update(len(idx))
        return out

    # ------------------------------------------------------------------ public API
    def embed_documents(self, texts: Sequence[str], batch_size: int | None = None,
                        show_progress: bool | None = None) -> np.ndarray:
        """Return document vectors, (N, H) float32, L2-normalised: one forward pass each, no reasoning."""
        texts = validate_texts(texts)
        prompts = [self.prompts.document(t) for t in texts]
        self._warn_truncated(prompts, "texts")
        return self.embed_prompts(prompts, batch_size, "documents", show_progress)

    def embed_queries(self, texts: Sequence[str], reasoning: bool = False, batch_size: int | None = None,
                      show_progress: bool | None = None) -> np.ndarray:
        """Return query vectors, (N, H) float32, L2-normalised.

        With `reasoning=True` each query is first analysed by the model (greedy, so the
        same query gives the same vector); use `reason` to also get the traces.
        """
        texts = validate_texts(texts)
        if reasoning:
            results = self.reason(texts, batch_size=batch_size, show_progress=show_progress)
            return self.stack(results)
        prompts = [self.prompts.query(t) for t in texts]
        self._warn_truncated(prompts, "texts", queries=True)
        return self.embed_prompts(prompts, batch_size, "queries", show_progress)

    def stack(self, results: Sequence[Reasoning]) -> np.ndarray:
        """Return the vectors of `reason` results as one (N, H) float32 array ((0, H) when empty)."""
        return np.stack([r.vector for r in results]) if results else np.zeros((0, self.dim), np.float32)

    def logits_processor(self, budget: int | None = None, temperature: float | None = None,
                         top_p: float | None = None, min_tokens: int | None = None) -> LogitsProcessor:
        """The next-token distribution of reasoning under this model's settings (what sampling draws from;
        greedy decoding takes its argmax, which only the minimum length changes)."""
        budget = self.config.reasoning_tokens if budget is None else budget
        floor = self.config.min_reasoning_tokens if min_tokens is None else min_tokens
        return LogitsProcessor(self.embed_token_id, self.tokenizer.eos_token_id, temperature or self.config.temperature,
                               top_p or self.config.top_p, min(floor, budget))

    def reason(self, texts: Sequence[str], *, max_new_tokens: int | None = None, sample: bool = False,
               temperature: float | None = None, top_p: float | None = None,
               seed: int | Sequence[int] | None = None, batch_size: int | None = None,
               show_progress: bool | None = None, min_tokens: int | None = None) -> list[Reasoning]:
        """Reason about each query, then embed it; returns one `Reasoning` per query.

        Generation stops at the embed token. When the budget of `max_new_tokens` runs out,
        or the model ends its turn without the token, the token is appended (`forced`).
        The token's state is read in the same decode loop: feeding the embed token as the next
        input yields its hidden state in one extra step on the KV cache, with no re-encoding.
        `min_tokens` overrides the model's minimum reasoning length for this call.

        When sampling, `seed` may be one int (one generator for the whole call) or one seed per
        text: then each text samples from its own generator, so its completion does not depend
        on which other texts share its batch (Stage 2 relies on this across processes).
        """
        texts = validate_texts(texts)
        prompts = [self.prompts.reasoning(t) for t in texts]
        self._warn_truncated(prompts, "texts", queries=True)
        budget = self.config.reasoning_tokens if max_new_tokens is None else max_new_tokens
        if budget < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {budget}")
        if seed is not None and not isinstance(seed, int):
            seeds = list(seed)
            if len(seeds) != len(texts):
                raise ValueError(f"{len(seeds)} seeds for {len(texts)} texts")
            generators = [torch.Generator(device=self.device).manual_seed(int(x)) for x in seeds]
        else:
            shared, generators = torch.Generator(device=self.device), None
            if seed is not None:
                shared.manual_seed(seed)
        processor = self.logits_processor(budget, temperature, top_p, min_tokens)
        bs = batch_size or self.config.batch_size
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i].ids))
        results: list[Reasoning | None] = [None] * len(prompts)
        show = len(prompts) > bs if show_progress is None else show_progress
        with torch.inference_mode(), tqdm(total=len(prompts), desc="reasoning", unit="query",
                                          disable=not show) as bar:
            for start in range(0, len(order), bs):
                idx = order[start:start + bs]
                generator = [generators[i] for i in idx] if generators else shared
                for i, r in zip(idx, reason_batch(self, [prompts[i].ids for i in idx], budget, processor, sample, generator)):
                    results[i] = r
                bar.update(len(idx))
        return results  # type: ignore[return-value]
