"""Black-box tests of Podium's MLflow scoring protocol.

MLflow's own client (``mlflow.pyfunc.scoring_server.client.ScoringServerClient``,
from the ``mlflow-skinny`` package) and plain HTTP talk to a real ``podium
serve`` over 127.0.0.1; every answer is checked against onnxruntime run
in-process on the same .onnx file.

Routes under test (same REST port as the OIP API):
  POST /invocations                           the default endpoint
  POST /serving-endpoints/{name}/invocations  a named endpoint
  GET  /ping, /health, /version

The session server of conftest.py serves several endpoints (fraud, mlp,
alltypes), so ``/invocations`` has no default there and the named route is
used. ScoringServerClient can only call ``/invocations``, so this module also
starts a second server on the same registry with ``--default-endpoint fraud``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import requests
from mlflow.pyfunc.scoring_server.client import ScoringServerClient

from conftest import HOST, run_podium

BATCH = 4
FRAUD_FEATURES = 30
MLP_FEATURES = 64
MLP_CLASSES = 10
HTTP_TIMEOUT_S = 30.0
JSON = "application/json"


def rand_batch(features: int, seed: int = 0, batch: int = BATCH) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, features)).astype(np.float32)


def frame(x: np.ndarray, prefix: str = "f") -> pd.DataFrame:
    """A DataFrame whose column names do not name the model input ("input"),
    so the server stacks the columns in order into it."""
    return pd.DataFrame(x, columns=[f"{prefix}{i}" for i in range(x.shape[1])])


def base_url(srv) -> str:
    return f"http://{HOST}:{srv.port}"


def post(srv, path: str, body, content_type: str = JSON) -> requests.Response:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return requests.post(
        base_url(srv) + path,
        data=data,
        headers={"Content-Type": content_type},
        timeout=HTTP_TIMEOUT_S,
    )


def predictions_of(resp: requests.Response):
    assert resp.status_code == 200, (
        f"{resp.request.method} {resp.request.url} -> {resp.status_code}: {resp.text}"
    )
    body = resp.json()
    assert isinstance(body, dict) and "predictions" in body, f"not an MLflow answer: {body!r}"
    return body["predictions"]


def assert_fraud_matches(predictions, ref: dict[str, np.ndarray]) -> None:
    """fraud has two outputs, so predictions is {"label": [...], "probabilities": [[p0, p1], ...]}."""
    assert isinstance(predictions, dict), f"expected a dict of outputs, got {predictions!r}"
    assert set(predictions) == {"label", "probabilities"}, predictions.keys()
    labels = np.asarray(predictions["label"])
    probs = np.asarray(predictions["probabilities"], dtype=np.float64)
    assert labels.shape == ref["label"].shape, (labels.shape, ref["label"].shape)
    np.testing.assert_array_equal(labels, ref["label"])
    assert probs.shape == ref["probabilities"].shape, (probs.shape, ref["probabilities"].shape)
    np.testing.assert_allclose(probs, ref["probabilities"], rtol=0, atol=1e-6)


def assert_mlflow_error(resp: requests.Response, status: int) -> str:
    assert resp.status_code == status, f"wanted {status}, got {resp.status_code}: {resp.text}"
    body = resp.json()
    assert isinstance(body.get("error_code"), str) and body["error_code"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    return body["message"]


@pytest.fixture(scope="module")
def fraud_x() -> np.ndarray:
    return rand_batch(FRAUD_FEATURES)


@pytest.fixture(scope="module")
def fraud_ref(ort_run, fraud_x) -> dict[str, np.ndarray]:
    return ort_run("fraud_v1", {"input": fraud_x})


@pytest.fixture(scope="module")
def default_server(registry, tmp_path_factory):
    """A second server on the session registry whose /invocations serves fraud."""
    with run_podium(
        registry, tmp_path_factory.mktemp("server-mlflow"), "--default-endpoint", "fraud"
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def mlflow_client(default_server) -> ScoringServerClient:
    c = ScoringServerClient(HOST, default_server.port)
    c.wait_server_ready(timeout=30)
    return c


# ---------------------------------------------------------------------------
# 1. MLflow's ScoringServerClient against /invocations (--default-endpoint fraud)
# ---------------------------------------------------------------------------


def test_client_ping_and_version(mlflow_client):
    mlflow_client.ping()  # raises unless 200
    version = mlflow_client.get_version()
    assert isinstance(version, str) and version.strip(), repr(version)


def test_client_invoke_dataframe(mlflow_client, fraud_x, fraud_ref):
    # invoke() posts {"dataframe_split": df.to_dict(orient="split")} (with an
    # "index" key) as application/json to /invocations
    resp = mlflow_client.invoke(frame(fraud_x))
    assert_fraud_matches(resp["predictions"], fraud_ref)


def test_client_predictions_as_dataframe(mlflow_client, fraud_x, fraud_ref):
    resp = mlflow_client.invoke(frame(fraud_x))
    df = resp.get_predictions()  # MLflow's own decoding of the answer
    assert list(df.columns) == ["label", "probabilities"]
    assert len(df) == BATCH
    np.testing.assert_array_equal(df["label"].to_numpy(), fraud_ref["label"])
    np.testing.assert_allclose(
        np.array(df["probabilities"].tolist(), dtype=np.float64),
        fraud_ref["probabilities"], rtol=0, atol=1e-6,
    )


def test_client_invoke_ndarray(mlflow_client, fraud_x, fraud_ref):
    # a numpy array goes as {"inputs": [[...], ...]}
    resp = mlflow_client.invoke(fraud_x)
    assert_fraud_matches(resp["predictions"], fraud_ref)


def test_client_invoke_error_raises(mlflow_client, fraud_x):
    with pytest.raises(Exception, match=r"error code 400") as info:
        mlflow_client.invoke(frame(fraud_x[:, :29]))
    assert "30" in str(info.value)


# ---------------------------------------------------------------------------
# 2. plain HTTP: /ping, /health, /version, /invocations without a default
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ping", "/health"])
def test_ping_and_health(server, path):
    resp = requests.get(base_url(server) + path, timeout=HTTP_TIMEOUT_S)
    assert resp.status_code == 200, resp.text


def test_version(server):
    resp = requests.get(base_url(server) + "/version", timeout=HTTP_TIMEOUT_S)
    assert resp.status_code == 200, resp.text
    assert resp.text.strip(), repr(resp.text)


def test_invocations_without_default_endpoint_is_400(server, fraud_x):
    # the session server has several endpoints and no --default-endpoint
    resp = post(server, "/invocations", {"dataframe_split": frame(fraud_x).to_dict(orient="split")})
    message = assert_mlflow_error(resp, 400)
    assert resp.json()["error_code"] == "BAD_REQUEST"
    assert "default-endpoint" in message or "serving-endpoints" in message, message


def test_invocations_default_endpoint_plain_http(default_server, fraud_x, fraud_ref):
    body = {"dataframe_split": {"columns": frame(fraud_x).columns.tolist(), "data": fraud_x.tolist()}}
    assert_fraud_matches(predictions_of(post(default_server, "/invocations", body)), fraud_ref)


# ---------------------------------------------------------------------------
# 3. plain HTTP: every input format to /serving-endpoints/fraud/invocations
# ---------------------------------------------------------------------------


def fraud_bodies(x: np.ndarray) -> dict[str, dict]:
    df = frame(x)
    return {
        "dataframe_split": {
            "dataframe_split": {"columns": df.columns.tolist(), "data": x.tolist()}
        },
        "dataframe_records": {"dataframe_records": df.to_dict(orient="records")},
        "instances": {"instances": x.tolist()},
        "inputs": {"inputs": {"input": x.tolist()}},
    }


@pytest.mark.parametrize("fmt", ["dataframe_split", "dataframe_records", "instances", "inputs"])
def test_fraud_json_formats(server, fraud_x, fraud_ref, fmt):
    body = fraud_bodies(fraud_x)[fmt]
    resp = post(server, "/serving-endpoints/fraud/invocations", body)
    assert_fraud_matches(predictions_of(resp), fraud_ref)


def test_fraud_json_charset_utf8(server, fraud_x, fraud_ref):
    body = fraud_bodies(fraud_x)["dataframe_split"]
    resp = post(server, "/serving-endpoints/fraud/invocations", body, "application/json; charset=utf-8")
    assert_fraud_matches(predictions_of(resp), fraud_ref)


def test_fraud_csv(server, fraud_x, fraud_ref):
    text = frame(fraud_x).to_csv(index=False)
    assert text.splitlines()[0].startswith("f0,f1,")
    resp = post(server, "/serving-endpoints/fraud/invocations", text, "text/csv")
    assert_fraud_matches(predictions_of(resp), fraud_ref)


def test_records_keep_column_order(server, fraud_x, fraud_ref):
    # column names that sort differently from their order (f10 < f2 as text):
    # the stacking must follow the record's key order, not alphabetical order
    df = frame(fraud_x, prefix="c")
    body = {"dataframe_records": df.to_dict(orient="records")}
    assert list(body["dataframe_records"][0])[:3] == ["c0", "c1", "c2"]
    resp = post(server, "/serving-endpoints/fraud/invocations", body)
    assert_fraud_matches(predictions_of(resp), fraud_ref)


# ---------------------------------------------------------------------------
# 4. mlp (one output "logits"): predictions are a list of rows
# ---------------------------------------------------------------------------


def test_mlp_dataframe_split(server, ort_run):
    x = rand_batch(MLP_FEATURES, seed=1)
    ref = ort_run("mlp_v1", {"input": x})["logits"]
    body = {"dataframe_split": frame(x).to_dict(orient="split")}
    predictions = predictions_of(post(server, "/serving-endpoints/mlp/invocations", body))
    assert isinstance(predictions, list) and len(predictions) == BATCH, predictions
    assert all(isinstance(r, list) and len(r) == MLP_CLASSES for r in predictions), predictions
    np.testing.assert_allclose(np.asarray(predictions, dtype=np.float64), ref, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------
# 5. errors in MLflow's shape
# ---------------------------------------------------------------------------


def test_wrong_column_count_is_400(server, fraud_x):
    x = fraud_x[:, :29]
    body = {"dataframe_split": {"columns": frame(x).columns.tolist(), "data": x.tolist()}}
    resp = post(server, "/serving-endpoints/fraud/invocations", body)
    message = assert_mlflow_error(resp, 400)
    assert resp.json()["error_code"] == "BAD_REQUEST"
    assert "30" in message, message


def test_two_input_fields_is_400(server, fraud_x):
    bodies = fraud_bodies(fraud_x)
    body = {**bodies["instances"], **bodies["inputs"]}
    resp = post(server, "/serving-endpoints/fraud/invocations", body)
    assert_mlflow_error(resp, 400)
    assert resp.json()["error_code"] == "BAD_REQUEST"


def test_invalid_json_is_400(server):
    resp = post(server, "/serving-endpoints/fraud/invocations", "{not json")
    assert_mlflow_error(resp, 400)


def test_bad_content_type_is_415(server, fraud_x):
    body = json.dumps(fraud_bodies(fraud_x)["instances"])
    resp = post(server, "/serving-endpoints/fraud/invocations", body, "text/plain")
    assert_mlflow_error(resp, 415)


def test_unknown_endpoint_is_404(server, fraud_x):
    body = fraud_bodies(fraud_x)["instances"]
    resp = post(server, "/serving-endpoints/no-such-endpoint/invocations", body)
    assert_mlflow_error(resp, 404)
