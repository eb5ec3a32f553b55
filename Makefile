# Every target works from a fresh clone: the first one that needs the virtualenv creates it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: install generate check lint typecheck fresh test demo demo-low-level demo-approval clean

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

## A non-blocking approval: one process asks and exits, a reviewer approves, another resumes.
demo-approval: $(STAMP)
	$(PY) samples/demo_approval.py

## The same flow on the generated low-level API (tracengent_api).
demo-low-level: $(STAMP)
	$(PY) samples/low_level_custom_flow.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache

## Benchmarks (bench/). The targets are ratios in one run, so `bench` measures the published 0.1.0
## too (side virtualenv .bench-venv-0.1.0/) and records the table in bench/RESULTS.md;
## `bench-compare` is the same run without touching RESULTS.md; `bench-quick` is CI's smoke run.
.PHONY: bench bench-quick bench-compare

bench: $(STAMP)
	$(PY) -m bench --compare --json bench/results/latest.json --markdown bench/RESULTS.md

bench-quick: $(STAMP)
	$(PY) -m bench --quick --json bench/results/quick.json

bench-compare: $(STAMP)
	$(PY) -m bench --compare --json bench/results/compare.json

## The soak (platform killed and restarted under load) for two minutes instead of CI's seconds.
.PHONY: soak
soak: $(STAMP)
	TRACENGENT_SOAK_SECONDS=120 $(PY) -m pytest -q -m soak tests/test_soak.py
