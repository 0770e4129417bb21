# sealbridge: `make demo` and `make test` each set everything up from scratch.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ANVIL := node_modules/.bin/anvil
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: demo test lint typecheck layers unit e2e bench setup clean

setup: $(VENV)/.stamp-deps $(ANVIL)

$(VENV)/.stamp-deps: pyproject.toml constraints.txt $(wildcard src/sealbridge/contracts/wasm/guest/*.py) src/sealbridge/contracts/wasm/vm.wit src/sealbridge/contracts/sdk.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PY) -m sealbridge.contracts.wasm.build
	touch $@

$(ANVIL): package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(VENV)/bin/sealbridge demo

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: setup
	$(VENV)/bin/mypy --strict src/

layers: setup
	$(PY) -m sealbridge.tools.layers

test: lint typecheck layers
	$(VENV)/bin/pytest -q -p no:cacheprovider tests

bench: setup
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) node_modules .sealbridge
