#!/usr/bin/env bash
# Lint what the cluster would receive with checkov (too heavy for the test suite, and it pins older
# boto3/networkx/packaging than the project: it gets a virtual environment of its own under .local/).
# tests/deploy/ runs the schema validation and our focused policy checks on every `make test`.
#   bash deploy/check.sh            # every example values file and the Dockerfiles
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.local/checkov
CHECKOV_VERSION=3.3.30
if [ ! -x "$VENV/bin/checkov" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q "checkov==$CHECKOV_VERSION"
fi
OUT=.local/rendered
rm -rf "$OUT"
render() { .venv/bin/python deploy/render.py "$@"; }
render -o "$OUT/defaults"
render deploy/values/dev.yaml -o "$OUT/dev"
render deploy/values/reference.yaml -o "$OUT/reference"
render deploy/values/reference.yaml deploy/values/tls.yaml -o "$OUT/reference-tls"
mkdir -p "$OUT/docker" && cp docker/Dockerfile.* "$OUT/docker/"
"$VENV/bin/checkov" --config-file deploy/checkov.yaml -d "$OUT"
