#!/usr/bin/env bash
# Dynamic batching on vs off (BENCHMARKS.md, "Dynamic batching"): one
# `podium serve` with models/mlp_large registered twice, as `mlp_large`
# (no batching) and `mlp_large_batched` ([model.mlp_large_batched.batching]
# max_batch_size = 64, max_queue_delay_us = 200, preferred_batch_sizes =
# [8, 16, 32, 64]), driven by podium-loadtest in a closed loop at the same
# concurrency, alternating in rounds. Prints a Markdown table on stdout
# (medians over the rounds), progress on stderr.
#
#   PODIUM_BIN=target/release/podium LOADTEST_BIN=target/release/podium-loadtest \
#     scripts/bench-batching.sh
#
# Knobs: BENCH_CONCURRENCY (64), BENCH_DURATION (10s measured per cell),
# BENCH_WARMUP (2s), BENCH_ROUNDS (3), BENCH_PROTOCOL (rest-binary;
# rest-json, grpc), BENCH_THREADS (--inference-threads; Podium's default:
# the cores it may use), BENCH_MAX_CONCURRENT_BATCHES (the batched model's
# max_concurrent_batches; no cap when unset), BENCH_INTRA_OP_THREADS (the
# batched model's ONNX Runtime intra_op_threads, so one batch runs on several
# cores; 1 when unset), BENCH_SERVER_CPUS /
# BENCH_LOADTEST_CPUS (taskset lists, e.g. 0-7 and 8-15 on a 16-core
# machine; unpinned when unset).
# ONNX Runtime is found as `podium serve` finds it (.ort/ of this checkout,
# beside the binary, or ORT_DYLIB_PATH).
#
# Bounded in time: every load run is killed after its duration + warm-up +
# 60 s, the server after the last one. 127.0.0.1 only, OS-assigned ports.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${PODIUM_BIN:?set PODIUM_BIN to a podium binary (release: cargo build --release --bin podium)}"
: "${LOADTEST_BIN:?set LOADTEST_BIN to a podium-loadtest binary (release: cargo build --release -p podium-loadtest)}"
concurrency="${BENCH_CONCURRENCY:-64}"
duration="${BENCH_DURATION:-10s}"
warmup="${BENCH_WARMUP:-2s}"
rounds="${BENCH_ROUNDS:-3}"
protocol="${BENCH_PROTOCOL:-rest-binary}"

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
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill -TERM "$server"
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

registry="$work/registry"
for model in mlp_large mlp_large_batched; do
    "$PODIUM_BIN" --registry "$registry" models register "$model" models/mlp_large/v1.onnx >/dev/null
    "$PODIUM_BIN" --registry "$registry" alias set "$model" champion 1 >/dev/null
done
cat >"$work/podium.toml" <<'TOML'
[model.mlp_large_batched.batching]
max_batch_size = 64
max_queue_delay_us = 200
preferred_batch_sizes = [8, 16, 32, 64]
TOML
cap="${BENCH_MAX_CONCURRENT_BATCHES:-}"
if [ -n "$cap" ]; then echo "max_concurrent_batches = $cap" >>"$work/podium.toml"; fi
intra="${BENCH_INTRA_OP_THREADS:-}"
if [ -n "$intra" ]; then
    printf '[model.mlp_large_batched.onnxruntime]\nintra_op_threads = %s\n' "$intra" >>"$work/podium.toml"
fi

threads=()
if [ -n "${BENCH_THREADS:-}" ]; then threads=(--inference-threads "$BENCH_THREADS"); fi
# Started directly (taskset execs it), so $! is the server's own pid and
# the clean-up stops the server itself, not a subshell.
cmd=("$PODIUM_BIN" --registry "$registry" serve \
    --listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 --config "$work/podium.toml" "${threads[@]}")
