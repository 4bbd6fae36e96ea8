# The two commands a fresh machine needs: `make demo` and `make test`.
# Every target creates .venv when it is missing and installs the project into it: `make demo`
# the runtime only (the package and its 7 dependencies), the other targets the test extras too.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed-test
# the dependency versions CI last passed with (a range in pyproject.toml, pinned here)
CONSTRAINTS := .ci/constraints.txt

.PHONY: demo test test-fast bench lint clean install lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# the test extras include the runtime: installing them satisfies `make demo` too
$(RUNTIME_STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e .
	touch $(RUNTIME_STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[test]'
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
	# byte-compile first, as pip does when it installs a wheel: start-up figures must not include
	# compiling our modules (PYTHONDONTWRITEBYTECODE=1 would otherwise make every start compile them)
	$(BIN)/python -m compileall -q plugins
	$(BIN)/python -m pytest benchmarks -q -p no:xdist --benchmark-only --benchmark-columns=min,median,ops
	$(BIN)/python benchmarks/run_pipe.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check plugins tests benchmarks
	$(BIN)/ruff format --check plugins tests benchmarks

# re-pin the dependencies to the newest releases pyproject.toml allows; run make test after it
lock: | $(BIN)/python
	rm -rf $(VENV)/lock && $(PYTHON) -m venv $(VENV)/lock
	$(VENV)/lock/bin/python -m pip install --quiet '.[test]'
	{ sed -n '1,/^$$/p' $(CONSTRAINTS); $(VENV)/lock/bin/python -m pip freeze --exclude harmony-pipes; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS) && rm -rf $(VENV)/lock

clean:
	rm -rf $(VENV) demo-out .pytest_cache .ruff_cache
