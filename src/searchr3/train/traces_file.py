"""The base model's traces of a run's reasoning-form queries, kept in the run folder (token ids, gzip JSON).

A run that spans sessions commits its folder after each chunk; with the traces in it, the next
chunk does not regenerate them (about 10 minutes for 1,400 traces on a 2-core CPU).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

TRACES = "traces.json.gz"


def write_traces(path: Path, traces: dict[str, list[int]], budget: int) -> None:
    """Write {query id: trace token ids} generated with a budget of `budget` tokens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        json.dump({"reasoning_tokens": budget, "traces": traces}, f)


def read_traces(path: Path, budget: int) -> dict[str, list[int]]:
    """The traces written at `path` with the same budget, else none."""
    if not path.is_file():
        return {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        saved = json.load(f)
    return saved["traces"] if saved.get("reasoning_tokens") == budget else {}
