"""Drives the demo image's container for scripts/test-container.sh.

The container runs with --network=host, its listeners on 127.0.0.1 ports.
Checks, in order, failing with a message that names what went wrong:
1. it becomes ready (its registry was baked into the image);
2. a real inference with tritonclient, over REST and over gRPC, answers what
   onnxruntime computes in-process on the same .onnx file (bit for bit);
3. SIGTERM while requests are in flight: every request the server accepted
   before the signal is answered 200 (the caller then checks exit status 0).

Usage: check_container.py HTTP_PORT GRPC_PORT CONTAINER (the docker command
in $DOCKER, e.g. "/usr/bin/docker -H unix:///…/docker.sock").
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
DEADLINE_S = 120.0
DRAIN_REQUESTS = 4
DRAIN_BATCH = 16384


def fail(message: str) -> None:
    print(f"check_container: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(http_port: int) -> None:
    url = f"http://{HOST}:{http_port}/v2/health/ready"
    start = time.monotonic()
    last = "no answer"
    while time.monotonic() - start < DEADLINE_S:
        try:
            status, body = get(url)
            if status == 200:
                return
            last = f"HTTP {status}: {body[:300]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.2)
    fail(f"{url} not ready within {DEADLINE_S:.0f} s (last: {last})")


def check_inference(http_port: int, grpc_port: int) -> None:
    x = np.random.default_rng(7).standard_normal((4, 30)).astype(np.float32)
    want = ort.InferenceSession(str(REPO / "models/fraud/v1.onnx")).run(None, {"input": x})
    want = dict(zip(["label", "probabilities"], want))

    rest = httpclient.InferenceServerClient(f"{HOST}:{http_port}")
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    result = rest.infer("fraud", [inp], model_version="champion")
    compare("REST", result, want)

    grpc = grpcclient.InferenceServerClient(f"{HOST}:{grpc_port}")
    inp = grpcclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = grpc.infer("fraud", [inp], model_version="champion")
    compare("gRPC", result, want)
    print("check_container: fraud@champion over REST and gRPC matches onnxruntime", file=sys.stderr)


def compare(transport: str, result, want: dict) -> None:
    for name, expected in want.items():
        got = result.as_numpy(name)
        if got is None or got.shape != expected.shape or got.tobytes() != expected.tobytes():
            fail(f"{transport}: output {name} is {got!r}, onnxruntime says {expected!r}")


def mlp_in_flight(http_port: int) -> int:
    status, body = get(f"http://{HOST}:{http_port}/admin/status")
    if status != 200:
        fail(f"GET /admin/status answered HTTP {status}: {body[:300]!r}")
    slots = json.loads(body).get("slots", [])
    return sum(s.get("in_flight", 0) for s in slots if s.get("model") == "mlp")


def check_drain(http_port: int, container: str, docker: list[str]) -> None:
    """Heavy requests on the container's one inference thread, SIGTERM once
    all are accepted; each must still be answered in full."""
    x = np.full((DRAIN_BATCH, 64), 0.25, dtype=np.float32)
    results: list[str | None] = [None] * DRAIN_REQUESTS
    done = [threading.Event() for _ in range(DRAIN_REQUESTS)]

    def send(i: int) -> None:
        try:
            client = httpclient.InferenceServerClient(f"{HOST}:{http_port}", network_timeout=120)
            inp = httpclient.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=True)
            out = client.infer("mlp", [inp]).as_numpy("logits")
            results[i] = "ok" if out is not None and out.shape == (DRAIN_BATCH, 10) else f"logits {out!r}"
        except Exception as e:  # any failure of an accepted request is the finding
            results[i] = f"{type(e).__name__}: {e}"
        finally:
            done[i].set()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(DRAIN_REQUESTS)]
    for t in threads:
        t.start()
    start = time.monotonic()
    while True:
        answered = sum(e.is_set() for e in done)
        if mlp_in_flight(http_port) + answered == DRAIN_REQUESTS:
            break
        if time.monotonic() - start > DEADLINE_S:
            fail("the drain requests were not all accepted in time")
        time.sleep(0.01)
    in_flight = DRAIN_REQUESTS - sum(e.is_set() for e in done)
    subprocess.run([*docker, "kill", "--signal", "TERM", container], check=True, capture_output=True)
    for t in threads:
        t.join(DEADLINE_S)
    failed = [r for r in results if r != "ok"]
    if failed:
        fail(f"{len(failed)} of {DRAIN_REQUESTS} accepted requests failed on SIGTERM: {failed}")
    print(
        f"check_container: SIGTERM with {in_flight} requests in flight: all {DRAIN_REQUESTS} answered",
        file=sys.stderr,
    )


def main() -> None:
    http_port, grpc_port, container = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    docker = shlex.split(os.environ["DOCKER"])
    wait_ready(http_port)
    check_inference(http_port, grpc_port)
    check_drain(http_port, container, docker)


if __name__ == "__main__":
    main()
