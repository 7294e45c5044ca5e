"""Config loading refuses each kind of mistake, for every config class, from a YAML file and from `--set`.

Each test goes over every field of the class that the mistake applies to, so a field added later is
covered without a new test; a new config class joins by being added to CLASSES (and SECTIONS).
"""

import dataclasses
import math
import typing
from pathlib import Path

import pytest
import yaml

from searchr3 import ConfigError, EmbedConfig
from searchr3.cli import main
from searchr3.hybrid import HybridConfig
from searchr3.config import RANGE_KEYS, from_dict, load_section, override, type_name
from searchr3.serve import ServeConfig
from searchr3.train.env import EnvConfig
from searchr3.train.grpo import RLConfig
from searchr3.train.rft import RFTConfig
from searchr3.train.sft import SFTConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SECTIONS = {"embed": EmbedConfig, "serve": ServeConfig, "sft": SFTConfig, "rl": RLConfig, "env": EnvConfig,
            "hybrid": HybridConfig, "rft": RFTConfig}
CLASSES = [pytest.param(cls, section, id=section) for section, cls in SECTIONS.items()]
HOW = ["yaml", "set"]


def _fields(cls, *kinds):
    """(name, hint, metadata) of the fields whose hint, without None, is one of `kinds`."""
    out = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        bare = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        if len(bare) == 1 and bare[0] in kinds:
            out.append((f.name, hint, f.metadata))
    return out


def _load(tmp_path, how, cls, section, key, text):
    """Load `key: text` (YAML text) for `cls`: from a file, or as `--set key=text` over a file."""
    path = tmp_path / f"{section}.yaml"
    if how == "yaml":
        path.write_text(f"{section}:\n  {key}: {text}\n")
        return load_section(path, section, cls)
    path.write_text(f"{section}: {{}}\n")
    return override(load_section(path, section, cls), [f"{key}={text}"], f"{path} [{section}] --set")


def _refused(tmp_path, how, cls, section, key, text) -> str:
    """The ConfigError message for a refused value; it names the file, the section, the class and the key."""
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, how, cls, section, key, text)
    message = str(info.value)
    assert str(tmp_path / f"{section}.yaml") in message and f"[{section}]" in message, message
    assert cls.__name__ in message and key in message, message
    return message


def _in_range(metadata, value) -> bool:
    return all(k not in metadata or ok(value, metadata[k]) for k, ok in (
        ("ge", lambda v, b: v >= b), ("gt", lambda v, b: v > b), ("le", lambda v, b: v <= b),
        ("lt", lambda v, b: v < b)))


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(("cls", "section"), CLASSES)
def test_numeric_strings_become_floats_only_for_float_fields(tmp_path, cls, section, how):
    """PyYAML reads `1e-4` (no dot) as a string: a float field takes it as a number, an int field refuses it."""
    for name, _, metadata in _fields(cls, float):
        text = next(t for t in ("1e-4", "5e-1", "2e0", "3e1") if _in_range(metadata, float(t)))
        assert isinstance(yaml.safe_load(text), str)
        value = getattr(_load(tmp_path, how, cls, section, name, text), name)
        assert type(value) is float and value == float(text), name
        whole = next(t for t in ("1", "0", "30") if _in_range(metadata, int(t)))  # an int is a fine float
        value = getattr(_load(tmp_path, how, cls, section, name, whole), name)
        assert type(value) is float and value == int(whole), name
    for name, hint, _ in _fields(cls, int):
        assert f"must be {type_name(hint)}, got str '1e2'" in _refused(tmp_path, how, cls, section, name, "1e2")


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(("cls", "section"), CLASSES)
def test_non_numeric_strings_are_refused_for_numbers(tmp_path, cls, section, how):
    for name, hint, _ in _fields(cls, float):
        for text in ("fast", "nan", ".inf-ish"):
            message = _refused(tmp_path, how, cls, section, name, f"'{text}'")
            assert f"must be {type_name(hint)}" in message and "number" in message
    for name, hint, _ in _fields(cls, int):
        assert f"must be {type_name(hint)}" in _refused(tmp_path, how, cls, section, name, "many")


WRONG = {  # YAML texts of the wrong type for each kind of field
    int: ["true", "1.5", "[1]", "{a: 1}"],
    float: ["false", "[1.0]", "{a: 1}"],
    str: ["3", "1.5", "true", "[a, b]"],
    list: ["scifact:train", "[1, 2]", "7"],
}


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(("cls", "section"), CLASSES)
def test_wrong_types_are_refused(tmp_path, cls, section, how):
    """bool is no number, a float no int, a number no string, a string no list; the message names the type."""
    checked = 0
    for name, hint, _ in _fields(cls, int, float, str, list[str]):
        kind = list if list[str] in (hint, *typing.get_args(hint)) else next(
            k for k in (int, float, str) if k in (hint, *typing.get_args(hint)))
        for text in WRONG[kind]:
            message = _refused(tmp_path, how, cls, section, name, text)
            assert f"must be {type_name(hint)}, got " in message, message
            checked += 1
    assert checked >= 3 * len(dataclasses.fields(cls))  # every field of every class has a checked type


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(("cls", "section"), CLASSES)
def test_unknown_keys_are_refused(tmp_path, cls, section, how):
    key = dataclasses.fields(cls)[0].name + "s_typo"
    message = _refused(tmp_path, how, cls, section, key, "1")
    assert f"unknown key {key!r} for {cls.__name__}" in message


