#!/usr/bin/env bash
# Podium beside the systems users would otherwise pick, in one run: Triton
# (the nvidia-pytriton wheel, which bundles tritonserver) and KServe (its
# Python model server), each serving the demo ONNX models (fraud v1, mlp v1)
# with ONNX Runtime in Python, one intra-op thread per session like Podium.
# Outputs are checked equal to Podium's for the same input, then
# podium-loadtest drives every server at the same concurrency levels over
# OIP REST JSON, REST binary and gRPC. Prints Markdown tables on stdout
# (BENCHMARKS.md, "Peers"), progress on stderr.
#
#   loadtest/peers.sh                                  # ~5 minutes after the build and installs
#   BENCH_DURATION=3s BENCH_LEVELS=1,8 loadtest/peers.sh   # a quick look
#   PODIUM_BIN=target/release/podium LOADTEST_BIN=target/release/podium-loadtest loadtest/peers.sh
#   # on a 16-core machine: servers on 8 cores, generator on the other 8
#   BENCH_SERVER_CPUS=0-7 BENCH_LOADTEST_CPUS=8-15 loadtest/peers.sh
#
# Knobs: BENCH_ROUNDS (1), BENCH_DURATION (3s measured per cell),
# BENCH_WARMUP (1s), BENCH_LEVELS (1,8,64), BENCH_PROTOCOLS
# (rest-json,rest-binary,grpc), BENCH_MODELS (fraud,mlp), BENCH_PEERS
# (podium,triton,kserve; podium is always the reference),
# BENCH_SERVER_CPUS / BENCH_LOADTEST_CPUS (taskset lists; unpinned when
# unset), BENCH_INSTANCES (inference threads / model instances of every
# server; default: the server CPUs), BENCH_START_TIMEOUT (180 s per server
# start), BENCH_START_TRIES (3 starts of a peer before giving up),
# BENCH_TRITON_TENSORSTORE (0: PyTriton moves tensors as base64 over ZeroMQ;
# 1: its shared-memory tensor store, which can fail to load a model on a busy
# machine), BENCH_JSON (a file for every raw result), PEERS_VENV (the
# virtualenvs; default .bench/peers-venv, kept and reused by later runs),
# PEERS_PYTHON (the python3 that makes them; default python3).
#
# Binaries: PODIUM_BIN and LOADTEST_BIN, else built here in release mode.
# The peers' virtualenvs need only python3 with venv and pip (and, for
# Triton's Python backend, a python3 built with a shared libpython, as
# distributions' are): the first run installs them from PyPI (about 250 MB
# of downloads, 1 GB on disk), later runs reuse them; a virtualenv whose
# install did not finish is made again. Everything listens on 127.0.0.1 on
# free ports, each load run is bounded in time, and every server (with its
# children) is stopped on exit, Ctrl-C and failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# The peers' pinned versions; onnxruntime is the version Podium loads
# (scripts/setup-ort.sh), so every server runs the same ONNX Runtime.
ORT_VERSION="${PODIUM_ORT_VERSION:-1.31.1}"
TRITON_REQUIREMENTS=("nvidia-pytriton==0.7.0" "onnxruntime==$ORT_VERSION" numpy)
KSERVE_REQUIREMENTS=("kserve==0.21.0" "onnxruntime==$ORT_VERSION" numpy)

log() { echo "peers.sh: $*" >&2; }

if [ -z "${PODIUM_BIN:-}" ] || [ -z "${LOADTEST_BIN:-}" ]; then
    ./scripts/setup-ort.sh
    log "building release binaries"
    cargo build --release --quiet -p podium -p podium-loadtest
    target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    PODIUM_BIN="${PODIUM_BIN:-$target/release/podium}"
    LOADTEST_BIN="${LOADTEST_BIN:-$target/release/podium-loadtest}"
fi
for bin in "$PODIUM_BIN" "$LOADTEST_BIN"; do
    [ -x "$bin" ] || { log "$bin is not an executable (PODIUM_BIN / LOADTEST_BIN)"; exit 1; }
done
PODIUM_BIN="$(cd "$(dirname "$PODIUM_BIN")" && pwd)/$(basename "$PODIUM_BIN")"
LOADTEST_BIN="$(cd "$(dirname "$LOADTEST_BIN")" && pwd)/$(basename "$LOADTEST_BIN")"

PEERS_VENV="${PEERS_VENV:-.bench/peers-venv}"
PEERS_PYTHON="${PEERS_PYTHON:-python3}"
mkdir -p "$PEERS_VENV"
PEERS_VENV="$(cd "$PEERS_VENV" && pwd)"

# venv NAME REQUIREMENT...: $PEERS_VENV/NAME with exactly these requirements.
# Its .requirements file is written last, so an install that was interrupted
# or failed is never taken for a finished one (it is made again), and a
# finished one whose requirements changed is made again too.
venv() {
    local name="$1" dir="$PEERS_VENV/$1"
    shift
    local want="$("$PEERS_PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])'): $*"
    if [ -f "$dir/.requirements" ] && [ "$(cat "$dir/.requirements")" = "$want" ]; then
        return 0
    fi
    log "installing $name into $dir: $want (from PyPI; once)"
    rm -rf "$dir"
    "$PEERS_PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >&2
    echo "$want" >"$dir/.requirements"
}

peers="${BENCH_PEERS:-podium,triton,kserve}"
if [[ ",$peers," == *",triton,"* ]]; then venv triton "${TRITON_REQUIREMENTS[@]}"; fi
if [[ ",$peers," == *",kserve,"* ]]; then venv kserve "${KSERVE_REQUIREMENTS[@]}"; fi

export PODIUM_BIN LOADTEST_BIN PEERS_VENV
exec python3 loadtest/peers/run.py
