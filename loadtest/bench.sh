#!/usr/bin/env bash
# Reproduces the throughput table of BENCHMARKS.md on this machine:
#   raw ONNX Runtime calls/s (the ceiling), then Podium over REST JSON,
#   REST binary and gRPC at concurrency 1/8/64 (podium-loadtest, closed
#   loop) for the demo tabular model (fraud v1) and the MLP, in rounds,
#   with ratios computed within each round and medians across rounds; then
#   the alias-flip drill. Prints Markdown tables on stdout; progress on stderr.
#
#   ./loadtest/bench.sh                       # ~6 minutes after the build
#   BENCH_ROUNDS=1 BENCH_DURATION=2s ./loadtest/bench.sh   # a quick look
#
# Knobs: BENCH_ROUNDS (3), BENCH_DURATION (3s measured per cell),
# BENCH_WARMUP (1s per cell), BENCH_LEVELS (1,8,64), BENCH_PIN (0; 1 pins
# the server to CPU 1 and the load generator to CPU 0 with taskset),
# BENCH_JSON (a file to write every raw result to).
#
# Everything runs on 127.0.0.1: the server is the release `podium serve`
# on a fresh temporary registry, started with OS-assigned ports and stopped
# at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup-ort.sh
echo "bench.sh: building release binaries" >&2
cargo build --release --quiet -p podium --bin podium --example ort_ceiling
cargo build --release --quiet -p podium-loadtest
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"

exec python3 - "$target/release" <<'PY'
import json, os, re, resource, signal, statistics, subprocess, sys, tempfile, time

release = sys.argv[1]
PODIUM = os.path.join(release, "podium")
LOADTEST = os.path.join(release, "podium-loadtest")
CEILING = os.path.join(release, "examples", "ort_ceiling")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
DURATION = os.environ.get("BENCH_DURATION", "3s")
WARMUP = os.environ.get("BENCH_WARMUP", "1s")
LEVELS = [int(x) for x in os.environ.get("BENCH_LEVELS", "1,8,64").split(",")]
PIN = os.environ.get("BENCH_PIN", "0") == "1"
MODELS = [("fraud", "models/fraud/v1.onnx", 30), ("mlp", "models/mlp/v1.onnx", 64)]
PROTOCOLS = ["rest-json", "rest-binary", "grpc"]
began = time.time()

def log(msg):
    print(f"bench.sh [{time.time() - began:5.0f}s]: {msg}", file=sys.stderr, flush=True)

def pinned(cpu, argv):
    return (["taskset", "-c", str(cpu)] + argv) if PIN else argv

def ticks(pid="self"):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except OSError:
        return 0

def machine_ticks():
    cpu = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return sum(cpu), cpu[3] + cpu[4]

def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0

cores = os.cpu_count()
cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
haltpoll = "?"
try:
    haltpoll = open("/sys/module/haltpoll/parameters/guest_halt_poll_ns").read().strip()
except OSError:
    pass
loadavg_start = " ".join(open("/proc/loadavg").read().split()[:3])
log(f"{cores} cores ({cpu_model}), load average {loadavg_start}")

# ---------------------------------------------------------------- server
tmp = tempfile.mkdtemp(prefix="podium-bench-")
registry = os.path.join(tmp, "registry")
def cli(*args):
    subprocess.run([PODIUM, "--registry", registry, *args], check=True, stdout=subprocess.DEVNULL)
