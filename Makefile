# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The stack's Python functions (template.yaml, BuildMethod makefile): sam build runs `make build-<LogicalId>` here
# with ARTIFACTS_DIR set. Their code is the three packages, nothing else of the repository; their third-party
# packages are layers (layers/dependencies/, and the AWS SDK for pandas layer for the workflow).
LAMBDA_FUNCTIONS := TokenIssuerFunction KeyRotationFunction LogTransformFunction RevocationApiFunction \
	PrepareRunFunction ScoreFunction RecordVerdictsFunction PublishRevocationsFunction ReportRunFunction
LAMBDA_BUILDS := $(addprefix build-,$(LAMBDA_FUNCTIONS))
LAMBDA_PACKAGES := edge detection rotation

.PHONY: demo test test-python test-js vectors template bench clean $(LAMBDA_BUILDS)

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

$(LAMBDA_BUILDS):
	test -n "$(ARTIFACTS_DIR)"
	mkdir -p "$(ARTIFACTS_DIR)"
	cp -R $(LAMBDA_PACKAGES) "$(ARTIFACTS_DIR)/"
	find "$(ARTIFACTS_DIR)" -name __pycache__ -type d -prune -exec rm -rf {} +
