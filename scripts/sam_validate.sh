#!/usr/bin/env bash
# `sam validate --lint` for template.yaml, offline.
#
# SAM CLI pins its own boto3/botocore, so it lives in its own virtual environment, .venv-sam at the repo root
# (created on first use: `pip install aws-sam-cli`, a few hundred MB; nothing else uses it). The validation itself
# needs no AWS account and no network: dummy credentials, telemetry off, and every HTTP(S) request pointed at a
# closed local port, so a step that tried to reach AWS would fail loudly instead of silently using the network.
#
# Usage: scripts/sam_validate.sh [extra sam validate arguments]
# Env:   PYTHON (interpreter for the venv, default python3), SAM_VENV (default <repo>/.venv-sam),
#        SAM_CLI_VERSION (pin, e.g. 1.140.0; default: latest).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SAM_VENV:-$ROOT/.venv-sam}"
PYTHON="${PYTHON:-python3}"
SAM="$VENV/bin/sam"

if [ ! -x "$SAM" ]; then
  echo "sam_validate: creating $VENV (pip install aws-sam-cli${SAM_CLI_VERSION:+==$SAM_CLI_VERSION})" >&2
  start=$(date +%s)
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "aws-sam-cli${SAM_CLI_VERSION:+==$SAM_CLI_VERSION}"
  echo "sam_validate: installed $("$SAM" --version) in $(( $(date +%s) - start )) s" >&2
fi

cd "$ROOT"
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
  HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 \
  http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 \
  NO_PROXY= no_proxy= \
  "$SAM" validate --lint --template "$ROOT/template.yaml" --region us-east-1 "$@"
