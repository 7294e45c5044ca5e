"""Every prompt searchr3 builds: the embed token, the system prompts and the chat assembly.

No other module writes prompt text, so training and inference cannot disagree about it.
A prompt is assembled at the token level as `prefix + text + suffix`, where prefix and
suffix come from the tokenizer's own chat template rendered around a placeholder. That
keeps truncation on the user's text only (never on the template) and tokenizes the text
with special tokens split, so a literal "<|embed_token|>" inside a document is plain text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

EMBED_TOKEN = "<|embed_token|>"

DOCUMENT_SYSTEM = (
    "Represent the user's document for retrieval. Answer with the embedding token only."
)
QUERY_SYSTEM = (
    "Represent the user's search query for retrieving relevant documents. "
    "Answer with the embedding token only."
)
REASONING_SYSTEM = (
    "The user gives a search query. Before it is embedded for retrieval, analyse it briefly: "
    "its intent, its key concepts, and related terms that a relevant document would contain. "
    f"Keep it to a few sentences, then end your answer with {EMBED_TOKEN}"
)

_SLOT = "\u241fSEARCHR3_TEXT\u241f"  # a placeholder no real text contains


@dataclass(frozen=True)
class Prompt:
    """Token ids of one assembled prompt, and the text's token count before truncation."""

    ids: list[int]
    text_tokens: int
    truncated: bool
    assistant_start: int  # index in ids where the assistant turn's content begins


@dataclass(frozen=True)
class _Template:
    prefix: list[int]  # ids before the user's text
    suffix: list[int]  # ids after it: end of user turn, assistant header, pre-fill
    prefill: int  # how many of the suffix's last ids are the assistant's pre-filled content


def validate_texts(texts: Sequence[str], what: str = "texts") -> list[str]:
    """Return `texts` as a list, raising TypeError that names the first non-string position."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"{what} must be a list of strings, not a single {type(texts).__name__}; wrap it: [text]")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise TypeError(f"{what}[{i}] is {type(text).__name__}, expected str")
    return out


def render_chat(tokenizer, system: str, prefill: str) -> tuple[str, str]:
    """Return (before, after): the chat around the user's text, assistant turn pre-filled.

    Uses the tokenizer's chat template; a template without a system role gets the
    system prompt merged into the user turn; a tokenizer without a template gets a
    plain-text layout.
    """
    if getattr(tokenizer, "chat_template", None):
        try:
            messages = [{"role": "system", "content": system}, {"role": "user", "content": _SLOT}]
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # templates that reject a system role raise their own error types
            messages = [{"role": "user", "content": f"{system}\n\n{_SLOT}"}]
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = f"{system}\n\nInput: {_SLOT}\n\nAnswer: "
    before, after = text.split(_SLOT)
    return before, after + prefill


class PromptBuilder:
    """Assembles document, direct-query and reasoning-query prompts as token ids.

    Args:
        tokenizer: a Hugging Face tokenizer that already contains EMBED_TOKEN.
        max_length: the most tokens of document text kept; longer texts are cut at the end.
        query_max_length: the same for queries (direct and reasoning); None: `max_length`.
    """

    def __init__(self, tokenizer, max_length: int, query_max_length: int | None = None):
        if EMBED_TOKEN not in tokenizer.get_vocab():
            raise ValueError(f"tokenizer has no {EMBED_TOKEN}; load the model with SearchR3.from_pretrained")
        query_max_length = max_length if query_max_length is None else query_max_length
        for name, value in (("max_length", max_length), ("query_max_length", query_max_length)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.query_max_length = query_max_length
        self._templates = {
            "document": self._template(DOCUMENT_SYSTEM, EMBED_TOKEN),
            "query": self._template(QUERY_SYSTEM, EMBED_TOKEN),
            "reasoning": self._template(REASONING_SYSTEM, ""),
        }

    @property
    def fingerprint(self) -> str:
        """A short hash of every template's ids and both lengths: changes when a prompt changes."""
        parts = [(k, t.prefix, t.suffix) for k, t in sorted(self._templates.items())]
        lengths = (self.max_length,) if self.query_max_length == self.max_length else (  # one length: as before,
            self.max_length, self.query_max_length)  # so caches keyed before queries had their own stay valid
        return hashlib.sha256(repr((parts, *lengths)).encode()).hexdigest()[:16]

    @property
    def prefixes(self) -> list[list[int]]:
        """Each prompt kind's leading ids, the same for every text (reused as a KV prefix: `prefix_cache`)."""
        return [list(t.prefix) for t in self._templates.values()]

    def _template(self, system: str, prefill: str) -> _Template:
        before, after = render_chat(self.tokenizer, system, prefill)
        encode = lambda s: self.tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
        return _Template(prefix=encode(before), suffix=encode(after), prefill=len(encode(prefill)) if prefill else 0)

    def _build(self, kind: str, text: str) -> Prompt:
        template = self._templates[kind]
        limit = self.max_length if kind == "document" else self.query_max_length
        ids = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        n = len(ids)
        full = template.prefix + ids[:limit] + template.suffix
        return Prompt(full, n, n > limit, len(full) - template.prefill)

    def document(self, text: str) -> Prompt:
        """Document prompt; the assistant turn is pre-filled so EMBED_TOKEN is the last id."""
        return self._build("document", text)

    def query(self, text: str) -> Prompt:
        """Direct query prompt (no reasoning, text cut to `query_max_length`); EMBED_TOKEN is the last id."""
        return self._build("query", text)

    def reasoning(self, text: str) -> Prompt:
        """Reasoning prompt (text cut to `query_max_length`) ending at the assistant header; generation
        continues from it."""
        return self._build("reasoning", text)

    def completed(self, prompt: Prompt, completion: Sequence[int]) -> Prompt:
        """A reasoning prompt followed by its generated completion (which ends with the embed token)."""
        return Prompt(prompt.ids + list(completion), prompt.text_tokens, prompt.truncated, prompt.assistant_start)


def document_text(title: str, text: str) -> str:
    """Return the text embedded for a document: title and body on separate lines (BEIR docs)."""
    title, text = title.strip(), text.strip()
    return f"{title}\n{text}" if title else text


def assistant_positions(prompts: Sequence[Prompt]) -> tuple[list[int], list[int], list[int]]:
    """(rows, positions, targets): where a right-padded batch of `prompts` predicts each assistant
    token (the hidden state at j-1 predicts token j); training's L_SFT, KL and L_token read these."""
    rows, positions, targets = [], [], []
    for r, p in enumerate(prompts):
        for j in range(p.assistant_start, len(p.ids)):
            rows.append(r)
            positions.append(j - 1)
            targets.append(p.ids[j])
    return rows, positions, targets
