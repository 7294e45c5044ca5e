"""Load config dataclasses from YAML files and `--set key=value`, checking every key and value.

A value is checked against its field's type hint and against the range in the field's metadata
(`field(default=16, metadata={"ge": 1})`; the keys are RANGE_KEYS), so a mistake stops the load with
the file, section, key and class named instead of surfacing deep inside a run. PyYAML follows YAML
1.1, which reads `lr: 1e-4` (no dot) as the string '1e-4': a numeric string becomes a float for a
float field. Numbers are otherwise strict: bool is no int, a float no int; an int is a fine float.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

T = TypeVar("T")

RANGE_KEYS = ("ge", "gt", "le", "lt", "choices")  # field metadata read by the range check


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message says where it came from."""


class _Mismatch(TypeError):
    """A value that does not fit a type hint (internal; from_dict turns it into a ConfigError)."""


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def type_name(hint: Any) -> str:
    """`int`, `list[str]`, `float | None`: how a type hint reads in a message."""
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def _coerce(value: Any, hint: Any, source: str) -> Any:
    """`value` as type `hint`: checked, and converted only where that loses nothing (int or numeric
    string to float, list to tuple). Raises _Mismatch, with a reason where the type alone is unclear."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if hint is type(None) or hint is None:
        if value is None:
            return None
        raise _Mismatch()
    if origin in (Union, types.UnionType):
        reasons = []
        for member in args:  # the first member that takes the value, so `float | str` reads '1e-4' as a float
            try:
                return _coerce(value, member, source)
            except _Mismatch as e:
                reasons.append(str(e))
        raise _Mismatch(next((r for r in reasons if r), ""))
    if origin is Literal:
        if any(type(value) is type(a) and value == a for a in args):
            return value
        raise _Mismatch()
    if origin in (list, tuple, set, frozenset):
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise _Mismatch()
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _Mismatch(f"{len(args)} items needed")
            return tuple(_coerce(v, a, source) for v, a in zip(value, args))
        items = [_coerce(v, args[0], source) for v in value] if args else list(value)
        return origin(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch()
        if not args:
            return dict(value)
        return {_coerce(k, args[0], source): _coerce(v, args[1], source) for k, v in value.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, dict):
            return from_dict(hint, value, source)
        raise _Mismatch()
    if hint is float:
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise _Mismatch("not a number") from None
            if not math.isfinite(number):
                raise _Mismatch("not a finite number")
            return number
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch()
    if hint is int and isinstance(value, bool):
        raise _Mismatch()
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise _Mismatch()
    return value  # a typing form a config has no use for (Callable, TypeVar...): not checked


def _range_error(metadata: typing.Mapping[str, Any], value: Any) -> str | None:
    """What is wrong with `value` under a field's range metadata, or None."""
    if value is None:
        return None
    if "choices" in metadata and value not in metadata["choices"]:
        return "must be one of " + ", ".join(repr(c) for c in metadata["choices"])
    for key, sign, holds in (("ge", ">=", operator.ge), ("gt", ">", operator.gt), ("le", "<=", operator.le),
                             ("lt", "<", operator.lt)):
        if key in metadata and not holds(value, metadata[key]):
            return f"must be {sign} {metadata[key]}"
    return None


def check_value(cls: type, name: str, value: Any, source: str = "<dict>") -> Any:
    """`value` for field `name` of dataclass `cls`, type-checked and range-checked (see the module
    docstring); ConfigError names `source`, the class, the key and what was expected."""
    hint = _hints(cls)[name]
    where = f"{source}: {cls.__name__}.{name}"
    try:
        value = _coerce(value, hint, f"{source} {name}")
    except _Mismatch as e:
        reason = f" ({e})" if str(e) else ""
        raise ConfigError(f"{where} must be {type_name(hint)}, got {type(value).__name__} {value!r}{reason}") from None
    problem = _range_error(next(f for f in dataclasses.fields(cls) if f.name == name).metadata, value)
    if problem:
        raise ConfigError(f"{where} {problem}, got {value!r}")
    return value


def from_dict(cls: type[T], values: dict[str, Any] | None, source: str = "<dict>") -> T:
    """Build dataclass `cls` from `values`, every key and value checked (ConfigError names `source`)."""
    values = values or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping for {cls.__name__}, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted((k for k in values if k not in fields), key=str)
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r} for {cls.__name__} "
                          f"(known: {', '.join(sorted(fields))})")
    missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{source}: missing key {missing[0]!r} for {cls.__name__}")
    checked = {k: check_value(cls, k, v, source) for k, v in values.items()}
    try:
        return cls(**checked)
    except ConfigError:
        raise
    except ValueError as e:  # the class's own cross-field checks (__post_init__)
        raise ConfigError(f"{source}: {cls.__name__}: {e}") from e


def load_section(path: str | Path, section: str, cls: type[T], missing_ok: bool = False) -> T | None:
    """Return `cls` built from one top-level section of a YAML file.

    An absent section gives the defaults, or None with `missing_ok` (caller keeps its own).
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    if missing_ok and section not in data:
        return None
    return from_dict(cls, data.get(section), f"{path} [{section}]")


def override(config: T, assignments: list[str] | None, source: str = "--set") -> T:
    """A copy of dataclass `config` with `key=value` assignments applied (values parsed as YAML).

    Lets one base config serve a family of runs (ablations, sweeps) without a YAML file per run;
    the result is validated like a loaded file, so a misspelt key fails instead of being ignored.
    """
    copied = dataclasses.asdict(config)  # a deep copy: the original's lists stay untouched
    values = {f.name: copied[f.name] for f in dataclasses.fields(config) if f.init}
    for item in assignments or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source}: expected key=value, got {item!r}")
        try:
            values[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"{source}: {key.strip()}: not a valid YAML value: {raw!r}") from e
    return from_dict(type(config), values, source)
