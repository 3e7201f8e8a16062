"""Podium served from a real MLflow Model Registry.

A real ``mlflow server`` (SQLite backend store, artifact proxy, 127.0.0.1)
runs for this module in its own process group; versions are registered with
MLflow's Python client (``mlflow.onnx.log_model(..., registered_model_name=)``)
and aliases moved with ``MlflowClient.set_registered_model_alias``, exactly
as a training pipeline would. ``podium serve --registry mlflow+http://...``
must follow every move with no failed request, keep serving through an MLflow
outage and restart, write alias changes through to MLflow, reuse its artifact
cache, and name each problem clearly.

Registered here:
  fraud v1  models/fraud/v1.onnx, through the artifact proxy (mlflow-artifacts:/)
  fraud v2  models/fraud/v2.onnx, through the artifact proxy
  fraud v3  models/fraud/v1.onnx, in an experiment with a local artifact path (file://)
  nonnx v1  an MLflow model without an onnx flavor
Aliases at the start: fraud champion=1, challenger=2; nonnx champion=1.

Set PODIUM_FLIP_REPORT=FILE to write the measured alias-flip times as JSON
(PODIUM_MLFLOW_POLL_MS changes Podium's poll interval, PODIUM_FLIP_COUNT the
number of flips). Only then does each flip start at a random point of the poll
cycle, so the times are not locked to the test's own rhythm.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import mlflow.onnx
import numpy as np
import onnx
import pytest
import requests
from mlflow import MlflowClient

from conftest import HOST, PODIUM_BIN, run_podium

START_DEADLINE_S = 120.0
FOLLOW_DEADLINE_S = 30.0
HTTP_TIMEOUT_S = 30.0
POLL_MS = os.environ.get("PODIUM_MLFLOW_POLL_MS", "300")
FRAUD_FEATURES = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for(what: str, check, deadline_s: float = FOLLOW_DEADLINE_S, every_s: float = 0.05):
    """Polls `check()` until it returns something truthy; fails after the deadline."""
    deadline = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (requests.RequestException, AssertionError) as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every_s)
    pytest.fail(f"{what}: not seen within {deadline_s}s (last: {last!r})")


class MlflowServer:
    """`mlflow server` in its own process group (it starts worker processes),
    stopped as a whole; restartable on the same port and stores.

    store_args replace the artifact store flags (default: the artifact proxy
    over root/artifacts); tls=(certfile, keyfile, cafile) serves HTTPS."""

    def __init__(self, root: Path, store_args: list[str] | None = None, tls: tuple | None = None):
        self.root = root
        self.port = free_port()
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://{HOST}:{self.port}"
        self.store_args = store_args or ["--artifacts-destination", str(root / "artifacts")]
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.root / f"mlflow-{self.starts}.log", "wb")
        env = dict(os.environ)
        # the background job runner (huey consumers) is not needed for the registry
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "mlflow", "server",
                "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                *self.store_args,
                "--host", HOST, "--port", str(self.port),
                "--workers", "1",
                *(["--uvicorn-opts", f"--ssl-certfile {self.tls[0]} --ssl-keyfile {self.tls[1]}"] if self.tls else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                verify = str(self.tls[2]) if self.tls else True
                if requests.get(self.url + "/health", timeout=2, verify=verify).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"mlflow server did not answer /health:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stops the whole process group and waits until every member is gone."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                self.proc.poll()
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                continue
            break
        self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self, limit: int = 4000) -> str:
        log = self.root / f"mlflow-{self.starts}.log"
        return log.read_text(errors="replace")[-limit:] if log.exists() else ""


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory, model_paths):
    root = tmp_path_factory.mktemp("mlflow")
    server = MlflowServer(root)
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        server.start()
        os.environ["MLFLOW_TRACKING_URI"] = server.url
        mlflow.set_tracking_uri(server.url)
        register_fixtures(server, root, model_paths)
        yield server
    finally:
        server.stop()
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def log_onnx(path: Path, name: str, experiment_id: str | None = None) -> int:
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.onnx.log_model(
            onnx.load(str(path)),
            name="model",
            registered_model_name=name,
            # skips inferring requirements (it imports the model in a subprocess)
            pip_requirements=["onnxruntime"],
        )
    return int(info.registered_model_version)


def register_fixtures(server: MlflowServer, root: Path, model_paths) -> None:
    client = MlflowClient(server.url)
    assert log_onnx(model_paths["fraud_v1"], "fraud") == 1
    assert log_onnx(model_paths["fraud_v2"], "fraud") == 2
    # An experiment whose artifacts the client writes to a local path: the
    # version's download URI is file://..., read by Podium from disk.
    local = mlflow.create_experiment("local-artifacts", artifact_location=(root / "local").as_uri())
    assert log_onnx(model_paths["fraud_v1"], "fraud", experiment_id=local) == 3
    # An MLflow model without an onnx flavor.
    client.create_registered_model("nonnx")
    with mlflow.start_run() as run:
        mlflow.log_text(
            "artifact_path: model\nflavors:\n  python_function:\n    loader_module: mlflow.sklearn\n"
            "  sklearn:\n    pickled_model: model.pkl\n",
            "model/MLmodel",
        )
    client.create_model_version("nonnx", source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("fraud", "champion", "1")
    client.set_registered_model_alias("fraud", "challenger", "2")
    client.set_registered_model_alias("nonnx", "champion", "1")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def base(srv) -> str:
    return f"http://{HOST}:{srv.port}"


def fraud_body(x: np.ndarray) -> dict:
    return {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}


X = np.random.default_rng(7).standard_normal((1, FRAUD_FEATURES)).astype(np.float32)


def infer(srv, path: str = "/v2/models/fraud/infer", session=requests) -> requests.Response:
    return session.post(base(srv) + path, json=fraud_body(X), timeout=HTTP_TIMEOUT_S)


def status(srv) -> dict:
    r = requests.get(base(srv) + "/admin/status", timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 200, r.text
    return r.json()


def slot(st: dict, model: str, alias: str) -> dict:
    for s in st["slots"]:
        if s["model"] == model and s["alias"] == alias:
            return s
    raise AssertionError(f"no slot {model}@{alias} in {st['slots']}")


def metric(srv, name: str, **labels) -> float | None:
    text = requests.get(base(srv) + "/metrics", timeout=HTTP_TIMEOUT_S).text
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{.*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return None


def podium_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(PODIUM_BIN), *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


@dataclass
class Loop:
    """Predictions sent back to back from a few threads until stopped:
    (sent, received, HTTP status, model_version or error text)."""

    srv: object
    threads: int = 4
    records: list = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self):
        self.workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for w in self.workers:
            w.start()
        return self

    def _run(self):
        session = requests.Session()
        deadline = time.monotonic() + 300  # bounded even if the test forgets to stop it
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                r = infer(self.srv, session=session)
                outcome = (r.status_code, r.json().get("model_version") if r.status_code == 200 else r.text)
            except requests.RequestException as e:
                outcome = (0, str(e))
            with self.lock:
                self.records.append((sent, time.monotonic(), *outcome))

    def __exit__(self, *exc):
        self.stop_event.set()
        for w in self.workers:
            w.join(timeout=HTTP_TIMEOUT_S)

    def snapshot(self) -> list:
        with self.lock:
            return list(self.records)

    def failures(self) -> list:
        return [r for r in self.snapshot() if r[2] != 200]

    def first_served_by(self, version: str, after: float):
        for sent, received, code, v in sorted(self.snapshot(), key=lambda r: r[1]):
            if received >= after and code == 200 and v == version:
                return received
        return None


def podium(mlflow_server, tmp_path, *extra: str, cache: Path | None = None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return run_podium(
        f"mlflow+http://{HOST}:{mlflow_server.port}",
        tmp_path,
        "--cache-dir", str(cache or tmp_path / "cache"),
        "--poll-interval-ms", POLL_MS,
        *extra,
    )


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------


def test_serves_mlflow_aliases_and_lists_the_registry(mlflow_server, tmp_path, ort_run):
    with podium(mlflow_server, tmp_path, "--models", "fraud") as srv:
        want = {"champion": "fraud_v1", "challenger": "fraud_v2"}
        for alias, key in want.items():
            r = infer(srv, f"/v2/models/fraud/versions/{alias}/infer")
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["model_version"] == {"champion": "1", "challenger": "2"}[alias]
            probs = next(o for o in body["outputs"] if o["name"] == "probabilities")
            expected = ort_run(key, {"input": X})["probabilities"]
            np.testing.assert_allclose(np.array(probs["data"]).reshape(expected.shape), expected, rtol=1e-6)
        # v3's artifacts are on a local path (file://), not behind the proxy
        r = infer(srv, "/v2/models/fraud/versions/3/infer")
        assert r.status_code == 200 and r.json()["model_version"] == "3", r.text

        st = status(srv)
        assert st["registry"]["kind"] == "mlflow"
        assert st["registry"]["state"] == "ok"
        assert st["registry"]["location"] == mlflow_server.url
        assert slot(st, "fraud", "champion")["serving_version"] == 1
        assert requests.get(base(srv) + "/v2/health/ready", timeout=10).status_code == 200
        assert metric(srv, "podium_registry_up", kind="mlflow") == 1.0

    out = podium_cli("--registry", f"mlflow+http://{HOST}:{mlflow_server.port}", "models", "list")
    assert out.returncode == 0, out.stderr
    assert "fraud\tversions: 1,2,3\taliases: challenger=2,champion=1" in out.stdout, out.stdout
    assert "nonnx\tversions: 1\taliases: champion=1" in out.stdout, out.stdout


def test_alias_moves_in_mlflow_are_followed_with_no_failed_request(mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server.url)
    flips = ["2", "3", "1", "2", "1"]
    measuring = bool(os.environ.get("PODIUM_FLIP_REPORT"))
    if measuring:
        flips = (flips * 10)[: int(os.environ.get("PODIUM_FLIP_COUNT", "15"))]
    times_ms = []
    with podium(mlflow_server, tmp_path, "--models", "fraud") as srv:
        assert infer(srv).json()["model_version"] == "1"
        with Loop(srv) as loop:
            wait_for("the request loop answering", lambda: len(loop.snapshot()) > 10)
            for version in flips:
                if measuring:
                    # start the flip at a random point of the poll cycle
                    time.sleep(random.uniform(0, int(POLL_MS) / 1000))
                client.set_registered_model_alias("fraud", "champion", version)
                moved = time.monotonic()
                first = wait_for(
                    f"champion -> v{version} served",
                    lambda: loop.first_served_by(version, moved),
                )
                times_ms.append((first - moved) * 1000)
                # once the new version answered, nothing sent later gets the old one
                wait_for("a few more answers", lambda: sum(r[0] > first for r in loop.snapshot()) >= 20)
                late = [r for r in loop.snapshot() if r[0] > first and r[3] != version]
                assert not late, f"after v{version} answered, later requests got {late[:5]}"
        assert loop.failures() == [], loop.failures()[:5]
        assert len(loop.snapshot()) > 100
        history = requests.get(base(srv) + "/admin/history?model=fraud", timeout=10).json()["events"]
        swaps = sorted(
            (e["unix_ms"], e["to_version"])
            for e in history
            if e["action"] == "swap" and e["alias"] == "champion" and e["result"] == "ok"
        )
        assert [v for _, v in swaps][-len(flips):] == [int(v) for v in flips], swaps
    client.set_registered_model_alias("fraud", "champion", "1")
    report = {
        "what": "set_registered_model_alias returned -> first response served by the new version",
        "poll_interval_ms": int(POLL_MS),
        "flips": len(times_ms),
        "times_ms": [round(t, 1) for t in times_ms],
        "median_ms": round(statistics.median(times_ms), 1),
        "min_ms": round(min(times_ms), 1),
        "max_ms": round(max(times_ms), 1),
    }
    print("\nalias flip:", json.dumps(report))
    if measuring:
        Path(os.environ["PODIUM_FLIP_REPORT"]).write_text(json.dumps(report, indent=2))


def test_mlflow_outage_and_restart_fail_no_prediction(mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server.url)
    with podium(mlflow_server, tmp_path, "--models", "fraud") as srv:
        with Loop(srv) as loop:
            wait_for("the request loop answering", lambda: len(loop.snapshot()) > 10)
            mlflow_server.stop()
            st = wait_for("registry degraded", lambda: (s := status(srv))["registry"]["state"] == "degraded" and s)
            assert "cannot connect to MLflow" in st["registry"]["error"], st["registry"]
            assert metric(srv, "podium_registry_up", kind="mlflow") == 0.0
            # still ready, still serving what it had
            assert requests.get(base(srv) + "/v2/health/ready", timeout=10).status_code == 200
            assert slot(st, "fraud", "champion")["serving_version"] == 1
            # a write through the admin API says MLflow is the problem
            r = requests.put(base(srv) + "/admin/models/fraud/aliases/champion", json={"version": 2}, timeout=60)
            assert r.status_code == 502, r.text
            assert "MLflow" in r.json()["error"], r.text
            n = len(loop.snapshot())
            wait_for("predictions during the outage", lambda: len(loop.snapshot()) > n + 50)

            mlflow_server.start()
            wait_for("registry ok again", lambda: status(srv)["registry"]["state"] == "ok")
            client.set_registered_model_alias("fraud", "champion", "2")
            moved = time.monotonic()
            wait_for("champion -> v2 after the restart", lambda: loop.first_served_by("2", moved))
        assert loop.failures() == [], loop.failures()[:5]
    client.set_registered_model_alias("fraud", "champion", "1")


def test_cli_and_admin_api_write_through_to_mlflow(mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server.url)
    registry = f"mlflow+http://{HOST}:{mlflow_server.port}"
    with podium(mlflow_server, tmp_path, "--models", "fraud") as srv:
        # the CLI writes MLflow; the running server follows
        out = podium_cli("--registry", registry, "alias", "set", "fraud", "candidate", "3")
        assert out.returncode == 0, out.stderr
        assert client.get_model_version_by_alias("fraud", "candidate").version == "3"
        wait_for("candidate served", lambda: infer(srv, "/v2/models/fraud/versions/candidate/infer").status_code == 200)
        assert podium_cli("--registry", registry, "alias", "get", "fraud", "candidate").stdout.strip() == "3"

        # the admin API loads and checks the version, then writes MLflow
        r = requests.put(base(srv) + "/admin/models/fraud/aliases/champion", json={"version": 2}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["swapped"] is True
        assert client.get_model_version_by_alias("fraud", "champion").version == "2"
        assert infer(srv).json()["model_version"] == "2"

        # rollback through the CLI and the running server
        out = podium_cli("alias", "rollback", "fraud", "champion", "--server", base(srv))
        assert out.returncode == 0, out.stderr
        assert client.get_model_version_by_alias("fraud", "champion").version == "1"

        out = podium_cli("--registry", registry, "alias", "delete", "fraud", "candidate")
        assert out.returncode == 0, out.stderr
        assert "candidate" not in client.get_registered_model("fraud").aliases
        wait_for("candidate unserved", lambda: infer(srv, "/v2/models/fraud/versions/candidate/infer").status_code == 404)

    out = podium_cli("--registry", registry, "alias", "set", "fraud", "champion", "9")
    assert out.returncode != 0 and "version=9" in out.stderr and "not found" in out.stderr, out.stderr
    out = podium_cli("--registry", registry, "models", "register", "fraud", str(PODIUM_BIN))
    assert out.returncode != 0 and "mlflow.onnx.log_model" in out.stderr, out.stderr


def test_errors_name_the_problem_and_the_fix(mlflow_server, tmp_path):
    # every registered model is served: nonnx has no onnx flavor
    with podium(mlflow_server, tmp_path) as srv:
        err = wait_for("nonnx refused", lambda: slot(status(srv), "nonnx", "champion")["last_error"])
        assert "no ONNX flavor" in err and "sklearn" in err and "mlflow.onnx.log_model" in err, err
        r = requests.get(base(srv) + "/v2/health/ready", timeout=10)
        assert r.status_code == 503 and "nonnx" in r.text, r.text
        # fraud serves all the same
        assert infer(srv).status_code == 200
        r = infer(srv, "/v2/models/fraud/versions/staging/infer")
        assert r.status_code == 404 and '"staging"' in r.json()["error"], r.text
        r = infer(srv, "/v2/models/fraud/versions/9/infer")
        assert r.status_code == 404 and "no version 9" in r.json()["error"], r.text

    # a watched model MLflow does not have
    with podium(mlflow_server, tmp_path / "ghost", "--models", "fraud,ghost") as srv:
        r = requests.get(base(srv) + "/v2/health/ready", timeout=10)
        assert r.status_code == 503 and 'no registered model \\"ghost\\"' in r.text, r.text
        assert infer(srv).status_code == 200

    # nothing listening where MLflow should be: the server starts, unready, and says why
    port = free_port()
    with run_podium(
        f"mlflow+http://{HOST}:{port}", tmp_path, "--cache-dir", str(tmp_path / "c2"),
        "--registry-retries", "0",
    ) as srv:
        st = status(srv)
        assert st["registry"]["state"] == "degraded", st["registry"]
        assert f"cannot connect to MLflow at http://{HOST}:{port}" in st["registry"]["error"]
        r = requests.get(base(srv) + "/v2/health/ready", timeout=10)
        assert r.status_code == 503 and "cannot connect to MLflow" in r.text, r.text

    # the same with endpoints configured: an unreachable MLflow does not fail
    # the configuration check (that would be a crash loop while MLflow is down)
    (tmp_path / "c3").mkdir()
    config = tmp_path / "endpoints.toml"
    config.write_text('[[endpoint]]\nname = "fraud-ab"\nmodel = "fraud"\narms = [{ alias = "champion", weight = 1 }]\n')
    with run_podium(
        f"mlflow+http://{HOST}:{port}", tmp_path / "c3", "--cache-dir", str(tmp_path / "c3" / "cache"),
        "--registry-retries", "0", "--config", str(config),
    ) as srv:
        r = requests.get(base(srv) + "/v2/health/ready", timeout=10)
        assert r.status_code == 503 and "cannot connect to MLflow" in r.text, r.text
    # but a model that MLflow says does not exist still stops start-up
    config.write_text(config.read_text().replace('model = "fraud"', 'model = "ghost"'))
    out = subprocess.run(
        [str(PODIUM_BIN), "--registry", f"mlflow+http://{HOST}:{mlflow_server.port}", "serve",
         "--listen", f"{HOST}:0", "--grpc-listen", f"{HOST}:0", "--cache-dir", str(tmp_path / "c4"),
         "--config", str(config)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert out.returncode != 0 and 'model "ghost" is not in the registry' in out.stderr, out.stderr


def test_restart_reuses_the_cache_and_never_loads_a_damaged_file(mlflow_server, tmp_path):
    cache = tmp_path / "cache"
    with podium(mlflow_server, tmp_path / "first", "--models", "fraud", cache=cache) as srv:
        assert metric(srv, "podium_registry_artifacts_total", result="downloaded") == 2.0
    files = {p.parent.name: p for p in cache.rglob("model.onnx")}
    assert set(files) == {"1", "2"}, files
    # v2's cached copy is damaged (cut short): it may not be loaded
    data = files["2"].read_bytes()
    files["2"].write_bytes(data[: len(data) // 2])

    with podium(mlflow_server, tmp_path / "second", "--models", "fraud", cache=cache) as srv:
        assert metric(srv, "podium_registry_artifacts_total", result="cached") == 1.0
        assert metric(srv, "podium_registry_artifacts_total", result="downloaded") == 1.0
        r = infer(srv, "/v2/models/fraud/versions/challenger/infer")
        assert r.status_code == 200 and r.json()["model_version"] == "2", r.text
    assert files["2"].read_bytes() == data


def test_live_while_the_first_registry_read_hangs(tmp_path):
    # an MLflow host that takes connections and never answers (blackholed):
    # the server answers at once, live and not ready, instead of only after
    # the first registry read gives up
    silent = socket.socket()
    silent.bind((HOST, 0))
    silent.listen(16)  # never accepted: connections wait in the backlog
    port = free_port()
    proc = subprocess.Popen(
        [
            str(PODIUM_BIN),
            "--registry", f"mlflow+http://{HOST}:{silent.getsockname()[1]}",
            "--cache-dir", str(tmp_path / "cache"),
            "--registry-timeout-secs", "600", "--registry-retries", "0",
            "serve", "--listen", f"{HOST}:{port}", "--grpc-listen", f"{HOST}:0",
        ],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "stderr.log", "wb"),
    )
    try:
        url = f"http://{HOST}:{port}"
        wait_for("live", lambda: requests.get(url + "/v2/health/live", timeout=5).status_code == 200,
                 deadline_s=START_DEADLINE_S, every_s=0.2)
        r = requests.get(url + "/v2/health/ready", timeout=5)
        assert r.status_code == 503 and "has not been read yet" in r.text, r.text
        # a request before the first read is "try again", not "no such model"
        r = requests.post(url + "/v2/models/fraud/infer", json=fraud_body(X), timeout=5)
        assert r.status_code == 503 and "not been read yet" in r.text, r.text
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(timeout=30)
        silent.close()
