# Set-up and the everyday commands. `make train` and `make test` each build the
# virtual environment first (once), so on a fresh machine either one is all it takes.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train lint test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job: fetch tiny-shakespeare, train the default character-level model, sample from it.
train: $(STAMP)
	$(BIN)/python data_scripts/tinyshakespeare.py
	$(BIN)/seq2seq textgen train --config shakespeare_char
	$(BIN)/seq2seq textgen generate --checkpoint runs/shakespeare_char --prime "ROMEO:" --seed 1

# Lint, format and type checks (configured in pyproject.toml); `make test` runs them first.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The suite in one worker process per CPU core (pytest-xdist); plain `pytest` runs it in one.
test: lint
	$(BIN)/python -m pytest -n auto

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
