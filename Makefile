# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-python test-js vectors template bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,demo]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m detection demo

test: test-python test-js

test-python: $(STAMP)
	$(PY) -m pytest

test-js:
	node --test tests/js/

vectors: $(STAMP)
	$(PY) -m tests.vectors.generate

template: $(STAMP)
	$(PY) -m edge.template_inline
	$(PY) -m detection.template_schema

bench: $(STAMP)
	node bench/edge_verify.mjs

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
