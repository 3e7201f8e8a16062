#!/usr/bin/env bash
# Shared weights vs one copy per session (BENCHMARKS.md, "Memory: one copy of
# the weights"): the same load against two `podium serve` binaries, BASE_BIN
# (before issue 22: one copy of the weights per inference thread) and
# PODIUM_BIN (one shared copy), one server at a time, each serving fraud v1,
# mlp v1 and "wide", a 512→2048→2048→10 MLP whose 21 MB of weights are stored
# in the file (generated here with .venv-test's onnx and numpy). For each
# model, podium-loadtest in a closed loop at c=1 and at c=BENCH_CONCURRENCY;
# each server's resident memory (VmRSS) after its last run. Prints a
# Markdown table on stdout (medians over the rounds), progress on stderr.
#
#   BASE_BIN=/tmp/podium-main PODIUM_BIN=target/release/podium \
#   LOADTEST_BIN=target/release/podium-loadtest scripts/bench-shared-weights.sh
#
# (BASE_BIN: a release build of the commit before "One copy of a model
# version's weights for all its sessions", e.g. from `git worktree add`.)
# Knobs: BENCH_CONCURRENCY (64), BENCH_DURATION (10s), BENCH_WARMUP (2s),
# BENCH_ROUNDS (3), BENCH_PROTOCOL (rest-binary), BENCH_THREADS
# (--inference-threads; default: the cores), BENCH_SERVER_CPUS /
# BENCH_LOADTEST_CPUS (taskset lists; unpinned when unset), PYTHON
# (.venv-test/bin/python). 127.0.0.1 only, OS-assigned ports; every load run
# is killed after its duration + warm-up + 60 s.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${BASE_BIN:?set BASE_BIN to a podium binary built before shared weights}"
: "${PODIUM_BIN:?set PODIUM_BIN to a podium binary with shared weights (cargo build --release --bin podium)}"
: "${LOADTEST_BIN:?set LOADTEST_BIN to a podium-loadtest binary (cargo build --release -p podium-loadtest)}"
concurrency="${BENCH_CONCURRENCY:-64}"
duration="${BENCH_DURATION:-10s}"
warmup="${BENCH_WARMUP:-2s}"
rounds="${BENCH_ROUNDS:-3}"
protocol="${BENCH_PROTOCOL:-rest-binary}"
python="${PYTHON:-.venv-test/bin/python}"
models=(fraud mlp wide)

pin() { # CPUS CMD...: run CMD on CPUS when set
    local cpus="$1"
    shift
    if [ -n "$cpus" ]; then taskset -c "$cpus" "$@"; else "$@"; fi
}
seconds() { # 10s, 500ms, 2m -> whole seconds, rounded up
    python3 -c "import re,math,sys; n,u=re.fullmatch(r'([0-9.]+)(ms|s|m)',sys.argv[1]).groups(); print(math.ceil(float(n)*{'ms':0.001,'s':1,'m':60}[u]))" "$1"
}

work="$(mktemp -d)"
server=""
stop_server() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill -TERM "$server"
        wait "$server" 2>/dev/null || true
    fi
    server=""
}
cleanup() {
    stop_server
    rm -rf "$work"
}
trap cleanup EXIT

"$python" - "$work/wide.onnx" <<'PY'
import sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
dims = [512, 2048, 2048, 10]
rng = np.random.default_rng(22)
inits, nodes, x = [], [], "input"
for i in range(3):
    w = (rng.standard_normal((dims[i], dims[i + 1])) * np.sqrt(2 / dims[i])).astype(np.float32)
    inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(dims[i + 1], np.float32), f"b{i}")]
    out = "output" if i == 2 else f"h{i}"
    nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [out if i == 2 else out + "_pre"]))
    if i < 2:
        nodes.append(helper.make_node("Relu", [out + "_pre"], [out]))
    x = out
graph = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 512])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 10])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 9
onnx.save(model, sys.argv[1])
PY
registry="$work/registry"
for model in "${models[@]}"; do
    file="models/$model/v1.onnx"
    [ "$model" = wide ] && file="$work/wide.onnx"
    "$PODIUM_BIN" --registry "$registry" models register "$model" "$file" >/dev/null
    "$PODIUM_BIN" --registry "$registry" alias set "$model" champion 1 >/dev/null
