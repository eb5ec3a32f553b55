# Every target works from a fresh clone: the first one that needs the virtualenv creates it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: install generate check lint typecheck fresh test demo demo-low-level clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## Regenerate generated/ from schema/ and refresh the snapshots of what it generates.
generate: $(STAMP)
	$(PY) -m codegen
	$(PY) -m pytest -q -p no:cacheprovider tests/test_generated_files.py tests/test_request_bytes.py --snapshot-update

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

## Fails when generated/ is not exactly what schema/ and codegen/ produce.
fresh: $(STAMP)
	$(PY) -m codegen --check

test: $(STAMP)
	$(PY) -m pytest -q

check: lint typecheck fresh test

## Install and run the quickstart scenario against the embedded local platform.
demo: $(STAMP)
	$(PY) samples/demo_agent.py

## The same flow on the generated low-level API (tracengent_api).
demo-low-level: $(STAMP)
	$(PY) samples/low_level_custom_flow.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache
