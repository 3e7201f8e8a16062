#!/usr/bin/env bash
# Runs the whole test suite: Rust unit and integration tests (real server on
# 127.0.0.1), then the Python suite that drives the server with tritonclient
# and compares answers with Python onnxruntime. Sets up everything it needs:
# the ONNX Runtime library (.ort/), kubectl for rendering the Kubernetes
# manifests (.tools/, from Debian's kubernetes-client package), Azurite, the
# Azure Storage emulator (.tools/azurite, from npm) and a virtualenv for the
# Python clients (.venv-test/), all git-ignored and reused on later runs.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup-ort.sh
./scripts/setup-kubectl.sh
./scripts/setup-azurite.sh

venv=.venv-test
stamp="$venv/.requirements"
if ! cmp -s tests/python/requirements.txt "$stamp" 2>/dev/null; then
  echo "test.sh: installing Python test clients into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
  cp tests/python/requirements.txt "$stamp"
fi

# With the pure-Rust backend (`--features tract`; ~70 s more on a clean debug
# build) so its tests run too; the Python suite uses the same binary.
echo "test.sh: cargo test (with the tract backend)" >&2
cargo test --workspace --features podium/tract "$@"

echo "test.sh: Python client tests (tritonclient)" >&2
PODIUM_BIN="$(cargo metadata --format-version 1 --no-deps | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/podium" \
  "$venv/bin/python" -m pytest tests/python -q -p no:cacheprovider
