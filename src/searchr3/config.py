"""Load config dataclasses from YAML files, rejecting unknown keys by file and name."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def from_dict(cls: type[T], values: dict[str, Any] | None, source: str = "<dict>") -> T:
    """Build dataclass `cls` from `values`; an unknown key raises ValueError naming `source`."""
    values = values or {}
    if not isinstance(values, dict):
        raise ValueError(f"{source}: expected a mapping for {cls.__name__}, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{source}: unknown key {unknown[0]!r} for {cls.__name__} (known: {', '.join(sorted(known))})")
    return cls(**values)


def load_section(path: str | Path, section: str, cls: type[T], missing_ok: bool = False) -> T | None:
    """Return `cls` built from one top-level section of a YAML file.

    An absent section gives the defaults, or None with `missing_ok` (caller keeps its own).
    """
    path = Path(path)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a mapping of sections")
    if missing_ok and section not in data:
        return None
    return from_dict(cls, data.get(section), f"{path} [{section}]")


def override(config: T, assignments: list[str] | None, source: str = "--set") -> T:
    """A copy of dataclass `config` with `key=value` assignments applied (values parsed as YAML).

    Lets one base config serve a family of runs (ablations, sweeps) without a YAML file per run;
    the result is validated like a loaded file, so a misspelt key fails instead of being ignored.
    """
    values = dataclasses.asdict(config)
    for item in assignments or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{source}: expected key=value, got {item!r}")
        values[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return from_dict(type(config), values, source)
