#!/usr/bin/env bash
# Runs SAM CLI on template.yaml: `scripts/sam.sh validate --lint` and `scripts/sam.sh build` without an AWS account,
# `scripts/sam.sh deploy [--guided]` (what `make deploy` runs after build) with yours.
#
# SAM CLI pins its own boto3/botocore, so it lives in its own virtual environment, .venv-sam at the repo root
# (created on first use: `pip install aws-sam-cli`, a few hundred MB; nothing else uses it). Telemetry and update
# checks off for every command.
# validate, build: dummy credentials, no profile or AWS config file, region us-east-1. `validate` needs no network:
# every HTTP(S) request is pointed at a closed local port, so a step that tried to reach AWS would fail loudly instead
# of silently using the network. `build` reaches only the package registry (uv, for the dependencies layer's wheels) and
# builds in the source tree (samconfig.toml: build_in_source), so it does not copy the repository, virtual
# environments and all, once per function.
# deploy: your own AWS credentials, profile, config and proxies, untouched; the region is samconfig.toml's
# (us-east-1) unless you pass --region or answer otherwise in --guided. It deploys what `build` wrote to
# .aws-sam/build (no --template, so SAM picks the built template) and saves --guided's answers to samconfig.toml.
#
# Usage: scripts/sam.sh <validate|build|deploy> [sam arguments]
# Env:   PYTHON (interpreter for the venv, default python3), SAM_VENV (default <repo>/.venv-sam),
#        SAM_CLI_VERSION (default 1.170.0, the release the tests' sam build and sam validate ran with).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SAM_VENV:-$ROOT/.venv-sam}"
PYTHON="${PYTHON:-python3}"
SAM_CLI_VERSION="${SAM_CLI_VERSION:-1.170.0}"
SAM="$VENV/bin/sam"
USAGE="usage: scripts/sam.sh <validate|build|deploy> [sam arguments]"
COMMAND="${1:?$USAGE}"
shift
case "$COMMAND" in
  validate|build|deploy) ;;
  *) echo "sam.sh: unknown command '$COMMAND'; $USAGE" >&2; exit 2 ;;
esac

if [ ! -x "$SAM" ]; then
  echo "sam.sh: creating $VENV (pip install aws-sam-cli==$SAM_CLI_VERSION)" >&2
  start=$(date +%s)
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "aws-sam-cli==$SAM_CLI_VERSION"
  echo "sam.sh: installed $("$SAM" --version) in $(( $(date +%s) - start )) s" >&2
fi

cd "$ROOT"

if [ "$COMMAND" = deploy ]; then
  # Without a build SAM would fall back to template.yaml and upload the source tree as every function's code
  if [ ! -f .aws-sam/build/template.yaml ] && [[ " $* " != *" --template"* && " $* " != *" -t "* ]]; then
    echo "sam.sh: no .aws-sam/build/template.yaml: run scripts/sam.sh build first (make deploy does both)" >&2
    exit 2
  fi
  exec env SAM_CLI_TELEMETRY=0 SAM_CLI_DISABLE_UPDATE_CHECK=1 \
    "$SAM" deploy --config-file "$ROOT/samconfig.toml" "$@"
fi

offline=()
case "$COMMAND" in
  validate)
    offline=(HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 http_proxy=http://127.0.0.1:9
             https_proxy=http://127.0.0.1:9 NO_PROXY= no_proxy=) ;;
  build) ;;
esac

env -u AWS_PROFILE -u AWS_SESSION_TOKEN \
  AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE \
  AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY \
  AWS_DEFAULT_REGION=us-east-1 \
  AWS_REGION=us-east-1 \
  AWS_EC2_METADATA_DISABLED=true \
  AWS_CONFIG_FILE=/dev/null \
  AWS_SHARED_CREDENTIALS_FILE=/dev/null \
  SAM_CLI_TELEMETRY=0 \
  SAM_CLI_DISABLE_UPDATE_CHECK=1 \
  "${offline[@]}" \
  "$SAM" "$COMMAND" --template "$ROOT/template.yaml" --config-file "$ROOT/samconfig.toml" --region us-east-1 "$@"