done

threads=()
if [ -n "${BENCH_THREADS:-}" ]; then threads=(--inference-threads "$BENCH_THREADS"); fi
limit=$(( $(seconds "$duration") + $(seconds "$warmup") + 60 ))
bins=("$BASE_BIN" "$PODIUM_BIN")
for i in 0 1; do
    # Started directly (taskset execs it), so $! is the server's own pid,
    # whose /proc/PID/status gives its resident memory.
    cmd=("${bins[$i]}" --registry "$registry" serve \
        --listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 "${threads[@]}")
    if [ -n "${BENCH_SERVER_CPUS:-}" ]; then cmd=(taskset -c "$BENCH_SERVER_CPUS" "${cmd[@]}"); fi
    "${cmd[@]}" >"$work/server-$i.out" 2>"$work/server-$i.err" &
    server=$!
    rest="" grpc=""
    for _ in $(seq 600); do # 60 s at most
        rest="$(sed -n 's/^podium: listening on //p' "$work/server-$i.out")"
        grpc="$(sed -n 's/^podium: grpc listening on //p' "$work/server-$i.out")"
        [ -n "$rest" ] && break
        kill -0 "$server" 2>/dev/null || { cat "$work/server-$i.err" >&2; echo "bench-shared-weights: podium serve exited" >&2; exit 1; }
        sleep 0.1
    done
    [ -n "$rest" ] || { echo "bench-shared-weights: podium serve did not start within 60 s" >&2; exit 1; }
    url="$rest"
    [ "$protocol" = grpc ] && url="$grpc"
    echo "bench-shared-weights: [${bins[$i]}] server pid $server at $rest, RSS $(awk '/VmRSS/ {print $2, $3}' "/proc/$server/status") loaded" >&2
    for round in $(seq "$rounds"); do
        for model in "${models[@]}"; do
            for c in 1 "$concurrency"; do
                out="$work/$i-$model-$c-$round.json"
                pin "${BENCH_LOADTEST_CPUS:-}" timeout "$limit" "$LOADTEST_BIN" --json --quiet \
                    --url "$url" --protocol "$protocol" --model "$model" \
                    --concurrency "$c" --duration "$duration" --warmup "$warmup" >"$out"
                python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f'bench-shared-weights: {sys.argv[2]} c={sys.argv[3]}: {r[\"throughput\"]:.0f} req/s, p50 {r[\"latency\"][\"p50_us\"]:.0f} us', file=sys.stderr)" "$out" "$model" "$c"
            done
        done
    done
    awk '/VmRSS/ {print $2}' "/proc/$server/status" >"$work/rss-$i"
    stop_server
done

python3 - "$work" "$rounds" "$concurrency" "$protocol" "$(nproc)" "${models[*]}" <<'PY'
import json, os, statistics, sys
work, rounds, c, protocol, cores, models = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6].split()
med = statistics.median
print(f"fraud, mlp and wide (21 MB of weights), {protocol}, closed loop, {cores} cores visible, medians of {rounds} rounds")
print()
print(f"| weights | model | c=1 p50 µs | c=1 p99 µs | c={c} req/s | c={c} p99 µs | errors | server RSS after |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for i, name in enumerate(["one copy per session (before)", "shared (after)"]):
    rss = int(open(os.path.join(work, f"rss-{i}")).read()) / 1024
    for model in models:
        load = lambda cc: [json.load(open(os.path.join(work, f"{i}-{model}-{cc}-{r}.json"))) for r in range(1, rounds + 1)]
        one, many = load(1), load(c)
        errors = sum(sum(r["errors"].values()) for r in one + many)
        print(f"| {name} | {model} | {med(r['latency']['p50_us'] for r in one):,.0f} | {med(r['latency']['p99_us'] for r in one):,.0f} | {med(r['throughput'] for r in many):,.0f} | {med(r['latency']['p99_us'] for r in many):,.0f} | {errors} | {rss:,.0f} MB |")
PY
