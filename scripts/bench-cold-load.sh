#!/usr/bin/env bash
# The cost of a cold load (BENCHMARKS.md, "Loading on demand"): a registry of
# BENCH_MODELS copies of one model of BENCH_MODEL_MB MB (scripts/make-sized-model.py)
# served under --memory-limit BENCH_LIMIT, so that calling them round-robin
# makes every call after the first fill a load on demand (LRU: the next model
# is always the one evicted longest ago). Prints a Markdown table on stdout:
# the server's own cold-load times (load + warm-up, from its log) and what a
# client saw (the whole call), p50/p90/p99/max; progress on stderr.
#
#   PODIUM_BIN=target/release/podium scripts/bench-cold-load.sh
#
# Knobs: BENCH_MODELS (30), BENCH_MODEL_MB (20), BENCH_LIMIT (200M),
# BENCH_ROUNDS (3 round-robin passes), BENCH_THREADS (--inference-threads, 1;
# a version's estimate is about twice its file whatever the thread count, as
# the sessions share the weights, but each session is opened and warmed), BENCH_SERVER_CPUS
# (a taskset list; unpinned when unset). Needs python3 with numpy and onnx
# (.venv-test from scripts/test.sh has both) to write the model. The first load
# of a version also hashes its file (drift checks): the first pass shows it,
# later passes do not. 127.0.0.1 only, OS-assigned ports; the server is
# stopped at the end and everything lives in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${PODIUM_BIN:?set PODIUM_BIN to a podium binary (release: cargo build --release --bin podium)}"
models="${BENCH_MODELS:-30}"
size_mb="${BENCH_MODEL_MB:-20}"
limit="${BENCH_LIMIT:-200M}"
rounds="${BENCH_ROUNDS:-3}"
threads="${BENCH_THREADS:-1}"
python="${PYTHON:-.venv-test/bin/python}"
[ -x "$python" ] || python=python3

work="$(mktemp -d)"
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "writing a ${size_mb} MB model and registering ${models} copies" >&2
"$python" scripts/make-sized-model.py "$size_mb" "$work/model.onnx"
for i in $(seq -w 1 "$models"); do
    "$PODIUM_BIN" --registry "$work/registry" models register "m$i" "$work/model.onnx" >/dev/null
    "$PODIUM_BIN" --registry "$work/registry" alias set "m$i" champion 1 >/dev/null
done

pin=()
if [ -n "${BENCH_SERVER_CPUS:-}" ]; then pin=(taskset -c "$BENCH_SERVER_CPUS"); fi
PODIUM_LOG=info "${pin[@]}" "$PODIUM_BIN" --registry "$work/registry" serve \
    --listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 --inference-threads "$threads" \
    --memory-limit "$limit" >"$work/stdout" 2>"$work/log" &
server=$!
base=""
for _ in $(seq 600); do
    base="$(sed -n 's/^podium: listening on //p' "$work/stdout")"
    if [ -n "$base" ] && curl -fs "$base/v2/health/ready" >/dev/null; then break; fi
    sleep 0.1
done
[ -n "$base" ] || { echo "the server did not start; its log: $work/log" >&2; exit 1; }

body='{"inputs":[{"name":"idx","shape":[1],"datatype":"INT64","data":[3]}]}'
: >"$work/calls"
for round in $(seq "$rounds"); do
    echo "round $round of $rounds" >&2
    for i in $(seq -w 1 "$models"); do
        out="$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -H 'content-type: application/json' \
            -d "$body" "$base/v2/models/m$i/infer")"
        code="${out%% *}"
        [ "$code" = 200 ] || { echo "m$i answered $code" >&2; exit 1; }
        echo "$round ${out#* }" >>"$work/calls"
    done
done
grep -o 'loaded on demand in [0-9.]* ms' "$work/log" | awk '{print $5}' >"$work/loads"

"$python" - "$work/loads" "$work/calls" "$models" "$size_mb" "$limit" "$threads" <<'PY'
import sys
loads = [float(x) for x in open(sys.argv[1]) if x.strip()]
calls = [line.split() for line in open(sys.argv[2]) if line.strip()]
first = [float(t) * 1000 for r, t in calls if r == "1"]
later = [float(t) * 1000 for r, t in calls if r != "1"]
def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")
print(f"{sys.argv[3]} models x {sys.argv[4]} MB, --memory-limit {sys.argv[5]}, --inference-threads {sys.argv[6]}")
print()
print("| what | n | p50 ms | p90 ms | p99 ms | max ms |")
print("|---|---|---|---|---|---|")
for name, xs in [("cold load in the server (load + warm-up)", loads),
                 ("client call, first pass (incl. first-load hashing)", first),
                 ("client call, later passes (every call a cold load)", later)]:
    print(f"| {name} | {len(xs)} | {q(xs, .5):.1f} | {q(xs, .9):.1f} | {q(xs, .99):.1f} | {max(xs) if xs else float('nan'):.1f} |")
PY
