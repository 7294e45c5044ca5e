"""Copy a `searchr3 eval` results file without its runs and traces (metrics and per-query scores stay).

Usage: python experiments/common/compact_results.py FULL.json COMPACT.json
"""

import json
import sys
from collections import Counter
from pathlib import Path


def _top_share(trace: str) -> float:
    words = trace.split()
    return Counter(words).most_common(1)[0][1] / len(words) if words else 0.0


record = json.loads(Path(sys.argv[1]).read_text())
for mode in record["modes"].values():
    mode.pop("run", None)
    traces = mode.pop("traces", None) or {}
    if traces:  # keep how often the token was forced and how long traces were, drop the texts
        kept = {q: t for q, t in traces.items() if isinstance(t, dict)}
        if kept:
            # per query, so reports can split scores by whether the token came on its own
            mode["trace_forced"] = {q: bool(t.get("forced")) for q, t in kept.items()}
            mode["trace_words"] = {q: len(t.get("trace", "").split()) for q, t in kept.items()}
            # share of a trace's words taken by its most frequent word: high for looping filler
            mode["trace_top_word_share"] = {q: _top_share(t.get("trace", "")) for q, t in kept.items()}
            mode["forced_share"] = sum(mode["trace_forced"].values()) / len(kept)
            mode["trace_words_mean"] = sum(mode["trace_words"].values()) / len(kept)
out = Path(sys.argv[2])
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(record) + "\n")
