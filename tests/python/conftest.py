"""Session fixtures for the tritonclient-based black-box tests of Podium.

The suite drives the real `podium` binary as a user would:

1. builds a throw-away registry with the CLI
   (``podium --registry DIR models register ...`` / ``alias set ...``),
2. starts ``podium --registry DIR serve --listen 127.0.0.1:0 --grpc-listen
   127.0.0.1:0`` and waits for the two lines it prints on stdout, in this order:
   ``podium: grpc listening on http://127.0.0.1:PORT`` (OIP gRPC) and
   ``podium: listening on http://127.0.0.1:PORT`` (OIP REST),
3. hands both ports to the tests (fixtures ``server``/``client`` for REST,
   ``grpc_url``/``grpc_client`` for gRPC), and stops the server when the
   session ends.

Environment:
  PODIUM_BIN         the podium binary (default: <repo>/target/debug/podium)
  PODIUM_MODELS_DIR  where the .onnx fixtures live (default: <repo>/models)
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient

REPO = Path(__file__).resolve().parents[2]
PODIUM_BIN = Path(os.environ.get("PODIUM_BIN", REPO / "target" / "debug" / "podium"))
MODELS_DIR = Path(os.environ.get("PODIUM_MODELS_DIR", REPO / "models"))

HOST = "127.0.0.1"
READY_LINE = re.compile(r"^podium: listening on http://127\.0\.0\.1:(\d+)$")
GRPC_READY_LINE = re.compile(r"^podium: grpc listening on http://127\.0\.0\.1:(\d+)$")
STARTUP_DEADLINE_S = 60.0
CLI_TIMEOUT_S = 60.0

# name -> file, relative to MODELS_DIR
MODEL_FILES = {
    "fraud_v1": "fraud/v1.onnx",
    "fraud_v2": "fraud/v2.onnx",
    "mlp_v1": "mlp/v1.onnx",
    "alltypes": "fixtures/alltypes.onnx",
}

# (registry model name, file key, expected version, aliases pointing at it)
REGISTRATIONS = [
    ("fraud", "fraud_v1", 1, ["champion"]),
    ("fraud", "fraud_v2", 2, ["challenger"]),
    ("mlp", "mlp_v1", 1, ["champion"]),
    ("alltypes", "alltypes", 1, ["champion"]),
]


@dataclass
class PodiumServer:
    port: int
    grpc_port: int
    proc: subprocess.Popen
    stderr_path: Path
    registry: Path

    @property
    def url(self) -> str:
        """REST host:port, the form tritonclient wants (no scheme)."""
        return f"{HOST}:{self.port}"

    @property
    def grpc_url(self) -> str:
        """gRPC host:port, the form tritonclient.grpc and grpcio want (no scheme)."""
        return f"{HOST}:{self.grpc_port}"

    def stderr_tail(self, limit: int = 4000) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError as e:  # pragma: no cover - diagnostics only
            return f"<could not read server stderr: {e}>"
        return text[-limit:]


def _model_path(key: str) -> Path:
    return MODELS_DIR / MODEL_FILES[key]


def _run_cli(*args: str) -> str:
    cmd = [str(PODIUM_BIN), *args]
    try:
        res = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"`{' '.join(cmd)}` did not finish in {CLI_TIMEOUT_S}s: {e}")
    if res.returncode != 0:
        pytest.fail(
            f"`{' '.join(cmd)}` exited {res.returncode}\n"
            f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
        )
    return res.stdout


@pytest.fixture(scope="session")
def model_paths() -> dict[str, Path]:
    missing = [str(_model_path(k)) for k in MODEL_FILES if not _model_path(k).is_file()]
    if missing:
        pytest.fail(f"model fixtures missing (set PODIUM_MODELS_DIR?): {missing}")
    return {k: _model_path(k) for k in MODEL_FILES}


def build_registry(reg: Path, registrations, model_paths: dict[str, Path]) -> Path:
    """Fills registry directory `reg` with the CLI, as a user would.

    registrations: (model name, file key, expected version, aliases)."""
    if not PODIUM_BIN.is_file() or not os.access(PODIUM_BIN, os.X_OK):
        pytest.fail(
            f"podium binary not found at {PODIUM_BIN}: run `cargo build` or set PODIUM_BIN"
        )
    for name, key, expected_version, aliases in registrations:
        register_model(reg, name, model_paths[key], expected_version)
        for alias in aliases:
            set_alias(reg, name, alias, expected_version)
    return reg


def register_model(reg: Path, name: str, path: Path, expected_version: int) -> None:
    out = _run_cli("--registry", str(reg), "models", "register", name, str(path))
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    assert lines, f"`models register {name}` printed nothing on stdout"
    assert lines[-1] == str(expected_version), (
        f"`models register {name} {path.name}` printed {out!r}, "
        f"expected the new version {expected_version}"
    )


def set_alias(reg: Path, name: str, alias: str, version: int) -> None:
    _run_cli("--registry", str(reg), "alias", "set", name, alias, str(version))


@pytest.fixture(scope="session")
def registry(tmp_path_factory, model_paths) -> Path:
    return build_registry(tmp_path_factory.mktemp("registry"), REGISTRATIONS, model_paths)


def _drain(stream, lines: "queue.Queue[str | None]") -> None:
    try:
        for line in iter(stream.readline, ""):
            lines.put(line)
    finally:
        lines.put(None)  # EOF marker


@contextlib.contextmanager
def run_podium(registry: Path, logdir: Path, *extra_args: str):
    """Runs `podium serve` on ephemeral REST and gRPC ports of 127.0.0.1 until
    the block ends; yields a PodiumServer once both listening lines are out.
    Fails the test if the server died while the block ran."""
    stderr_path = logdir / "stderr.log"
    stderr_file = open(stderr_path, "wb")
    env = dict(os.environ)
    # the flags below are the single source of truth
    for var in ("PODIUM_REGISTRY", "PODIUM_LISTEN", "PODIUM_GRPC_LISTEN"):
        env.pop(var, None)
    proc = subprocess.Popen(
        [
            str(PODIUM_BIN), "--registry", str(registry), "serve",
            "--listen", f"{HOST}:0",
            # without this, serve binds the default 127.0.0.1:8001 and collides
            # with anything else (another suite, a real server) on that port
            "--grpc-listen", f"{HOST}:0",
            *extra_args,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        text=True,
        bufsize=1,
        env=env,
    )
    srv = None
    grpc_port = None
    seen: list[str] = []
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    # everything from here on is inside try/finally, so that the server is
    # stopped whatever goes wrong
    try:
        lines: "queue.Queue[str | None]" = queue.Queue()
        # The reader thread keeps draining stdout for the whole run so that a
        # chatty server can never block on a full pipe.
        threading.Thread(target=_drain, args=(proc.stdout, lines), daemon=True).start()
        # stdout carries, in this order:
        #   podium: grpc listening on http://127.0.0.1:PORT
        #   podium: listening on http://127.0.0.1:PORT
        while srv is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                line = lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                if proc.poll() is not None:
                    break
                continue
            if line is None:  # stdout closed
                proc.wait(timeout=5)
                break
            line = line.rstrip("\r\n")
            seen.append(line)
            m = GRPC_READY_LINE.match(line)
            if m:
                grpc_port = int(m.group(1))
                continue
            m = READY_LINE.match(line)
            if m:
                if grpc_port is None:
                    pytest.fail(
                        "podium serve printed the REST listening line before (or without) "
                        "the gRPC one `podium: grpc listening on http://127.0.0.1:PORT`.\n"
                        "stdout:\n" + "\n".join(seen)
                    )
                srv = PodiumServer(int(m.group(1)), grpc_port, proc, stderr_path, registry)
        if srv is None:
            state = (
                f"exited with {proc.returncode}"
                if proc.poll() is not None
                else f"still running but silent after {STARTUP_DEADLINE_S}s"
            )
            stderr_file.flush()
            pytest.fail(
                f"podium serve {state}; never printed both listening lines.\n"
                f"stdout:\n" + "\n".join(seen) + "\n"
                f"stderr:\n{stderr_path.read_text(errors='replace')[-6000:]}"
            )
        assert 0 < srv.port < 65536
        assert 0 < srv.grpc_port < 65536 and srv.grpc_port != srv.port
        yield srv
        # The server must have survived everything thrown at it.
        assert proc.poll() is None, (
            f"podium serve died (exit {proc.returncode}).\n"
            f"stderr:\n{srv.stderr_tail()}"
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        stderr_file.close()


@pytest.fixture(scope="session")
def server(registry, tmp_path_factory):
    with run_podium(registry, tmp_path_factory.mktemp("server")) as srv:
        yield srv


@pytest.fixture(scope="session")
def client(server):
    c = httpclient.InferenceServerClient(
        url=server.url, connection_timeout=10.0, network_timeout=30.0
    )
    yield c
    c.close()


@pytest.fixture(scope="session")
def grpc_url(server) -> str:
    """The gRPC endpoint as "127.0.0.1:PORT" (no scheme)."""
    return server.grpc_url


@pytest.fixture(scope="session")
def grpc_client(grpc_url):
    # imported here so that the REST suite still runs where only
    # tritonclient[http] is installed
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(url=grpc_url)
    yield c
    c.close()


@pytest.fixture(scope="session")
def ort_session(model_paths):
    """Reference sessions: onnxruntime on the very same .onnx files."""
    cache: dict[str, ort.InferenceSession] = {}

    def get(key: str) -> ort.InferenceSession:
        if key not in cache:
            cache[key] = ort.InferenceSession(
                str(model_paths[key]), providers=["CPUExecutionProvider"]
            )
        return cache[key]

    return get


@pytest.fixture(scope="session")
def ort_run(ort_session):
    """ort_run(key, {input: array}) -> {output name: array}."""

    def run(key: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = ort_session(key)
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feeds)))

    return run
