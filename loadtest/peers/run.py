#!/usr/bin/env python3
"""The driver of loadtest/peers.sh: Podium beside Triton (PyTriton) and
KServe, on the same ONNX models, inputs and concurrency levels, in one run.

Per round and per server (Podium first, its answers being the reference, then
the peers in an order that rotates from round to round): start the server on
free 127.0.0.1 ports, check that its outputs equal Podium's for the same
input, drive it with podium-loadtest at every (model, protocol, level) cell,
stop it. One server runs at a time, so none competes with another for
the cores. Prints Markdown tables on stdout, progress on stderr; BENCH_JSON
names a file for every raw result.

Standard library only: it runs on the system python3; the peers run in their
own virtualenvs (peers.sh makes them). Every child runs in its own process
group, and every group is stopped on exit, Ctrl-C and failure included.
"""

import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from summary import summary

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ENV = os.environ



def knob(name, default, parse, example):
    """An environment knob, parsed; a bad value stops the run with an example of a good one."""
    text = ENV.get(name, default)
    try:
        return parse(text)
    except ValueError:
        raise SystemExit(f"peers.sh: {name}={text!r} is not usable; write e.g. {name}={example}") from None


def positive_ints(text):
    values = [int(x) for x in text.split(",")]
    if not values or min(values) < 1:
        raise ValueError
    return values


def names(allowed):
    def parse(text):
        values = [x.strip() for x in text.split(",") if x.strip()]
        if not values or any(v not in allowed for v in values):
            raise ValueError
        return values

    return parse


PODIUM = ENV["PODIUM_BIN"]
LOADTEST = ENV["LOADTEST_BIN"]
VENVS = ENV["PEERS_VENV"]
ROUNDS = knob("BENCH_ROUNDS", "1", lambda t: positive_ints(t)[0], "3")
DURATION = ENV.get("BENCH_DURATION", "3s")
WARMUP = ENV.get("BENCH_WARMUP", "1s")
LEVELS = knob("BENCH_LEVELS", "1,8,64", positive_ints, "1,8,64")
PROTOCOLS = knob("BENCH_PROTOCOLS", "rest-json,rest-binary,grpc", names({"rest-json", "rest-binary", "grpc"}),
                 "rest-json,grpc")
MODELS = knob("BENCH_MODELS", "fraud,mlp", names({m for m in os.listdir(os.path.join(ROOT, "models"))
                                                   if os.path.exists(os.path.join(ROOT, "models", m, "v1.onnx"))}),
              "fraud,mlp")
PEERS = knob("BENCH_PEERS", "podium,triton,kserve", names({"podium", "triton", "kserve"}), "podium,triton,kserve")
SERVER_CPUS = ENV.get("BENCH_SERVER_CPUS", "")
LOADTEST_CPUS = ENV.get("BENCH_LOADTEST_CPUS", "")
START_TIMEOUT = knob("BENCH_START_TIMEOUT", "180", float, "300")
# Outputs count as equal within this tolerance (ONNX Runtime in Rust and in
# Python agree bit for bit; JSON's decimal round trip may not).
RTOL, ATOL = 1e-5, 1e-6
began = time.time()


def log(msg):
    print(f"peers.sh [{time.time() - began:5.0f}s]: {msg}", file=sys.stderr, flush=True)


def fail(msg):
    raise SystemExit(f"peers.sh: {msg}")


def seconds(text):
    """`3s`, `500ms`, `2m` in seconds (podium-loadtest's own units)."""
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(us|ms|s|m)", text.strip())
    if not m:
        fail(f"{text!r} is not a duration (BENCH_DURATION, BENCH_WARMUP); write e.g. 500ms, 3s or 1m")
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(2)]


def cpu_count(cpus):
    """Cores in a taskset list such as `0-7,12` (all of this machine's when empty)."""
    if not cpus:
        return os.cpu_count() or 1
    n = 0
    for part in cpus.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def pinned(cpus, argv):
    return (["taskset", "-c", cpus] + argv) if cpus else argv


INSTANCES = knob("BENCH_INSTANCES", "0", int, "8") or knob("BENCH_SERVER_CPUS", "", cpu_count, "0-7")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, timeout=10.0):
    """(status, parsed JSON body or None) of one request; (None, error) when there is no answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:300].decode(errors="replace")
    except (OSError, ValueError) as e:
        return None, str(e)


def group_ticks(pgid):
    """CPU ticks (user + system) of every live process in a process group."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total


