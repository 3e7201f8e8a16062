#!/usr/bin/env bash
# Serves the bundled demo models on http://127.0.0.1:8000 (Ctrl-C stops it):
#   fraud@champion (v1, logistic regression), fraud@challenger (v2, gradient
#   boosting), mlp@champion (v1), and the endpoint fraud-ab splitting fraud
#   90/10 between them (models/demo-endpoints.toml), writing every call to
#   the inference table in ./tables (PODIUM_TABLE_DIR=off: no table). Sets up ONNX Runtime and builds Podium in
#   release mode first; creates the registry in ./registry on the first run
#   and reuses it afterwards. Extra arguments go to `podium serve`.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup-ort.sh
cargo build --release --bin podium
podium="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/podium"

export PODIUM_REGISTRY="${PODIUM_REGISTRY:-registry}"
if [ ! -d "$PODIUM_REGISTRY/fraud" ]; then
  echo "demo.sh: creating the demo registry in $PODIUM_REGISTRY" >&2
  "$podium" models register fraud models/fraud/v1.onnx >/dev/null
  "$podium" models register fraud models/fraud/v2.onnx >/dev/null
  "$podium" alias set fraud champion 1
  "$podium" alias set fraud challenger 2
  "$podium" models register mlp models/mlp/v1.onnx >/dev/null
  "$podium" alias set mlp champion 1
fi
"$podium" models list
# PODIUM_TABLE_DIR=off serves without an inference table.
table=(--table-dir "${PODIUM_TABLE_DIR:-tables}" --table-roll-secs 10)
if [ "${PODIUM_TABLE_DIR:-}" = off ]; then
  table=()
fi
exec "$podium" serve --config "${PODIUM_CONFIG:-models/demo-endpoints.toml}" \
  "${table[@]}" "$@"
