# The two front-door commands (see README):  make demo   and   make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_DB ?= sqlite:///data/demo.db

.PHONY: demo test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Installs exactly the pinned, hash-checked dependencies, then growthflow itself (editable).
$(VENV)/.installed-%: requirements/%.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --require-hashes -r requirements/$*.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

demo: $(VENV)/.installed-main
	$(BIN)/growthflow attribution demo-data --db $(DEMO_DB) --force
	$(BIN)/growthflow attribution run --db $(DEMO_DB) --start 2023-09-01 --end 2023-09-07 \
		--csv out/channel_reporting.csv

test: $(VENV)/.installed-dev
	$(BIN)/pytest

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_attribution.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) data out .pytest_cache
