"""Two replicas on one MLflow Model Registry share an endpoint's traffic.

Two ``podium serve`` processes read the same MLflow server (started for this
module as in test_mlflow_registry.py). A traffic change made through replica
A's admin API is stored as the registered-model tag
``podium.traffic.<endpoint>`` and served by replica B once it polls; a reset
through B removes the tag and puts both back on the --config file's split.
"""

from __future__ import annotations

import json

import requests
from mlflow import MlflowClient

from test_mlflow_registry import (  # noqa: F401  (mlflow_server is a fixture)
    HTTP_TIMEOUT_S,
    base,
    fraud_body,
    X,
    mlflow_server,
    podium,
    wait_for,
)

CONFIG = """
[[endpoint]]
name = "fraud-ab"
model = "fraud"
experiment = "fraud-2026-11"
arms = [{ alias = "champion", weight = 50 }, { alias = "challenger", weight = 50 }]
"""

TAG = "podium.traffic.fraud-ab"


def weights(srv) -> dict:
    r = requests.get(base(srv) + "/admin/endpoints", timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 200, r.text
    ab = next(e for e in r.json()["endpoints"] if e["name"] == "fraud-ab")
    return {a["alias"]: a["weight"] for a in ab["arms"]}


def arm_of_one_call(srv) -> str:
    r = requests.post(base(srv) + "/v2/models/fraud-ab/infer", json=fraud_body(X), timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 200, r.text
    return r.headers["x-podium-arm"]


def test_two_replicas_share_traffic_through_registered_model_tags(mlflow_server, tmp_path):
    config = tmp_path / "podium.toml"
    config.write_text(CONFIG)
    tags = lambda: MlflowClient(mlflow_server.url).get_registered_model("fraud").tags  # noqa: E731
    flags = ("--models", "fraud", "--config", str(config))
    with podium(mlflow_server, tmp_path / "a", *flags, "--replica-id", "a") as a, podium(
        mlflow_server, tmp_path / "b", *flags, "--replica-id", "b"
    ) as b:
        for srv in (a, b):
            wait_for("ready", lambda: requests.get(base(srv) + "/v2/health/ready", timeout=5).status_code == 200)
        assert TAG not in tags()

        r = requests.put(
            base(a) + "/admin/endpoints/fraud-ab/traffic",
            json={"arms": [{"alias": "champion", "weight": 0}, {"alias": "challenger", "weight": 100}]},
            timeout=HTTP_TIMEOUT_S,
        )
        assert r.status_code == 200, r.text
        stored = json.loads(tags()[TAG])
        assert stored["arms"] == [{"alias": "champion", "weight": 0.0}, {"alias": "challenger", "weight": 100.0}]
        assert stored["by"] == "admin"

        wait_for("replica B follows A's change", lambda: weights(b) == {"champion": 0.0, "challenger": 100.0})
        assert {arm_of_one_call(b) for _ in range(8)} == {"challenger"}
        assert requests.get(base(b) + "/admin/status", timeout=HTTP_TIMEOUT_S).json()["replica"] == "b"

        r = requests.delete(base(b) + "/admin/endpoints/fraud-ab/traffic", timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 200, r.text
        assert TAG not in tags()
        wait_for("replica A follows the reset", lambda: weights(a) == {"champion": 50.0, "challenger": 50.0})