# ---------------------------------------------------------------- servers
class Server:
    """One server under test, started in its own process group on 127.0.0.1."""

    def __init__(self, name, argv, log_path, env=None):
        self.name = name
        self.log_path = log_path
        self.rest = self.grpc = None
        self.ran = ""
        out = open(log_path, "w")
        self.proc = subprocess.Popen(pinned(SERVER_CPUS, argv), stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=ROOT, env=env, start_new_session=True)
        out.close()
        RUNNING.append(self)

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, lines=15):
        try:
            return "".join(open(self.log_path).readlines()[-lines:]) or "(empty)"
        except OSError:
            return "(none)"

    def died(self, why):
        self.stop()
        raise StartFailed(f"{self.name} {why}; the end of its log ({self.log_path}):\n{self.log_tail()}")

    def wait_ready(self, models):
        """Polls OIP readiness of the server and every model until START_TIMEOUT."""
        deadline = time.time() + START_TIMEOUT
        urls = [f"{self.rest}/v2/health/ready"] + [f"{self.rest}/v2/models/{m}/ready" for m in models]
        while urls:
            if not self.alive():
                self.died("exited before it was ready")
            if time.time() > deadline:
                self.died(f"was not ready within {START_TIMEOUT:.0f} s (BENCH_START_TIMEOUT)")
            status, _ = http("GET", urls[0], timeout=2)
            if status == 200:
                urls.pop(0)
            else:
                time.sleep(0.2)

    def stop(self):
        """SIGTERM to the server (its own shutdown cleans up after it), then
        SIGTERM and at last SIGKILL to whatever is left of its process group."""
        if self in RUNNING:
            RUNNING.remove(self)
        for send, sig, grace in ((os.kill, signal.SIGTERM, 30), (os.killpg, signal.SIGTERM, 5),
                                 (os.killpg, signal.SIGKILL, 5)):
            try:
                send(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            if self.group_gone(grace):
                break
        self.proc.wait()

    def group_gone(self, grace):
        deadline = time.time() + grace
        while True:
            self.proc.poll()  # reap the leader, or it counts as a member
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return True
            if time.time() > deadline:
                return False
            time.sleep(0.1)


RUNNING = []
START_TRIES = knob("BENCH_START_TRIES", "3", lambda t: positive_ints(t)[0], "3")


class StartFailed(Exception):
    """A server exited or was not ready in time."""


def stop_all(*_):
    for s in list(RUNNING):
        s.stop()


def on_signal(signum, _frame):
    raise SystemExit(f"peers.sh: stopped by signal {signum}")


def start_podium(work):
    registry = tempfile.mkdtemp(prefix="registry-", dir=work)  # a fresh one each round: every model at v1
    for m in MODELS:
        for argv in (["models", "register", m, f"models/{m}/v1.onnx"], ["alias", "set", m, "champion", "1"]):
            done = subprocess.run([PODIUM, "--registry", registry, *argv], capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                fail(f"podium {' '.join(argv)} failed: {done.stderr.strip()}")
    log_path = os.path.join(work, "podium.log")
    s = Server("podium", [PODIUM, "--registry", registry, "serve", "--listen", "127.0.0.1:0",
                          "--grpc-listen", "127.0.0.1:0", "--inference-threads", str(INSTANCES)],
               log_path, env={**ENV, "PODIUM_LOG": "warn"})
    deadline = time.time() + START_TIMEOUT
    while s.rest is None or s.grpc is None:
        if not s.alive():
            s.died("exited before it was ready")
        if time.time() > deadline:
            s.died("printed no listening addresses")
        for line in open(log_path):
            if line.startswith("podium: grpc listening on "):
                s.grpc = line.split()[-1]
            elif line.startswith("podium: listening on "):
                s.rest = line.split()[-1]
        time.sleep(0.1)
    s.wait_ready(MODELS)
    version = subprocess.run([PODIUM, "--version"], capture_output=True, text=True).stdout.strip()
    s.ran = (f"{version}, release build; ONNX Runtime (Rust `ort`, {ort_version()}), {INSTANCES} inference "
             f"threads with one session each, 1 intra-op thread")
    return s


def ort_version():
    try:
        return "libonnxruntime " + open(os.path.join(ROOT, ".ort", "VERSION")).read().strip()
    except OSError:
        return "libonnxruntime"


def start_peer(name, work):
    """A Python peer (loadtest/peers/NAME_server.py) in its virtualenv, ready.

    A failed start is tried again (BENCH_START_TRIES in all): on a busy
    machine PyTriton's model instances sometimes miss each other's hand-shake
    socket at load time, and the model then fails to load.
    """
    python = os.path.join(VENVS, name, "bin", "python")
    if not os.path.exists(python):
        fail(f"no virtualenv for {name} at {os.path.join(VENVS, name)}; run loadtest/peers.sh, which makes it")
    for attempt in range(1, START_TRIES + 1):
        http_port, grpc_port = free_port(), free_port()
        argv = [python, os.path.join(HERE, f"{name}_server.py"), "--http-port", str(http_port),
                "--grpc-port", str(grpc_port), "--instances", str(INSTANCES)]
        if name == "triton":
            argv += ["--metrics-port", str(free_port()), "--workspace",
                     os.path.join(work, f"triton-workspace-{time.monotonic_ns()}")]  # PyTriton makes it
        for m in MODELS:
            argv += ["--model", f"{m}=models/{m}/v1.onnx"]
        env = {**ENV, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        if name == "triton" and ENV.get("BENCH_TRITON_TENSORSTORE", "0") != "1":
            # PyTriton's shared-memory tensor store starts a process per model
            # at load time, which on a busy machine outlasts the one second
            # the model's other instances wait for it; base64 over ZeroMQ
            # starts at once and costs little on tensors of a few hundred bytes.
            env["PYTRITON_NO_TENSORSTORE"] = "1"
        s = Server(name, argv, os.path.join(work, f"{name}-{attempt}.log"), env=env)
        s.rest, s.grpc = f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{grpc_port}"
        try:
            s.wait_ready(MODELS)
        except StartFailed as e:
            if attempt == START_TRIES:
                fail(f"{name} did not start in {START_TRIES} tries (BENCH_START_TRIES); the last: {e}")
            log(f"{name} did not start (try {attempt} of {START_TRIES}), trying again: {str(e).splitlines()[0]}")
            continue
        s.ran = describe_peer(s)
        return s


def describe_peer(s):
    """The server's own account of what it runs (its first `peer: ` log line)
    and the name and version its OIP server metadata (GET /v2) gives."""
    said = next((line[len("peer: "):].strip() for line in open(s.log_path) if line.startswith("peer: ")), "?")
    status, meta = http("GET", f"{s.rest}/v2")
    if status == 200 and isinstance(meta, dict):
        said += f"; GET /v2: {meta.get('name', '?')} {meta.get('version', '?')}"
    return said


# ---------------------------------------------------------------- outputs
def make_input(reference, model, work):
    """An OIP JSON request for MODEL from Podium's metadata, batch 1, seeded values in [-1, 1)."""
    status, meta = http("GET", f"{reference.rest}/v2/models/{model}")
    if status != 200:
        fail(f"GET /v2/models/{model} on Podium answered {status}: {meta}")
    rng = random.Random(f"peers-{model}")
    inputs = []
    for t in meta["inputs"]:
        if t["datatype"] not in ("FP32", "FP64"):
            fail(f"{model}'s input {t['name']} is {t['datatype']}; peers.sh generates only float inputs")
        shape = [1 if d < 0 else d for d in t["shape"]]
        n = math.prod(shape)
        inputs.append({"name": t["name"], "datatype": t["datatype"], "shape": shape,
                       "data": [round(rng.uniform(-1, 1), 6) for _ in range(n)]})
    request = {"inputs": inputs}
    path = os.path.join(work, f"input-{model}.json")
    with open(path, "w") as f:
        json.dump(request, f)
    return request, path


def outputs(server, model, request):
    status, body = http("POST", f"{server.rest}/v2/models/{model}/infer", request)
    if status != 200:
        fail(f"{server.name} answered {status} to {model}'s input: {body}")
    return {o["name"]: o for o in body["outputs"]}


def same(a, b):
    """Why output a differs from b, or None when they are equal within the tolerance."""
    if a["shape"] != b["shape"] or a["datatype"] != b["datatype"]:
        return f"{a['datatype']} {a['shape']} vs {b['datatype']} {b['shape']}"
    for i, (x, y) in enumerate(zip(a["data"], b["data"])):
        if abs(x - y) > ATOL + RTOL * abs(y):
            return f"element {i}: {x} vs {y}"
    return None


def check_outputs(server, model, request, expected):
    got = outputs(server, model, request)
    if set(got) != set(expected):
        fail(f"{server.name} {model} answers outputs {sorted(got)}; Podium answers {sorted(expected)}")
    for name, want in expected.items():
        why = same(got[name], want)
        if why:
            fail(f"{server.name} {model} output {name} differs from Podium's: {why}")
    return sorted(expected)


# ---------------------------------------------------------------- load
def loadtest(server, model, protocol, c, input_path):
    url = server.grpc if protocol == "grpc" else server.rest
    argv = [LOADTEST, "--json", "--quiet", "--url", url, "--protocol", protocol, "-m", model,
            "-c", str(c), "-d", DURATION, "--warmup", WARMUP, "--input", input_path]
    if LOADTEST_CPUS:
        argv += ["--threads", str(knob("BENCH_LOADTEST_CPUS", "", cpu_count, "8-15"))]
    limit = seconds(DURATION) + seconds(WARMUP) + 60
    hz = os.sysconf("SC_CLK_TCK")
    t0, s0 = time.time(), group_ticks(server.proc.pid)
    try:
        out = subprocess.run(pinned(LOADTEST_CPUS, argv), capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        fail(f"podium-loadtest against {server.name} ran past {limit:.0f} s: {' '.join(argv)}")
    cores = (group_ticks(server.proc.pid) - s0) / hz / max(time.time() - t0, 1e-3)
    if out.returncode not in (0, 2):
        fail(f"podium-loadtest against {server.name} failed ({out.returncode}): {' '.join(argv)}\n{out.stderr[-2000:]}")
    return json.loads(out.stdout), cores


def main():
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if "podium" not in PEERS:
        fail(f"BENCH_PEERS={','.join(PEERS)}: name podium (the reference) and any of triton, kserve")
    seconds(DURATION), seconds(WARMUP)  # stop early on a duration podium-loadtest would refuse
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    loadavg = " ".join(open("/proc/loadavg").read().split()[:3])
    log(f"{os.cpu_count()} cores ({cpu_model}), load average {loadavg}; {INSTANCES} instances per server")
    work = tempfile.mkdtemp(prefix="podium-peers-")
    results, ran, checked = [], {}, {}
    try:
        for rnd in range(ROUNDS):
            # Podium first in every round (its outputs are the reference), the peers rotated.
            others = [p for p in PEERS if p != "podium"]
            order = ["podium"] + others[rnd % max(len(others), 1):] + others[:rnd % max(len(others), 1)]
            expected, inputs = {}, {}
            for name in order:
                log(f"round {rnd + 1}/{ROUNDS}: starting {name}")
                try:
                    server = start_podium(work) if name == "podium" else start_peer(name, work)
                except StartFailed as e:
                    fail(str(e))
                ran[name] = server.ran
                for m in MODELS:
                    if name == "podium":
                        request, path = make_input(server, m, work)
                        inputs[m] = (request, path)
                        expected[m] = outputs(server, m, request)
                    else:
                        names = check_outputs(server, m, inputs[m][0], expected[m])
                        checked[(name, m)] = names
                        log(f"  {name} {m}: outputs {', '.join(names)} equal Podium's")
                for m in MODELS:
                    for protocol in PROTOCOLS:
                        for c in LEVELS:
                            report, cores = loadtest(server, m, protocol, c, inputs[m][1])
                            errors = sum(report["errors"].values())
                            results.append({"round": rnd, "server": name, "model": m, "protocol": protocol, "c": c,
                                            "rps": report["throughput"], "p50": report["latency"]["p50_us"],
                                            "p99": report["latency"]["p99_us"], "errors": errors,
                                            "server_cores": cores, "report": report})
                            log(f"  {name} {m} {protocol} c={c}: {report['throughput']:,.0f} req/s, "
                                f"p50 {report['latency']['p50_us']:,.0f} µs, "
                                f"p99 {report['latency']['p99_us']:,.0f} µs, errors {errors}, server cores {cores:.2f}")
                server.stop()
    except BaseException:
        stop_all()
        log(f"servers' logs kept in {work}")
        raise
    stop_all()
    shutil.rmtree(work, ignore_errors=True)
    run_settings = settings(cpu_model, loadavg)
    summary(run_settings, results, ran, checked)
    if ENV.get("BENCH_JSON"):
        with open(ENV["BENCH_JSON"], "w") as f:
            json.dump({"settings": run_settings, "ran": ran, "results": results}, f, indent=1)
    log(f"done in {time.time() - began:.0f} s")


def settings(cpu_model, loadavg):
    """The run's settings, for the summary and BENCH_JSON."""
    return {"rounds": ROUNDS, "duration": DURATION, "warmup": WARMUP, "levels": LEVELS, "protocols": PROTOCOLS,
            "models": MODELS, "servers": PEERS, "server_cpus": SERVER_CPUS, "loadtest_cpus": LOADTEST_CPUS,
            "instances": INSTANCES, "cores": os.cpu_count(), "cpu_model": cpu_model, "loadavg": loadavg,
            "atol": ATOL, "rtol": RTOL}


if __name__ == "__main__":
    main()
