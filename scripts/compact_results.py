"""Copy a `searchr3 eval` results file without its runs and traces (metrics and per-query scores stay).

Usage: python scripts/compact_results.py FULL.json COMPACT.json
"""

import json
import sys
from pathlib import Path

record = json.loads(Path(sys.argv[1]).read_text())
for mode in record["modes"].values():
    mode.pop("run", None)
    traces = mode.pop("traces", None) or {}
    if traces:  # keep how often the token was forced and how long traces were, drop the texts
        kept = {q: t for q, t in traces.items() if isinstance(t, dict)}
        if kept:
            mode["forced_share"] = sum(bool(t.get("forced")) for t in kept.values()) / len(kept)
            mode["trace_words_mean"] = sum(len(t.get("trace", "").split()) for t in kept.values()) / len(kept)
            # per query, so reports can split scores by whether the token came on its own
            mode["trace_forced"] = {q: bool(t.get("forced")) for q, t in kept.items()}
            mode["trace_words"] = {q: len(t.get("trace", "").split()) for q, t in kept.items()}
out = Path(sys.argv[2])
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(record) + "\n")
