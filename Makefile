# Two commands: `make demo` (train and sample on the chorales that ship with music21)
# and `make test`. Both create .venv and install reprise into it on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps tinysoundfont  # docs/audio.md
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/reprise demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest

clean:
	rm -rf $(VENV) reprise-demo
