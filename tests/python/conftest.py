"""Session fixtures for the tritonclient-based black-box tests of Podium.

The suite drives the real `podium` binary as a user would:

1. builds a throw-away registry with the CLI
   (``podium --registry DIR models register ...`` / ``alias set ...``),
2. starts ``podium --registry DIR serve --listen 127.0.0.1:0`` and waits for the
   ``podium: listening on http://127.0.0.1:PORT`` line on its stdout,
3. hands the port to the tests, and stops the server when the session ends.

Environment:
  PODIUM_BIN         the podium binary (default: <repo>/target/debug/podium)
  PODIUM_MODELS_DIR  where the .onnx fixtures live (default: <repo>/models)
"""

from __future__ import annotations

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
    proc: subprocess.Popen
    stderr_path: Path
    registry: Path

    @property
    def url(self) -> str:
        """host:port, the form tritonclient wants (no scheme)."""
        return f"{HOST}:{self.port}"

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


@pytest.fixture(scope="session")
def registry(tmp_path_factory, model_paths) -> Path:
    if not PODIUM_BIN.is_file() or not os.access(PODIUM_BIN, os.X_OK):
        pytest.fail(
            f"podium binary not found at {PODIUM_BIN}: run `cargo build` or set PODIUM_BIN"
        )
    reg = tmp_path_factory.mktemp("registry")
    for name, key, expected_version, aliases in REGISTRATIONS:
        out = _run_cli("--registry", str(reg), "models", "register", name, str(model_paths[key]))
        lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
        assert lines, f"`models register {name}` printed nothing on stdout"
        assert lines[-1] == str(expected_version), (
            f"`models register {name} {model_paths[key].name}` printed {out!r}, "
            f"expected the new version {expected_version}"
        )
        for alias in aliases:
            _run_cli("--registry", str(reg), "alias", "set", name, alias, str(expected_version))
    return reg


def _drain(stream, lines: "queue.Queue[str | None]") -> None:
    try:
        for line in iter(stream.readline, ""):
            lines.put(line)
    finally:
        lines.put(None)  # EOF marker


@pytest.fixture(scope="session")
def server(registry, tmp_path_factory):
    logdir = tmp_path_factory.mktemp("server")
    stderr_path = logdir / "stderr.log"
    stderr_file = open(stderr_path, "wb")
    env = dict(os.environ)
    env.pop("PODIUM_REGISTRY", None)  # the flag below is the single source of truth
    proc = subprocess.Popen(
        [str(PODIUM_BIN), "--registry", str(registry), "serve", "--listen", f"{HOST}:0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        text=True,
        bufsize=1,
        env=env,
    )
    lines: "queue.Queue[str | None]" = queue.Queue()
    # The reader thread keeps draining stdout for the whole session so that a
    # chatty server can never block on a full pipe.
    threading.Thread(target=_drain, args=(proc.stdout, lines), daemon=True).start()

    srv = None
    seen: list[str] = []
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    try:
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
            m = READY_LINE.match(line)
            if m:
                srv = PodiumServer(int(m.group(1)), proc, stderr_path, registry)
        if srv is None:
            state = (
                f"exited with {proc.returncode}"
                if proc.poll() is not None
                else f"still running but silent after {STARTUP_DEADLINE_S}s"
            )
            stderr_file.flush()
            pytest.fail(
                f"podium serve {state}; never printed the listening line.\n"
                f"stdout:\n" + "\n".join(seen) + "\n"
                f"stderr:\n{stderr_path.read_text(errors='replace')[-6000:]}"
            )
        assert 0 < srv.port < 65536
        yield srv
        # The server must have survived everything the suite threw at it.
        assert proc.poll() is None, (
            f"podium serve died during the session (exit {proc.returncode}).\n"
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
def client(server):
    c = httpclient.InferenceServerClient(
        url=server.url, connection_timeout=10.0, network_timeout=30.0
    )
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
