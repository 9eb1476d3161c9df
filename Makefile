.PHONY: setup run test lint bench lock
SHELL := /bin/bash

setup:
	@bash scripts/setup.sh

## The main job: the voice server on the embedded offline stack (it prints the voice page's URL).
run: setup
	.venv/bin/parley serve

## Everything CI checks: lint, types, and the whole test suite (real models included).
test: setup
	.venv/bin/ruff check parley tests
	.venv/bin/ruff format --check parley tests
	.venv/bin/mypy parley
	PARLEY_STRICT_SKIPS=1 .venv/bin/python -m pytest -q -n 2

bench: setup
	.venv/bin/parley bench latency

## Re-resolve the dependencies and rewrite requirements*.lock (a deliberate step; commit the result).
lock:
	@test -x .venv/bin/uv || $(MAKE) setup
	bash scripts/lock.sh
