#!/usr/bin/env bash
# What the ONNX Runtime options cost (BENCHMARKS.md, "ONNX Runtime options"):
# for each option set below, one release `podium serve` with those `--ort-*`
# flags serving models/fraud/v1 and models/mlp/v1, driven by podium-loadtest
# in a closed loop at c=1 and at c=BENCH_CONCURRENCY, one server loaded at a time.
# Prints a Markdown table on stdout (medians over the rounds), progress on
# stderr.
#
#   PODIUM_BIN=target/release/podium LOADTEST_BIN=target/release/podium-loadtest \
#     scripts/bench-ort-options.sh
#
# Knobs: BENCH_CONCURRENCY (64), BENCH_DURATION (10s measured per cell),
# BENCH_WARMUP (2s), BENCH_ROUNDS (3), BENCH_PROTOCOL (rest-binary;
# rest-json, grpc), BENCH_THREADS (--inference-threads; Podium's default:
# the cores it may use), BENCH_SERVER_CPUS / BENCH_LOADTEST_CPUS (taskset
# lists, e.g. 0-7 and 8-15 on a 16-core machine; unpinned when unset).
# ONNX Runtime is found as `podium serve` finds it (.ort/ of this checkout,
# beside the binary, or ORT_DYLIB_PATH).
#
# BENCH_SETS replaces the option sets with your own, one "name|flags" per
# line, any `podium serve` flags (e.g. "hand-off|--run-on-caller-max-us 0").
# Every server is started first and the rounds take the sets in turn, so a
# machine that gets busier during the run weighs on every set alike.
#
# Bounded in time: every load run is killed after its duration + warm-up +
# 60 s, each server after its last run. 127.0.0.1 only, OS-assigned ports.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${PODIUM_BIN:?set PODIUM_BIN to a podium binary (release: cargo build --release --bin podium)}"
: "${LOADTEST_BIN:?set LOADTEST_BIN to a podium-loadtest binary (release: cargo build --release -p podium-loadtest)}"
concurrency="${BENCH_CONCURRENCY:-64}"
duration="${BENCH_DURATION:-10s}"
warmup="${BENCH_WARMUP:-2s}"
rounds="${BENCH_ROUNDS:-3}"
protocol="${BENCH_PROTOCOL:-rest-binary}"

# name|flags: the option sets measured (the first is Podium's default).
option_sets=(
    "default (1 intra, 1 inter, all, arena, no spin)|"
    "intra_op_threads 2|--ort-intra-threads 2"
    "intra_op_threads 2, spinning|--ort-intra-threads 2 --ort-spinning true"
    "inter_op_threads 2 (parallel)|--ort-inter-threads 2"
    "graph_optimization basic|--ort-graph-optimization basic"
    "memory_arena false|--ort-memory-arena false"
)
if [ -n "${BENCH_SETS:-}" ]; then mapfile -t option_sets <<<"$BENCH_SETS"; fi

pin() { # CPUS CMD...: run CMD on CPUS when set
    local cpus="$1"
    shift
    if [ -n "$cpus" ]; then taskset -c "$cpus" "$@"; else "$@"; fi
}
seconds() { # 10s, 500ms, 2m -> whole seconds, rounded up
    python3 -c "import re,math,sys; n,u=re.fullmatch(r'([0-9.]+)(ms|s|m)',sys.argv[1]).groups(); print(math.ceil(float(n)*{'ms':0.001,'s':1,'m':60}[u]))" "$1"
}

