"""Podium served from the registries users run in production: MLflow behind
HTTPS, with artifacts in S3 and token auth, and a Databricks workspace.

One stand for the module, all on 127.0.0.1:
  - a throwaway CA (made here with `cryptography`) and a server certificate;
  - `moto_server`, an S3-compatible server, with bucket "models";
  - `mlflow server` over HTTPS (uvicorn with the certificate), SQLite backend,
    `--default-artifact-root s3://models/artifacts --no-serve-artifacts`: the
    Python client uploads to S3 itself and MLflow hands out s3:// URIs;
  - a small HTTPS reverse proxy in front of it that checks a bearer token
    (what a production gateway or a Databricks workspace does).

Registered with MLflow's Python client: fraud v1 (models/fraud/v1.onnx) and
v2 (v2.onnx); champion=1.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import mlflow
import numpy as np
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mlflow import MlflowClient

from conftest import HOST, run_podium
from test_mlflow_registry import (
    START_DEADLINE_S,
    MlflowServer,
    base,
    free_port,
    infer,
    log_onnx,
    podium_cli,
    slot,
    status,
    wait_for,
)

TOKEN = "dapi-podium-test-0123456789abcdef"
BUCKET = "models"


# ---------------------------------------------------------------------------
# the stand
# ---------------------------------------------------------------------------


def make_ca_and_server_cert(root: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1/localhost signed by it:
    (server cert, server key, CA cert) as PEM files."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "podium test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlflow")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (root / "server.pem", root / "server-key.pem", root / "ca.pem")
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return paths


class Moto:
    """`moto_server` on a free port of 127.0.0.1."""

    def __init__(self, root: Path):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log = open(root / "moto.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_for(
            "moto_server answering",
            lambda: requests.get(self.url + "/moto-api/", timeout=2).status_code < 500,
            deadline_s=START_DEADLINE_S,
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


class TokenProxy:
    """An HTTPS reverse proxy that forwards to `upstream` only requests with
    `Authorization: Bearer <token>`, and answers 401 (MLflow's error body)
    otherwise. Records every Authorization header it saw."""

    def __init__(self, upstream: str, token: str, cert: Path, key: Path, ca: Path):
        proxy = self
        self.seen: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self):
                auth = self.headers.get("Authorization", "")
                proxy.seen.append(auth)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if auth != f"Bearer {token}":
                    out = json.dumps({"error_code": "UNAUTHENTICATED", "message": "invalid token"}).encode()
                    status, ctype = 401, "application/json"
                else:
                    r = requests.request(
                        self.command, upstream + self.path, data=body, verify=str(ca), timeout=30,
                        headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
                    )
                    out, status = r.content, r.status_code
                    ctype = r.headers.get("Content-Type", "application/json")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PATCH = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"https://{HOST}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Stand:
    def __init__(self, root: Path, certs, moto: Moto, mlflow_server: MlflowServer, proxy: TokenProxy):
        self.root = root
        self.cert, self.key, self.ca = certs
        self.moto = moto
        self.mlflow = mlflow_server
        self.proxy = proxy


STAND_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION",
    "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_TRACKING_TOKEN", "DATABRICKS_HOST", "DATABRICKS_TOKEN",
)


@pytest.fixture(scope="module")
def stand(tmp_path_factory, model_paths):
    root = tmp_path_factory.mktemp("mlflow-tls")
    saved = {name: os.environ.get(name) for name in STAND_ENV}
    certs = make_ca_and_server_cert(root)
    moto = server = proxy = None
    try:
        moto = Moto(root)
        # S3 for the Python client (boto3), MLflow's server and Podium alike.
        os.environ.update(
            AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1",
            MLFLOW_S3_ENDPOINT_URL=moto.url,
        )
        for name in ("MLFLOW_TRACKING_TOKEN", "DATABRICKS_HOST", "DATABRICKS_TOKEN"):
            os.environ.pop(name, None)
        boto3.client("s3", endpoint_url=moto.url).create_bucket(Bucket=BUCKET)
        server = MlflowServer(
            root,
            store_args=["--default-artifact-root", f"s3://{BUCKET}/artifacts", "--no-serve-artifacts"],
            tls=certs,
        )
        server.start()
        os.environ["MLFLOW_TRACKING_URI"] = server.url
        os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] = str(certs[2])
        mlflow.set_tracking_uri(server.url)
        assert log_onnx(model_paths["fraud_v1"], "fraud") == 1
        assert log_onnx(model_paths["fraud_v2"], "fraud") == 2
        MlflowClient(server.url).set_registered_model_alias("fraud", "champion", "1")
        # Logged with its weights in an external data file beside model.onnx.
        assert log_onnx(model_paths["mlp_v1"], "mlp") == 1
        MlflowClient(server.url).set_registered_model_alias("mlp", "champion", "1")
        proxy = TokenProxy(server.url, TOKEN, *certs)
        yield Stand(root, certs, moto, server, proxy)
    finally:
        for part in (proxy, server, moto):
            if part is not None:
                part.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def serve(registry: str, tmp_path: Path, *extra: str, models: str = "fraud"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return run_podium(
        registry, tmp_path,
        "--cache-dir", str(tmp_path / "cache"),
        "--poll-interval-ms", "300",
        "--models", models,
        *extra,
    )


def version_of(srv, alias: str = "champion") -> str | None:
    r = infer(srv, f"/v2/models/fraud/versions/{alias}/infer")
    return r.json().get("model_version") if r.status_code == 200 else None


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------


def test_follows_an_alias_over_https_with_artifacts_in_s3(stand, tmp_path):
    client = MlflowClient(stand.mlflow.url)
    # MLflow hands out S3 locations: Podium reads them from the bucket.
    assert client.get_model_version_download_uri("fraud", "1").startswith(f"s3://{BUCKET}/")
    with serve(f"mlflow+{stand.mlflow.url}", tmp_path) as srv:
        assert version_of(srv) == "1"
        client.set_registered_model_alias("fraud", "champion", "2")
        try:
            wait_for("champion -> v2 served over HTTPS", lambda: version_of(srv) == "2")
        finally:
            client.set_registered_model_alias("fraud", "champion", "1")
        st = status(srv)
        assert st["registry"]["state"] == "ok", st["registry"]
        assert st["registry"]["location"] == stand.mlflow.url
        assert slot(st, "fraud", "champion")["serving_version"] == 2
    cached = list((tmp_path / "cache").rglob("model.onnx"))
    assert len(cached) == 2, cached


def test_a_model_with_external_data_in_s3_is_served(stand, tmp_path, ort_run):
    client = boto3.client("s3", endpoint_url=stand.moto.url)
    uri = MlflowClient(stand.mlflow.url).get_model_version_download_uri("mlp", "1")
    prefix = uri.removeprefix(f"s3://{BUCKET}/").rstrip("/") + "/"
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    assert any(k.endswith(".data") for k in keys), keys
    x = np.random.default_rng(3).standard_normal((1, 64)).astype(np.float32)
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": x.ravel().tolist()}]}
    with serve(f"mlflow+{stand.mlflow.url}", tmp_path, models="mlp") as srv:
        r = requests.post(base(srv) + "/v2/models/mlp/infer", json=body, timeout=30)
        assert r.status_code == 200 and r.json()["model_version"] == "1", r.text
        logits = np.array(r.json()["outputs"][0]["data"], dtype=np.float32).reshape(1, 10)
        np.testing.assert_allclose(logits, ort_run("mlp_v1", {"input": x})["logits"], rtol=1e-5, atol=1e-6)


def test_an_unknown_ca_is_a_clear_tls_error_and_podium_stays_live(stand, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH")
    with serve(f"mlflow+{stand.mlflow.url}", tmp_path) as srv:
        st = wait_for(
            "registry degraded by TLS",
            lambda: (s := status(srv))["registry"]["state"] == "degraded" and s,
        )
        error = st["registry"]["error"]
        assert "TLS with MLflow at" in error and "MLFLOW_TRACKING_SERVER_CERT_PATH" in error, error
        assert requests.get(base(srv) + "/v2/health/live", timeout=10).status_code == 200

    # Verification off, on request only, and said so loudly.
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    with serve(f"mlflow+{stand.mlflow.url}", tmp_path / "insecure") as srv:
        assert version_of(srv) == "1"
        assert "does NOT verify MLflow's TLS certificate" in srv.stderr_tail(limit=10**7)
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "maybe")
    out = podium_cli("--registry", f"mlflow+{stand.mlflow.url}", "models", "list")
    assert out.returncode != 0 and "MLFLOW_TRACKING_INSECURE_TLS" in out.stderr, out.stderr


def test_a_bearer_token_over_tls_is_sent_and_never_shown(stand, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
    monkeypatch.setenv("PODIUM_LOG", "debug")
    with serve(f"mlflow+{stand.proxy.url}", tmp_path / "good") as srv:
        assert version_of(srv) == "1"
        st = status(srv)
        assert st["registry"]["state"] == "ok", st["registry"]
        assert TOKEN not in json.dumps(st)
        assert TOKEN not in srv.stderr_tail(limit=10**7)
    assert f"Bearer {TOKEN}" in stand.proxy.seen

    wrong = TOKEN[::-1]
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", wrong)
    with serve(f"mlflow+{stand.proxy.url}", tmp_path / "bad") as srv:
        st = wait_for(
            "registry degraded by the refused token",
            lambda: (s := status(srv))["registry"]["state"] == "degraded" and s,
        )
        assert "refused Podium's credentials" in st["registry"]["error"], st["registry"]
        assert wrong not in json.dumps(st)
        assert wrong not in srv.stderr_tail(limit=10**7)


def test_a_databricks_workspace_from_a_profile(stand, tmp_path, monkeypatch):
    # The workspace stand-in: MLflow's API behind TLS and a token, the host and
    # token in a ~/.databrickscfg profile as the Databricks CLI writes it.
    cfg = tmp_path / "databrickscfg"
    cfg.write_text(f"[DEFAULT]\nhost = https://nowhere.invalid\n\n[stand]\nhost = {stand.proxy.url}\ntoken = {TOKEN}\n")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(cfg))
    monkeypatch.setenv("DATABRICKS_CONFIG_PROFILE", "stand")
    monkeypatch.setenv("PODIUM_LOG", "debug")
    with serve("databricks", tmp_path / "serve") as srv:
        assert version_of(srv) == "1"
        st = status(srv)
        assert st["registry"]["location"] == stand.proxy.url
        assert TOKEN not in json.dumps(st)
        assert TOKEN not in srv.stderr_tail(limit=10**7)

    out = podium_cli("--registry", "databricks", "--cache-dir", str(tmp_path / "cli"), "models", "list")
    assert out.returncode == 0, out.stderr
    assert "fraud\tversions: 1,2\taliases: champion=1" in out.stdout, out.stdout

    # Unity Catalog names are refused with the reason, not guessed at.
    out = podium_cli("--registry", "databricks", "--cache-dir", str(tmp_path / "cli"), "alias", "get", "main.risk.fraud", "champion")
    assert out.returncode != 0
    assert "Unity Catalog" in out.stderr and "not supported yet" in out.stderr, out.stderr
    out = podium_cli("--registry", "databricks-uc", "models", "list")
    assert out.returncode != 0
    assert "Unity Catalog" in out.stderr and "not supported yet" in out.stderr, out.stderr

    # No host and token anywhere: says what to set.
    monkeypatch.setenv("DATABRICKS_CONFIG_PROFILE", "missing")
    out = podium_cli("--registry", "databricks", "models", "list")
    assert out.returncode != 0
    assert "DATABRICKS_HOST" in out.stderr and "DATABRICKS_TOKEN" in out.stderr, out.stderr
