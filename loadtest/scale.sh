#!/usr/bin/env bash
# Many-core measurements that a 2-core machine cannot make: Podium pinned to
# SERVER_CPUS, podium-loadtest pinned to LOAD_CPUS, one closed-loop cell per
# line of the plan below, in ROUNDS rounds so every ratio is taken within a
# round and reported as the median over rounds.
#
#   loadtest/scale.sh BIN_DIR OUT_DIR
#
# BIN_DIR holds release `podium`, `podium-loadtest`, `ort_ceiling` (optional)
# and `libonnxruntime.so`; the models come from ./models. It needs no Rust
# toolchain, so a prepared BIN_DIR can be carried to a bigger machine:
#
#   cargo build --release -p podium --bin podium --example ort_ceiling
#   cargo build --release -p podium-loadtest
#   mkdir -p .bench/bin && cp target/release/{podium,podium-loadtest} \
#     target/release/examples/ort_ceiling .ort/libonnxruntime.so .bench/bin/
#   strip .bench/bin/podium .bench/bin/podium-loadtest .bench/bin/ort_ceiling
#   loadtest/scale.sh .bench/bin /tmp/scale      # then read /tmp/scale/summary.md
#
# Knobs: SERVER_CPUS (0-7), LOAD_CPUS (8-15), ROUNDS (2), DURATION (3s),
# WARMUP (1s), BATCHING_CONFIG (the batching cells' --config; default: mlp_large
# with max_concurrent_batches = 1 and intra_op_threads = the server's cores),
# PLAN (all of: c1 protocols table ceiling batching readout
# caller; default "c1 protocols table ceiling"), GRPC_CONNECTIONS (the
# protocols cells' gRPC connection counts, "1 8 32"), RUN_ON_CALLER_US (the
# caller cells' --run-on-caller-max-us, 50), CALLER_CELLS (MODEL:PROTOCOL:C
# cells measured with it off and on; "fraud:rest-binary:1 mlp:rest-binary:1
# fraud:grpc:1 fraud:rest-binary:64"). Everything listens on 127.0.0.1 and every
# cell is bounded by DURATION; the script stops its servers on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="$(cd "${1:?BIN_DIR}" && pwd)"
out="${2:?OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
SERVER_CPUS="${SERVER_CPUS:-0-7}"
LOAD_CPUS="${LOAD_CPUS:-8-15}"
ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-3s}"
WARMUP="${WARMUP:-1s}"
PLAN="${PLAN:-c1 protocols table ceiling}"
for mpc in ${CALLER_CELLS:-}; do
  IFS=: read -r m p c <<<"$mpc"
  if [ -z "$m" ] || ! [[ "$p" =~ ^(rest-json|rest-binary|grpc|mlflow)$ ]] || ! [[ "${c:-}" =~ ^[1-9][0-9]*$ ]]; then
    echo "scale.sh: CALLER_CELLS entry '$mpc' is not MODEL:PROTOCOL:CONCURRENCY (e.g. fraud:rest-binary:1)" >&2
    exit 2
  fi
done
server_threads=$(( $(taskset -c "$SERVER_CPUS" nproc) ))
load_threads=$(( $(taskset -c "$LOAD_CPUS" nproc) ))
export ORT_DYLIB_PATH="$bin/libonnxruntime.so"
work="$(mktemp -d)"
server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap 'stop_server; rm -rf "$work"' EXIT

log() { echo "scale.sh [$(date +%T)]: $*" >&2; }
log "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); server on $SERVER_CPUS ($server_threads), generator on $LOAD_CPUS ($load_threads)"

# A registry with every demo model at champion.
export PODIUM_REGISTRY="$work/registry"
for m in fraud mlp mlp_large; do
  [ -f "models/$m/v1.onnx" ] || continue
  "$bin/podium" models register "$m" "models/$m/v1.onnx" >/dev/null
  "$bin/podium" alias set "$m" champion 1 >/dev/null
done
# fraud's challenger, for the readout cells' 50/50 split.
"$bin/podium" models register fraud models/fraud/v2.onnx >/dev/null
"$bin/podium" alias set fraud challenger 2 >/dev/null

# mlp_large batched as measured best on 8 server cores (BENCHMARKS "Dynamic
# batching"): one batch at a time, run by every server core.
cat >"$work/batching.toml" <<TOML
[model.mlp_large.batching]
max_batch_size = 64
max_queue_delay_us = 200
preferred_batch_sizes = [8, 16, 32, 64]
max_concurrent_batches = 1

[model.mlp_large.onnxruntime]
intra_op_threads = $server_threads
TOML

port=18400
# ready PORT: the server answers 200 on /v2/health/ready (bash only: no curl needed).
ready() {
  local status
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'GET /v2/health/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  read -r _ status _ <&3 || status=""
  exec 3<&- 3>&-
  [ "$status" = 200 ]
}
# start_server NAME [serve args...]: a fresh server on new ports, ready when this returns.
start_server() {
  local name="$1"; shift
  stop_server
  port=$((port + 2))
  taskset -c "$SERVER_CPUS" "$bin/podium" serve --listen "127.0.0.1:$port" \
    --grpc-listen "127.0.0.1:$((port + 1))" --inference-threads "$server_threads" "$@" \
    >"$out/server-$name.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 300); do
    if ready "$port"; then return 0; fi
    kill -0 "$server_pid" 2>/dev/null || { log "server $name died:"; tail -5 "$out/server-$name.log" >&2; exit 1; }
    sleep 0.1
  done
  log "server $name not ready in 30 s"; exit 1
}