work="$(mktemp -d)"
servers=()
cleanup() {
    for pid in "${servers[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

registry="$work/registry"
for model in fraud mlp; do
    "$PODIUM_BIN" --registry "$registry" models register "$model" "models/$model/v1.onnx" >/dev/null
    "$PODIUM_BIN" --registry "$registry" alias set "$model" champion 1 >/dev/null
done

threads=()
if [ -n "${BENCH_THREADS:-}" ]; then threads=(--inference-threads "$BENCH_THREADS"); fi
limit=$(( $(seconds "$duration") + $(seconds "$warmup") + 60 ))
urls=()
for i in "${!option_sets[@]}"; do
    name="${option_sets[$i]%%|*}"
    read -r -a flags <<<"${option_sets[$i]#*|}"
    # Started directly (taskset execs it), so $! is the server's own pid and
    # the clean-up stops the server itself, not a subshell.
    cmd=("$PODIUM_BIN" --registry "$registry" serve \
        --listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 "${threads[@]}" "${flags[@]}")
    if [ -n "${BENCH_SERVER_CPUS:-}" ]; then cmd=(taskset -c "$BENCH_SERVER_CPUS" "${cmd[@]}"); fi
    "${cmd[@]}" >"$work/server-$i.out" 2>"$work/server-$i.err" &
    servers+=("$!")
    rest="" grpc=""
    for _ in $(seq 600); do # 60 s at most
        rest="$(sed -n 's/^podium: listening on //p' "$work/server-$i.out")"
        grpc="$(sed -n 's/^podium: grpc listening on //p' "$work/server-$i.out")"
        [ -n "$rest" ] && break
        kill -0 "${servers[$i]}" 2>/dev/null || { cat "$work/server-$i.err" >&2; echo "bench-ort-options: podium serve exited" >&2; exit 1; }
        sleep 0.1
    done
    [ -n "$rest" ] || { echo "bench-ort-options: podium serve did not start within 60 s" >&2; exit 1; }
    urls+=("$rest")
    [ "$protocol" = grpc ] && urls[i]="$grpc"
    echo "bench-ort-options: [$name] server pid ${servers[$i]} at $rest" >&2
done
for round in $(seq "$rounds"); do
    for i in "${!option_sets[@]}"; do
        name="${option_sets[$i]%%|*}"
        for model in fraud mlp; do
            for c in 1 "$concurrency"; do
                out="$work/$i-$model-$c-$round.json"
                pin "${BENCH_LOADTEST_CPUS:-}" timeout "$limit" "$LOADTEST_BIN" --json --quiet \
                    --url "${urls[$i]}" --protocol "$protocol" --model "$model" \
                    --concurrency "$c" --duration "$duration" --warmup "$warmup" >"$out"
                python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f'bench-ort-options: round {sys.argv[4]} [{sys.argv[5]}] {sys.argv[2]} c={sys.argv[3]}: {r[\"throughput\"]:.0f} req/s, p50 {r[\"latency\"][\"p50_us\"]:.0f} us, p99 {r[\"latency\"][\"p99_us\"]:.0f} us', file=sys.stderr)" "$out" "$model" "$c" "$round" "$name"
            done
        done
    done
done

names="$(printf '%s\n' "${option_sets[@]%%|*}")"
python3 - "$work" "$rounds" "$concurrency" "$protocol" "$(nproc)" "$names" <<'PY'
import json, os, statistics, sys
work, rounds, c, protocol, cores, names = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6].splitlines()
med = statistics.median
print(f"fraud and mlp, {protocol}, closed loop, {cores} cores visible, medians of {rounds} rounds")
print()
print(f"| options | model | c=1 p50 µs | c=1 p99 µs | c={c} req/s | c={c} p99 µs | errors |")
print("|---|---|---:|---:|---:|---:|---:|")
for i, name in enumerate(names):
    for model in ("fraud", "mlp"):
        load = lambda cc: [json.load(open(os.path.join(work, f"{i}-{model}-{cc}-{r}.json"))) for r in range(1, rounds + 1)]
        one, many = load(1), load(c)
        errors = sum(sum(r["errors"].values()) for r in one + many)
        print(f"| {name} | {model} | {med(r['latency']['p50_us'] for r in one):,.0f} | {med(r['latency']['p99_us'] for r in one):,.0f} | {med(r['throughput'] for r in many):,.0f} | {med(r['latency']['p99_us'] for r in many):,.0f} | {errors} |")
PY
