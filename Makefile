# make test: set up .venv if missing, install namedmesh with its test extra, run the suite.
# make demo: set up .venv if missing and run the demo on its embedded default.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.namedmesh-installed
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: test demo venv clean bench

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,demo]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(VENV)/bin/namedmesh demo

clean:
	rm -rf $(VENV) build *.egg-info

bench: $(STAMP)
	$(PY) benchmarks/bench.py $(BENCH_ARGS)
