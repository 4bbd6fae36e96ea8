# The two commands a fresh machine needs: `make demo` and `make test`.
# Every target creates .venv when it is missing and installs the project into it: `make demo`
# the runtime only (the package and its 7 dependencies), the other targets the test extras too.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed-test

.PHONY: demo test test-fast bench lint clean install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# the test extras include the runtime: installing them satisfies `make demo` too
$(RUNTIME_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUNTIME_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP) $(RUNTIME_STAMP)

install: $(STAMP)

demo: $(RUNTIME_STAMP)
	$(BIN)/python -m harmony_pipes.demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

# the unit tests alone (pure cores, the contract, parsers): under a minute
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q -n 2

# make bench BENCH_ARGS='--scale 0.05 alerts': a partial / reduced run (benchmarks/run_pipe.py --help)
bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks -q -p no:xdist --benchmark-only --benchmark-columns=min,median,ops
	$(BIN)/python benchmarks/run_pipe.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check plugins tests benchmarks
	$(BIN)/ruff format --check plugins tests benchmarks

clean:
	rm -rf $(VENV) demo-out .pytest_cache .ruff_cache