# cell ROUND LABEL MODEL PROTOCOL C [loadtest args...]: one measured run, its JSON in $out/cells.jsonl.
cell() {
  local round="$1" label="$2" model="$3" protocol="$4" c="$5"; shift 5
  local url="http://127.0.0.1:$port"
  [ "$protocol" = grpc ] && url="http://127.0.0.1:$((port + 1))"
  local json
  json="$(taskset -c "$LOAD_CPUS" "$bin/podium-loadtest" --url "$url" --protocol "$protocol" -m "$model" \
    -c "$c" -d "$DURATION" --warmup "$WARMUP" --threads "$load_threads" --json --quiet "$@")"
  printf '{"round":%s,"label":"%s","model":"%s","protocol":"%s","c":%s,"report":%s}\n' \
    "$round" "$label" "$model" "$protocol" "$c" "$(echo "$json" | tr -d '\n')" >>"$out/cells.jsonl"
  log "round $round $label $model $protocol c=$c done"
}

: >"$out/cells.jsonl"
for round in $(seq 1 "$ROUNDS"); do
  if [[ " $PLAN " == *" ceiling "* ]] && [ -x "$bin/ort_ceiling" ]; then
    for mw in fraud:30 mlp:64; do
      m="${mw%%:*}"
      taskset -c "$SERVER_CPUS" "$bin/ort_ceiling" "models/$m/v1.onnx" "${mw##*:}" 2 "1,$server_threads" \
        | sed "s/^{/{\"round\":$round,\"model\":\"$m\",/" >>"$out/ceiling.jsonl" \
        || log "ort_ceiling $m failed"
    done
  fi
  if [[ " $PLAN " == *" c1 "* || " $PLAN " == *" protocols "* ]]; then
    start_server plain
    if [[ " $PLAN " == *" c1 "* ]]; then
      for p in rest-json rest-binary grpc; do
        for m in fraud mlp; do cell "$round" c1 "$m" "$p" 1; done
      done
    fi
    if [[ " $PLAN " == *" protocols "* ]]; then
      for c in 64 256; do
        for p in rest-json rest-binary; do cell "$round" "proto" fraud "$p" "$c"; done
        for conns in ${GRPC_CONNECTIONS:-1 8 32}; do
          cell "$round" "grpc-conns-$conns" fraud grpc "$c" --grpc-connections "$conns"
        done
      done
    fi
  fi
  if [[ " $PLAN " == *" table "* ]]; then
    for mode in off on; do
      if [ "$mode" = on ]; then
        rm -rf "$work/tables"
        start_server "table-$mode" --table-dir "$work/tables"
      else
        start_server "table-$mode"
      fi
      # Varied rows: one body over and over flatters the table's codec.
      cell "$round" "table-$mode" fraud rest-binary 64 --distinct-inputs 1024
      cell "$round" "table-$mode" mlp rest-json 256 --distinct-inputs 1024
    done
  fi
  if [[ " $PLAN " == *" batching "* ]] && [ -f models/mlp_large/v1.onnx ]; then
    for mode in off on; do
      if [ "$mode" = on ]; then
        start_server "batching-$mode" --config "${BATCHING_CONFIG:-$work/batching.toml}"
      else
        start_server "batching-$mode"
      fi
      cell "$round" "batching-$mode" mlp_large rest-binary 64
    done
  fi
  if [[ " $PLAN " == *" caller "* ]]; then
    # Run to completion on the caller (--run-on-caller-max-us) off vs on,
    # at c=1 where it saves the hand-off and at c=64 where it may cost.
    for mode in off on; do
      if [ "$mode" = on ]; then
        start_server "caller-$mode" --run-on-caller-max-us "${RUN_ON_CALLER_US:-50}"
      else
        start_server "caller-$mode"
      fi
      for mpc in ${CALLER_CELLS:-fraud:rest-binary:1 mlp:rest-binary:1 fraud:grpc:1 fraud:rest-binary:64}; do
        IFS=: read -r m p c <<<"$mpc"
        cell "$round" "caller-$mode" "$m" "$p" "$c"
      done
    done
  fi
  if [[ " $PLAN " == *" readout "* ]]; then
    # One server, two endpoints with the same split: plain, and with an
    # experiment readout + guardrails (models/readout-endpoints.toml).
    start_server readout --config models/readout-endpoints.toml
    for pc in rest-binary:1 rest-binary:64 rest-json:256; do
      cell "$round" readout-off fraud-plain "${pc%%:*}" "${pc##*:}"
      cell "$round" readout-on fraud-exp "${pc%%:*}" "${pc##*:}"
    done
  fi
  stop_server
done

if command -v python3 >/dev/null; then
  python3 "$(dirname "$0")/scale_summary.py" "$out/cells.jsonl" >"$out/summary.md"
  cat "$out/summary.md"
fi