def _outside(metadata, hint) -> list[str]:
    """YAML texts just outside a field's declared range."""
    step = 1 if int in (hint, *typing.get_args(hint)) else 0.5
    texts = []
    if "ge" in metadata:
        texts.append(str(metadata["ge"] - step))
    if "gt" in metadata:
        texts.append(str(metadata["gt"]))
    if "le" in metadata:
        texts.append(str(metadata["le"] + step))
    if "lt" in metadata:
        texts.append(str(metadata["lt"]))
    if "choices" in metadata:
        texts.append("not-a-choice")
    return texts


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(("cls", "section"), CLASSES)
def test_out_of_range_values_are_refused(tmp_path, cls, section, how):
    checked = 0
    for f in dataclasses.fields(cls):
        for text in _outside(f.metadata, typing.get_type_hints(cls)[f.name]):
            message = _refused(tmp_path, how, cls, section, f.name, text)
            assert f"{cls.__name__}.{f.name} must be " in message and "got" in message, message
            checked += 1
    assert checked >= 3


@pytest.mark.parametrize(("cls", "section"), CLASSES)
def test_every_number_declares_its_range_and_defaults_lie_in_it(cls, section):
    """Range metadata is on every numeric field, uses known keys only (a typo would check nothing),
    and the defaults pass the same checks as a loaded file."""
    for f in dataclasses.fields(cls):
        assert set(f.metadata) <= set(RANGE_KEYS), f.name
    for name, _, metadata in _fields(cls, int, float):
        assert set(metadata) & {"ge", "gt", "le", "lt"}, f"{cls.__name__}.{name} has no range"
    assert from_dict(cls, dataclasses.asdict(cls())) == cls()


def test_a_class_check_after_loading_names_the_file(tmp_path):
    """Cross-field checks stay in __post_init__; a failing one still says which file and section."""
    path = tmp_path / "sft.yaml"
    path.write_text("sft:\n  batch_size: 6\n  grad_accum: 4\n")
    with pytest.raises(ConfigError, match=r"sft.yaml \[sft\]: SFTConfig: batch_size 6 must divide by grad_accum 4"):
        load_section(path, "sft", SFTConfig)
    rl = tmp_path / "rl.yaml"
    rl.write_text("rl:\n  data: scifact:test\n")
    with pytest.raises(ConfigError, match=r"rl.yaml \[rl\]: RLConfig: .*'scifact:test' uses a test split"):
        load_section(rl, "rl", RLConfig)
    with pytest.raises(ValueError, match="min_reasoning_tokens"):  # built directly: the class's own check
        EmbedConfig(reasoning_tokens=4, min_reasoning_tokens=5)
    path.write_text("sft: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"sft.yaml \[sft\]: expected a mapping for SFTConfig, got list"):
        load_section(path, "sft", SFTConfig)
    path.write_text("sft:\n  lr: [1\n")
    with pytest.raises(ConfigError, match=r"sft.yaml: not valid YAML"):
        load_section(path, "sft", SFTConfig)


def test_every_shipped_config_section_loads():
    """Each section of each YAML in configs/ loads through the real loader, numbers with their declared types."""
    paths = sorted(CONFIGS.glob("*.yaml"))
    loaded = 0
    for path in paths:
        for section in yaml.safe_load(path.read_text()):
            assert section in SECTIONS, f"{path.name}: section {section!r} has no class in SECTIONS"
            config = load_section(path, section, SECTIONS[section])
            for name, _, _ in _fields(SECTIONS[section], float):
                value = getattr(config, name)
                assert value is None or (type(value) is float and math.isfinite(value)), (path.name, name)
            loaded += 1
    assert len(paths) >= 6 and loaded >= len(paths)


def test_train_set_errors_name_the_config_file(tmp_path, capsys):
    """The CLI's --set / --set-env refusals name the base file and section, before any model loads."""
    sft, rl = CONFIGS / "sft-quick.yaml", CONFIGS / "rl-quick.yaml"
    assert main(["train", "sft", "--config", str(sft), "--output", str(tmp_path / "s"), "--set", "lr=fast"]) == 2
    err = capsys.readouterr().err
    assert f"{sft} [sft] --set: SFTConfig.lr must be float, got str 'fast' (not a number)" in err
    assert main(["train", "rl", "--config", str(rl), "--output", str(tmp_path / "r"), "--set-env", "top_k=0"]) == 2
    assert f"{rl} [env] --set-env: EnvConfig.top_k must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "s").exists() and not (tmp_path / "r").exists()
