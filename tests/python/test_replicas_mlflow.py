"""Two replicas on one MLflow Model Registry share an endpoint's traffic.

Two ``podium serve`` processes read the same MLflow server (started for this
module as in test_mlflow_registry.py). A traffic change made through replica
A's admin API is stored as the registered-model tag
``podium.traffic.<endpoint>`` and served by replica B once it polls; a reset
through B removes the tag and puts both back on the --config file's split.
An alias moved in MLflow is followed by both, with no failed request on
either.
"""

from __future__ import annotations

import json
import time

import requests
from mlflow import MlflowClient

from test_mlflow_registry import (  # noqa: F401  (mlflow_server is a fixture)
    HTTP_TIMEOUT_S,
    Loop,
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


def test_two_replicas_follow_an_alias_move_with_no_failed_request(mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server.url)
    flags = ("--models", "fraud")
    with podium(mlflow_server, tmp_path / "a", *flags, "--replica-id", "a") as a, podium(
        mlflow_server, tmp_path / "b", *flags, "--replica-id", "b"
    ) as b:
        with Loop(a) as loop_a, Loop(b) as loop_b:
            for loop in (loop_a, loop_b):
                wait_for("the request loop answering", lambda: len(loop.snapshot()) > 10)
                assert {r[3] for r in loop.snapshot()} == {"1"}
            for version in ("2", "1"):
                client.set_registered_model_alias("fraud", "champion", version)
                moved = time.monotonic()
                for name, loop in (("A", loop_a), ("B", loop_b)):
                    first = wait_for(
                        f"replica {name} serving champion v{version}",
                        lambda: loop.first_served_by(version, moved),
                    )
                    wait_for("a few more answers", lambda: sum(r[0] > first for r in loop.snapshot()) >= 10)
                    late = [r for r in loop.snapshot() if r[0] > first and r[3] != version]
                    assert not late, f"replica {name}: after v{version} answered, later requests got {late[:5]}"
        for name, loop in (("A", loop_a), ("B", loop_b)):
            assert loop.failures() == [], (name, loop.failures()[:5])
    client.set_registered_model_alias("fraud", "champion", "1")
