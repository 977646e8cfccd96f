#!/usr/bin/env bash
# Runs SAM CLI on template.yaml without an AWS account: `scripts/sam.sh validate --lint`, `scripts/sam.sh build`.
#
# SAM CLI pins its own boto3/botocore, so it lives in its own virtual environment, .venv-sam at the repo root
# (created on first use: `pip install aws-sam-cli`, a few hundred MB; nothing else uses it). Dummy credentials,
# telemetry and update checks off. `validate` needs no network: every HTTP(S) request is pointed at a closed local
# port, so a step that tried to reach AWS would fail loudly instead of silently using the network. `build` reaches
# only the package registry (pip, for the dependencies layer) and builds in the source tree (samconfig.toml:
# build_in_source), so it does not copy the repository, virtual environments and all, once per function.
#
# Usage: scripts/sam.sh <validate|build> [sam arguments]
# Env:   PYTHON (interpreter for the venv, default python3), SAM_VENV (default <repo>/.venv-sam),
#        SAM_CLI_VERSION (pin, e.g. 1.140.0; default: latest).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SAM_VENV:-$ROOT/.venv-sam}"
PYTHON="${PYTHON:-python3}"
SAM="$VENV/bin/sam"
COMMAND="${1:?usage: scripts/sam.sh <validate|build> [sam arguments]}"
shift

if [ ! -x "$SAM" ]; then
  echo "sam.sh: creating $VENV (pip install aws-sam-cli${SAM_CLI_VERSION:+==$SAM_CLI_VERSION})" >&2
  start=$(date +%s)
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "aws-sam-cli${SAM_CLI_VERSION:+==$SAM_CLI_VERSION}"
  echo "sam.sh: installed $("$SAM" --version) in $(( $(date +%s) - start )) s" >&2
fi

offline=()
case "$COMMAND" in
  validate)
    offline=(HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 http_proxy=http://127.0.0.1:9
             https_proxy=http://127.0.0.1:9 NO_PROXY= no_proxy=) ;;
  build) ;;
  *) echo "sam.sh: only validate and build run offline; deploy with your own sam" >&2; exit 2 ;;
esac

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
  "${offline[@]}" \
  "$SAM" "$COMMAND" --template "$ROOT/template.yaml" --config-file "$ROOT/samconfig.toml" --region us-east-1 "$@"
