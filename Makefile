# Two commands: `make demo` (train and sample on the chorales that ship with music21)
# and `make test`. Both create .venv and install reprise into it on first use, with
# exactly the versions pinned in constraints.txt (pyproject.toml declares ranges).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
BIN := $(VENV)/bin

.PHONY: demo test lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt --no-deps tinysoundfont  # docs/audio.md
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/reprise demo

# ruff (lint, then format), the import-layers contract (pyproject.toml, docs/architecture.md), then the tests
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) reprise-demo