if [ -n "${BENCH_SERVER_CPUS:-}" ]; then cmd=(taskset -c "$BENCH_SERVER_CPUS" "${cmd[@]}"); fi
"${cmd[@]}" >"$work/server.out" 2>"$work/server.err" &
server=$!
rest="" grpc=""
for _ in $(seq 600); do # 60 s at most
    rest="$(sed -n 's/^podium: listening on //p' "$work/server.out")"
    grpc="$(sed -n 's/^podium: grpc listening on //p' "$work/server.out")"
    [ -n "$rest" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$work/server.err" >&2; echo "bench-batching: podium serve exited" >&2; exit 1; }
    sleep 0.1
done
[ -n "$rest" ] || { echo "bench-batching: podium serve did not start within 60 s" >&2; exit 1; }
url="$rest"
[ "$protocol" = grpc ] && url="$grpc"
echo "bench-batching: server pid $server at $rest; $protocol, c=$concurrency, $duration per cell, $rounds rounds" >&2

limit=$(( $(seconds "$duration") + $(seconds "$warmup") + 60 ))
for round in $(seq "$rounds"); do
    for model in mlp_large mlp_large_batched; do
        out="$work/$model-$round.json"
        pin "${BENCH_LOADTEST_CPUS:-}" timeout "$limit" "$LOADTEST_BIN" --json --quiet \
            --url "$url" --protocol "$protocol" --model "$model" \
            --concurrency "$concurrency" --duration "$duration" --warmup "$warmup" >"$out"
        python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f'bench-batching: round {sys.argv[2]} {sys.argv[3]}: {r[\"throughput\"]:.0f} req/s, p50 {r[\"latency\"][\"p50_us\"]:.0f} us, p99 {r[\"latency\"][\"p99_us\"]:.0f} us', file=sys.stderr)" "$out" "$round" "$model"
    done
done
curl -sf "$rest/metrics" >"$work/metrics.txt" 2>/dev/null || true

python3 - "$work" "$rounds" "$concurrency" "$protocol" "$(nproc)" "$cap" "$intra" <<'PY'
import json, os, re, statistics, sys
work, rounds, c, protocol, cores, cap, intra = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
med = statistics.median
rows = {}
for model in ("mlp_large", "mlp_large_batched"):
    rs = [json.load(open(os.path.join(work, f"{model}-{i}.json"))) for i in range(1, rounds + 1)]
    rows[model] = {
        "rps": med(r["throughput"] for r in rs),
        "p50": med(r["latency"]["p50_us"] for r in rs),
        "p99": med(r["latency"]["p99_us"] for r in rs),
        "errors": sum(sum(r["errors"].values()) for r in rs),
    }
mean_batch = ""
try:
    text = open(os.path.join(work, "metrics.txt")).read()
    s = float(re.search(r'^podium_batch_size_sum\{model="mlp_large_batched"\} (\S+)', text, re.M).group(1))
    n = float(re.search(r'^podium_batch_size_count\{model="mlp_large_batched"\} (\S+)', text, re.M).group(1))
    mean_batch = f"{s / n:.1f}"
except (OSError, AttributeError, ZeroDivisionError):
    pass
plain, batched = rows["mlp_large"], rows["mlp_large_batched"]
print(f"mlp_large (512→2048→2048→10), {protocol}, closed loop c={c}, {cores} cores visible, medians of {rounds} rounds")
print()
print("| batching | req/s | p50 µs | p99 µs | errors | mean rows per run |")
print("|---|---:|---:|---:|---:|---:|")
print(f"| off | {plain['rps']:,.0f} | {plain['p50']:,.0f} | {plain['p99']:,.0f} | {plain['errors']} | 1 |")
label = "max 64, 200 µs, preferred 8/16/32/64" + (f", {cap} at once" if cap else "") + (f", {intra} intra-op threads" if intra else "")
print(f"| {label} | {batched['rps']:,.0f} | {batched['p50']:,.0f} | {batched['p99']:,.0f} | {batched['errors']} | {mean_batch or '?'} |")
print()
print(f"throughput ×{batched['rps'] / plain['rps']:.2f} (goal ≥ 3), p99 ×{batched['p99'] / plain['p99']:.2f} (goal ≤ 2)")
PY
