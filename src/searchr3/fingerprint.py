"""Weight fingerprints: which exact weights a model name or folder stands for.

Indexes and the service record this fingerprint, not the model's name, because a name can be
re-pointed (an alias, a folder overwritten by a new training run) while vectors built by the
old weights stay on disk. It hashes the files the model is loaded from, so it is the same in
every dtype and on every machine, unlike a hash of the loaded tensors.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import torch

from . import assets

SEARCHR3_FILE = "searchr3.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")
CONFIG_FILES = ("config.json", "adapter_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                   "vocab.json", "merges.txt")


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """Hash one file; keyed on size and mtime so a rewritten file is hashed again."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: Path) -> str:
    st = path.stat()
    return _file_digest(str(path.resolve()), st.st_size, st.st_mtime_ns)


def tokenizer_folder(folder: Path) -> Path:
    """The folder holding a model's tokenizer: its own, or the shared one its searchr3.json names."""
    if (folder / "tokenizer_config.json").is_file():
        return folder
    meta_file = folder / SEARCHR3_FILE
    shared = json.loads(meta_file.read_text()).get("tokenizer") if meta_file.is_file() else None
    if shared:
        return (folder / shared).resolve()
    return folder


def weights_fingerprint(name_or_path: str | os.PathLike) -> str:
    """A 16-hex-digit hash of the files behind a registered name or a model folder.

    A bundled base hashes its GGUF; a full model folder its weights, config and tokenizer; an
    adapter its weights, config and tokenizer plus its base's fingerprint, so two adapters are
    equal only over the same base.
    """
    name = assets.canonical_name(str(name_or_path))
    h = hashlib.blake2b(digest_size=8)
    if name in assets.BUNDLED_MODELS:
        b = assets.BUNDLED_MODELS[name]
        h.update(f"bundled|{name}|".encode())
        h.update(file_digest(assets.package_file(b.package, b.filename, b.install)).encode())
        return h.hexdigest()
    folder = assets.resolve_model(name)
    files = sorted(p for p in folder.iterdir() if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name in CONFIG_FILES))
    tok = tokenizer_folder(folder)
    files += sorted(tok / n for n in TOKENIZER_FILES if (tok / n).is_file())
    if not any(p.suffix in WEIGHT_SUFFIXES for p in files):
        raise FileNotFoundError(f"{folder}: no weight files to fingerprint")
    for path in files:
        h.update(f"{path.name}|{file_digest(path)}|".encode())
    if (folder / "adapter_config.json").is_file():
        meta_file = folder / SEARCHR3_FILE
        base = json.loads(meta_file.read_text())["base"] if meta_file.is_file() else None
        if base is None:
            raise FileNotFoundError(f"{folder}: an adapter folder needs {SEARCHR3_FILE} naming its base")
        h.update(f"base|{weights_fingerprint(base)}".encode())
    return h.hexdigest()


def plain_tensors(tensor: torch.Tensor) -> list[torch.Tensor]:
    """The plain tensors a tensor stands for: itself, or a subclass's inner tensors (torchao's int8
    weights hold int8 values, scales and pre-scales), so their bytes can be hashed."""
    if type(tensor) in (torch.Tensor, torch.nn.Parameter):
        return [tensor]
    names, _ = tensor.__tensor_flatten__()
    return [t for n in names for t in plain_tensors(getattr(tensor, n))]


def tensors_digest(state_dict: dict[str, torch.Tensor], extra: str, as_fp32: bool = False) -> str:
    """A 16-hex-digit hash of loaded tensors (by name) and `extra`: their bytes as stored, or as
    fp32 values (the same in every dtype), for models that have no files behind them."""
    h = hashlib.blake2b(digest_size=8)
    for name, tensor in sorted(state_dict.items()):
        h.update(name.encode())
        for part in plain_tensors(tensor):
            part = part.detach().to("cpu", torch.float32 if as_fp32 else part.dtype).contiguous()
            h.update(part.view(torch.uint8).numpy().tobytes())
    h.update(extra.encode())
    return h.hexdigest()
