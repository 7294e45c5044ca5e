"""Shared fixtures: a tiny random model of the real architecture with the real tokenizer."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # every test must pass with no network

import pytest
import torch
from hypothesis import settings

# Generated tests (schemathesis) run the same examples on every run: a failure reproduces,
# and a pass is not luck of the draw.
settings.register_profile("searchr3", derandomize=True, database=None)
settings.load_profile("searchr3")

from searchr3 import EmbedConfig, SearchR3
from searchr3.assets import BASE_MODEL, resolve_model


@pytest.fixture(scope="session")
def base_folder():
    """The bundled SmolLM2 as a Hugging Face folder (converted from GGUF once per machine)."""
    return resolve_model(BASE_MODEL)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory, base_folder):
    """A 2-layer randomly initialised Llama with SmolLM2's config shape and real tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(base_folder)
    config.update(dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    folder = tmp_path_factory.mktemp("tiny-smollm2")
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base_folder).save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_config():
    return EmbedConfig(batch_size=4, max_length=48, reasoning_tokens=6)


@pytest.fixture
def tiny(tiny_folder, tiny_config):
    return SearchR3.from_pretrained(tiny_folder, dtype="fp32", device="cpu", config=tiny_config)


@pytest.fixture(scope="session")
def real_model():
    return SearchR3.from_pretrained(BASE_MODEL, dtype="fp32", device="cpu",
                                    config=EmbedConfig(batch_size=8, max_length=128, reasoning_tokens=24))


def damage_file(path, how: str, rng) -> None:
    """Damage a file as a disk or an operator might: missing, empty, truncated to half, or one bit
    flipped at an offset drawn from `rng` (a random.Random)."""
    data = path.read_bytes()
    if how == "missing":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        flipped = bytearray(data)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(flipped))


@pytest.fixture
def damage():
    return damage_file