cli("models", "register", "fraud", "models/fraud/v1.onnx")
cli("models", "register", "fraud", "models/fraud/v2.onnx")
cli("alias", "set", "fraud", "champion", "1")
cli("alias", "set", "fraud", "challenger", "2")
cli("models", "register", "mlp", "models/mlp/v1.onnx")
cli("alias", "set", "mlp", "champion", "1")
server = subprocess.Popen(
    pinned(1, [PODIUM, "--registry", registry, "serve", "--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"]),
    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PODIUM_LOG": "warn"})
rest = grpc = None
deadline = time.time() + 60
while rest is None:
    if time.time() > deadline or server.poll() is not None:
        sys.exit("bench.sh: podium serve did not start")
    line = server.stdout.readline()
    if line.startswith("podium: grpc listening on "):
        grpc = line.split()[-1]
    elif line.startswith("podium: listening on "):
        rest = line.split()[-1]
log(f"server pid {server.pid}: REST {rest}, gRPC {grpc}")

def stop_server():
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()

def loadtest(args):
    """Runs podium-loadtest; returns (report, CPU cores used by server, generator, others)."""
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    s0, (t0, i0) = ticks(server.pid), machine_ticks()
    out = subprocess.run(pinned(0, [LOADTEST, "--json", "--quiet", *args]), capture_output=True, text=True)
    s1, (t1, i1) = ticks(server.pid), machine_ticks()
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode not in (0, 2):
        stop_server()
        sys.exit(f"bench.sh: podium-loadtest {' '.join(args)} failed:\n{out.stderr}")
    hz = os.sysconf("SC_CLK_TCK")
    wall = max((t1 - t0) / cores, 1)
    busy = (t1 - t0) - (i1 - i0)
    gen = ((after_children.ru_utime + after_children.ru_stime) - (before_children.ru_utime + before_children.ru_stime)) * hz
    srv = s1 - s0
    return json.loads(out.stdout), srv / wall, gen / wall, max(busy - srv - gen, 0) / wall

def ceiling(path, width):
    out = subprocess.run(pinned(1, [CEILING, path, str(width), "2", "1,2"]), capture_output=True, text=True, check=True)
    rows = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    return {r["threads"]: r for r in rows}

# ---------------------------------------------------------------- rounds
results = []  # one dict per (round, model, protocol, level)
raws = []     # one dict per (round, model)
try:
    for rnd in range(ROUNDS):
        for model, path, width in MODELS:
            raw = ceiling(path, width)
            raws.append({"round": rnd, "model": model, "raw": raw})
            log(f"round {rnd + 1}/{ROUNDS} {model}: raw ORT {raw[1]['calls_per_s']:.0f}/s on 1 thread, {raw[2]['calls_per_s']:.0f}/s on 2")
            order = PROTOCOLS[rnd % 3:] + PROTOCOLS[:rnd % 3]  # rotate, so no protocol always goes first
            for protocol in order:
                url = grpc if protocol == "grpc" else rest
                for c in LEVELS:
                    report, srv, gen, others = loadtest(["--url", url, "--protocol", protocol, "-m", model,
                                                         "-c", str(c), "-d", DURATION, "--warmup", WARMUP,
                                                         "--grpc-connections", "1"])
                    errors = sum(report["errors"].values())
                    results.append({"round": rnd, "model": model, "protocol": protocol, "c": c,
                                    "rps": report["throughput"], "p50": report["latency"]["p50_us"],
                                    "p99": report["latency"]["p99_us"], "errors": errors,
                                    "ratio1": report["throughput"] / raw[1]["calls_per_s"],
                                    "ratio_best": report["throughput"] / max(r["calls_per_s"] for r in raw.values()),
                                    "added_p50": report["latency"]["p50_us"] - raw[1]["p50_us"],
                                    "cpu": [srv, gen, others]})
                    log(f"  {protocol} c={c}: {report['throughput']:.0f} req/s, p50 {report['latency']['p50_us']:.0f} µs, "
                        f"p99 {report['latency']['p99_us']:.0f} µs, errors {errors}; cores: server {srv:.2f}, generator {gen:.2f}, others {others:.2f}")

    # ------------------------------------------------------------ drill
    drills = []
    for every, seconds in [("200ms", "10s"), ("50ms", "5s"), ("50ms", "5s")]:
        rss0 = rss_kb(server.pid)
        report, srv, gen, others = loadtest(["--url", rest, "-m", "fraud", "-c", "32", "-d", seconds, "--warmup", "1s",
                                             "--flip", "fraud", "champion", "2,1", "--every", every])
        rss1 = rss_kb(server.pid)
        drills.append((every, report, rss0, rss1, srv, gen, others))
        f = report["flip"]
        log(f"flip drill every {every}: {f['flips']} flips ({f['failed_flips']} failed), {f['failures']} failed requests, "
            f"{f['inconsistent']} inconsistent, {f['checked']} checked")
    # Leave champion where the registry had it.
    loadtest(["--url", rest, "-m", "fraud", "-c", "1", "-n", "1", "--warmup", "0s",
              "--flip", "fraud", "champion", "1,2", "--flips", "0"])
finally:
    stop_server()

if os.environ.get("BENCH_JSON"):
    with open(os.environ["BENCH_JSON"], "w") as out:
        json.dump({"results": results, "raw": raws}, out, indent=1)

# ---------------------------------------------------------------- tables
med = statistics.median
def cell(model, protocol, c, key):
    return med(r[key] for r in results if (r["model"], r["protocol"], r["c"]) == (model, protocol, c))

print(f"Machine: {cores} vCPUs ({cpu_model}), guest_halt_poll_ns={haltpoll}; load average at start "
      f"{loadavg_start}. Rounds {ROUNDS}, {DURATION} measured + {WARMUP} warm-up per cell, "
      f"closed loop, server and load generator {'pinned to CPU 1 and 0' if PIN else 'unpinned, sharing both cores'}. "
      f"Medians across rounds; ratios computed within a round, then the median. "
      f"The raw ORT ceiling of a round is the better of 1 and 2 threads.\n")
print("| model | raw ORT calls/s, 1 thread | raw ORT calls/s, 2 threads | raw ORT p50 µs |")
print("|---|---|---|---|")
for model, _, _ in MODELS:
    rr = [r["raw"] for r in raws if r["model"] == model]
    print(f"| {model} | {med(r[1]['calls_per_s'] for r in rr):,.0f} | {med(r[2]['calls_per_s'] for r in rr):,.0f} | {med(r[1]['p50_us'] for r in rr):.1f} |")
print()
print("| model | protocol | c | req/s | p50 µs | p99 µs | Podium ÷ raw ORT ceiling | Podium ÷ raw ORT 1 thread | errors | cores: server / generator / others |")
print("|---|---|---|---|---|---|---|---|---|---|")
for model, _, _ in MODELS:
    for protocol in PROTOCOLS:
        for c in LEVELS:
            rows = [r for r in results if (r["model"], r["protocol"], r["c"]) == (model, protocol, c)]
            cpu = [med(r["cpu"][i] for r in rows) for i in range(3)]
            print(f"| {model} | {protocol} | {c} | {cell(model, protocol, c, 'rps'):,.0f} | {cell(model, protocol, c, 'p50'):.0f} | "
                  f"{cell(model, protocol, c, 'p99'):.0f} | {cell(model, protocol, c, 'ratio_best'):.3f} | {cell(model, protocol, c, 'ratio1'):.3f} | "
                  f"{sum(r['errors'] for r in rows)} | {cpu[0]:.2f} / {cpu[1]:.2f} / {cpu[2]:.2f} |")
print()
if 1 in LEVELS:
    print("Added latency at c=1 (Podium p50 − raw ORT p50 on 1 thread, per round, median):\n")
    print("| model | " + " | ".join(PROTOCOLS) + " |")
    print("|---|" + "---|" * len(PROTOCOLS))
    for model, _, _ in MODELS:
        print(f"| {model} | " + " | ".join(f"{cell(model, p, 1, 'added_p50'):.0f} µs" for p in PROTOCOLS) + " |")
    print()
print("Flip drill (fraud@champion between v2 and v1 through the admin API, REST JSON, 32 clients):\n")
print("| every | flips | failed flips | PUT p50 / max ms | requests | req/s | p50 / p99 ms | failed requests | inconsistent | checked | server RSS before → after |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for every, r, rss0, rss1, *_ in drills:
    f = r["flip"]
    print(f"| {every} | {f['flips']} | {f['failed_flips']} | {f['put_latency']['p50_us'] / 1000:.1f} / {f['put_latency']['max_us'] / 1000:.1f} | "
          f"{r['requests']:,} | {r['throughput']:,.0f} | {r['latency']['p50_us'] / 1000:.2f} / {r['latency']['p99_us'] / 1000:.2f} | "
          f"{f['failures']} | {f['inconsistent']} | {f['checked']:,} | {rss0 / 1024:.1f} → {rss1 / 1024:.1f} MiB |")
log(f"done in {time.time() - began:.0f} s")
PY
