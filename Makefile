# The two commands of the README work on a fresh clone: each sets up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo serve test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## The main job: service + local inbox + a Prefect flow asking for your approval.
demo: $(STAMP)
	$(BIN)/peopletasks demo

## The People Task service on :8000.
serve: $(STAMP)
	$(BIN)/peopletasks serve

## Everything CI checks: lint, types, then the tests on SQLite and PostgreSQL.
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/service.py

clean:
	rm -rf $(VENV) .peopletasks .pytest_cache .mypy_cache .ruff_cache
