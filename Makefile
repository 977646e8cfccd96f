# The two commands of the README: `make demo` and `make test`. Both create .venv on first use, installing exactly
# what uv.lock pins (`uv sync --locked`: it refuses a lock that pyproject.toml no longer matches; `make lock`
# re-resolves it). uv itself, at the version below, lives in .venv-uv, installed by pip from the package registry.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
UV_VERSION := 0.13.9
UV_VENV := .venv-uv
UV := $(UV_VENV)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# uv must use the machine's Python, never download one
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

# The stack's Python functions (template.yaml, BuildMethod makefile): sam build runs `make build-<LogicalId>` here
# with ARTIFACTS_DIR set. Each gets the first-party modules its handler imports (tools/lambda_package.py), nothing
# else of the repository; their third-party packages are layers (DependenciesLayer below, and the AWS SDK for
# pandas layer for the workflow).
LAMBDA_FUNCTIONS := TokenIssuerFunction KeyRotationFunction LogTransformFunction RevocationApiFunction \
	PrepareRunFunction ScoreFunction RecordVerdictsFunction PublishRevocationsFunction ReportRunFunction \
	StreamConsumerFunction
LAMBDA_BUILDS := $(addprefix build-,$(LAMBDA_FUNCTIONS))
# The layer is built for the functions' runtime and architecture whatever the build machine is (no Docker, no
# Python 3.12 needed): manylinux wheels only. Tests build it for this machine's architecture to run it.
LAMBDA_PYTHON ?= 3.12
LAMBDA_PLATFORM ?= aarch64-manylinux2014
# The runtime's own; a copy in the layer would shadow them (aws-xray-sdk asks for botocore)
RUNTIME_PACKAGES := boto3 botocore s3transfer urllib3

.PHONY: demo test test-python test-js lock uv vectors template bench deploy clean build-DependenciesLayer \
	$(LAMBDA_BUILDS)

$(UV):
	@echo "first run: installing uv $(UV_VERSION), the installer, into $(UV_VENV) ..."
	$(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

uv: $(UV)

$(STAMP): pyproject.toml uv.lock | $(UV)
	@echo "installing the locked dependencies into .venv (uv.lock; about a minute the first time) ..."
	$(UV) sync --locked --all-extras
	@touch $(STAMP)
	@echo "dependencies installed"

demo: $(STAMP)
	$(PY) -m detection demo

# Every suite runs whatever the others did; the target fails if any failed.
test: $(STAMP)
	@python_status=0; js_status=0; \
	$(PY) -m pytest || python_status=$$?; \
	node --test tests/js/ || js_status=$$?; \
	echo "make test: pytest exit $$python_status, node --test exit $$js_status"; \
	test $$python_status -eq 0 -a $$js_status -eq 0

test-python: $(STAMP)
	$(PY) -m pytest

test-js:
	node --test tests/js/

# Re-resolve every dependency to the newest release pyproject.toml allows and rewrite uv.lock.
lock: $(UV)
	$(UV) lock --upgrade

vectors: $(STAMP)
	$(PY) -m tests.vectors.generate

template: $(STAMP)
	$(PY) -m tools.template_inline
	$(PY) -m tools.template_schema
	$(PY) -m tools.template_parameters

bench: $(STAMP)
	node bench/edge_verify.mjs

deploy: $(STAMP)
	bash scripts/sam.sh build
	bash scripts/sam.sh deploy --guided

clean:
	rm -rf $(VENV) $(UV_VENV) out .pytest_cache .hypothesis

$(LAMBDA_BUILDS): build-%:
	test -n "$(ARTIFACTS_DIR)"
	$(PYTHON) -m tools.lambda_package $* "$(ARTIFACTS_DIR)"

# The functions' shared layer: the lambda-layer group of pyproject.toml at the versions of uv.lock, with their hashes,
# installed where Lambda looks for a layer's packages (python/).
build-DependenciesLayer: | $(UV)
	test -n "$(ARTIFACTS_DIR)"
	$(UV) export --frozen --quiet --only-group lambda-layer --no-emit-project $(addprefix --no-emit-package ,$(RUNTIME_PACKAGES)) \
		--format requirements.txt --output-file "$(ARTIFACTS_DIR)/.layer-requirements.txt"
	$(UV) pip install --no-config --quiet --no-deps --require-hashes --requirement "$(ARTIFACTS_DIR)/.layer-requirements.txt" \
		--target "$(ARTIFACTS_DIR)/python" --python-platform $(LAMBDA_PLATFORM) \
		--python-version $(LAMBDA_PYTHON) --only-binary :all:
	rm -rf "$(ARTIFACTS_DIR)/.layer-requirements.txt" "$(ARTIFACTS_DIR)/python/bin"
