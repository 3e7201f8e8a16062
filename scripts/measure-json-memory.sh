#!/usr/bin/env bash
# Peak memory of one large OIP JSON request (BENCHMARKS.md, "Memory of a
# large JSON request"): serves fraud v1 from a temporary registry, sends one
# small request (so start-up and first-call allocations are not counted),
# then one JSON request of about SIZE_MB megabytes (nested rows of 30 FP32
# features, 9 significant digits each), and reports how much the server's
# peak RSS (VmHWM in /proc/PID/status) grew, as a ratio to the body size.
#   scripts/measure-json-memory.sh [SIZE_MB]   (default 40; the default
#   body limit, --max-request-bytes, is 64 MiB)
# PODIUM_BIN picks the binary [default: a release build of this checkout].
# Linux only (/proc). A measurement, not a test: nothing fails on a ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb="${1:-40}"

./scripts/setup-ort.sh
if [ -z "${PODIUM_BIN:-}" ]; then
  cargo build --release --bin podium
  PODIUM_BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/podium"
fi
podium="$PODIUM_BIN"

work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$podium" --registry "$work/registry" models register fraud models/fraud/v1.onnx >/dev/null
"$podium" --registry "$work/registry" alias set fraud champion 1

python3 - "$work" "$size_mb" <<'PY'
import json, random, sys
work, size_mb = sys.argv[1], float(sys.argv[2])
rng = random.Random(0)
def body(rows):
    data = [[float(f"{rng.gauss(0, 1):.8e}") for _ in range(30)] for _ in range(rows)]
    return json.dumps({"inputs": [{"name": "input", "shape": [rows, 30], "datatype": "FP32", "data": data}]},
                      separators=(",", ":")).encode()
small = body(1)
row = len(body(100)) / 100
big = body(max(1, int(size_mb * 1e6 / row)))
open(f"{work}/small.json", "wb").write(small)
open(f"{work}/big.json", "wb").write(big)
PY

PODIUM_LOG=warn "$podium" --registry "$work/registry" serve --listen 127.0.0.1:0 \
  --grpc-listen 127.0.0.1:0 >"$work/stdout" &
server=$!
url=""
for _ in $(seq 600); do
  url="$(sed -n 's/^podium: listening on //p' "$work/stdout" | head -1)"
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { echo "measure-json-memory: podium exited before listening" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "measure-json-memory: podium did not start listening" >&2; exit 1; }

hwm() { awk '/^VmHWM:/ {print $2 * 1024}' "/proc/$server/status"; }
post() {
  curl -sS -o "$work/answer" -w '%{http_code}' -H 'content-type: application/json' \
    --data-binary "@$1" "$url/v2/models/fraud/infer"
}
code="$(post "$work/small.json")"
[ "$code" = 200 ] || { echo "measure-json-memory: warm-up request answered $code: $(cat "$work/answer")" >&2; exit 1; }
before="$(hwm)"
code="$(post "$work/big.json")"
[ "$code" = 200 ] || { echo "measure-json-memory: large request answered $code: $(head -c 300 "$work/answer")" >&2; exit 1; }
after="$(hwm)"
body="$(stat -c %s "$work/big.json")"
python3 - "$body" "$before" "$after" "$(stat -c %s "$work/answer")" <<'PY'
import sys
body, before, after, answer = map(int, sys.argv[1:])
mb = lambda n: f"{n / 1e6:.1f} MB"
print(f"body {mb(body)}, answer {mb(answer)}; peak RSS {mb(before)} -> {mb(after)}: "
      f"grew {mb(after - before)} = {(after - before) / body:.2f}x the body")
PY
