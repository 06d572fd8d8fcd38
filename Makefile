# make demo  : set up .venv (idempotent) and run the main job on the built-in model organism
# make test  : set up .venv with test extras and run the test suite
PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
PIP      = $(BIN)/python -m pip install -c constraints.txt
STAMP    = $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
TSTAMP   = $(VENV)/.installed-test-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: setup setup-test demo test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -q --upgrade pip
	$(PIP) -q torch==2.13.0
	$(PIP) -q -e .
	touch $@

$(TSTAMP): $(STAMP)
	$(PIP) -q -e '.[test,ray]'
	touch $@

setup: $(STAMP)
setup-test: $(TSTAMP)

demo: setup
	$(BIN)/liedetect demo --out liedetect-demo

test: setup-test
	$(BIN)/python -m pytest -q

bench: setup-test
	$(BIN)/python benchmarks/bench_capture.py

clean:
	rm -rf $(VENV) liedetect-demo
