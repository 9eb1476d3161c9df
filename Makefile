.PHONY: setup run test lint bench
SHELL := /bin/bash

setup:
	@bash scripts/setup.sh

## The main job: a spoken conversation with the default agent on the embedded offline stack.
run: setup
	.venv/bin/parley simulate --out out/demo

## Everything CI checks: lint, types, and the whole test suite (real models included).
test: setup
	.venv/bin/ruff check parley tests bench
	.venv/bin/ruff format --check parley tests bench
	.venv/bin/mypy parley
	PARLEY_STRICT_SKIPS=1 .venv/bin/python -m pytest -q

bench: setup
	.venv/bin/parley bench latency
