"""Promotion recorded in a real MLflow Model Registry.

The same ``mlflow server`` as test_mlflow_registry.py (its fixture, a fresh
server for this module): fraud v1 = champion, v2 = challenger, v3 = the v1
file again. Two paths move the champion alias and must say why in the
registry, read back with MLflow's own Python client:

- online: an experiment endpoint whose readout says ``better`` (labelled
  calls and feedback), promoted with ``podium promote --if-better``; the
  version's tags ``podium.experiment``, ``podium.decision``,
  ``podium.metric``, ``podium.diff``, ``podium.p_value`` carry the readout's
  values, and ``champion`` names the challenger's version;
- offline: ``podium compare --promote-if-better`` on a held-out file writes
  its numbers as version tags and ``model_validation_status`` (``PASSED``
  when better, and the alias moves; ``FAILED`` otherwise, and it stays).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import requests
from mlflow import MlflowClient

from conftest import HOST
from test_mlflow_registry import (  # noqa: F401  (mlflow_server is a fixture)
    HTTP_TIMEOUT_S,
    X,
    base,
    fraud_body,
    mlflow_server,
    podium,
    podium_cli,
)
from test_offline import make_heldout

DECISION_DEADLINE_S = 120.0

CONFIG = """
[[endpoint]]
name = "fraud-ab"
model = "fraud"
experiment = "fraud-v2-trial"
arms = [{ alias = "champion", weight = 50 }, { alias = "challenger", weight = 50 }]

[endpoint.readout]
metric = "accuracy"
prediction_output = "label"
min_samples = 20
"""


def reset_aliases(client: MlflowClient, challenger: str = "2") -> None:
    client.set_registered_model_alias("fraud", "champion", "1")
    client.set_registered_model_alias("fraud", "challenger", challenger)


def registry_uri(mlflow_server) -> str:
    return f"mlflow+http://{HOST}:{mlflow_server.port}"


def labelled_calls(srv, n: int, start: int) -> None:
    """`n` calls to fraud-ab, each labelled: the challenger's prediction is
    right 9 times in 10, the champion's 1 in 10."""
    feedback = []
    session = requests.Session()
    for i in range(start, start + n):
        r = session.post(base(srv) + "/v2/models/fraud-ab/infer", json=fraud_body(X), timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 200, r.text
        predicted = next(o for o in r.json()["outputs"] if o["name"] == "label")["data"][0]
        right = (r.headers["x-podium-arm"] == "challenger") == (i % 10 != 0)
        feedback.append({"request_id": r.headers["x-request-id"], "label": predicted if right else 1 - predicted})
    r = session.post(base(srv) + "/v2/feedback", json={"feedback": feedback}, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 200, r.text


def test_promotion_tags_the_version_in_mlflow_with_the_readout(mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server.url)
    reset_aliases(client)
    config = tmp_path / "podium.toml"
    config.write_text(CONFIG)
    with podium(mlflow_server, tmp_path / "server", "--models", "fraud", "--config", str(config)) as srv:
        deadline = time.monotonic() + DECISION_DEADLINE_S
        sent = 0
        while True:
            labelled_calls(srv, 40, sent)
            sent += 40
            readout = requests.get(base(srv) + "/admin/experiments/fraud-ab", timeout=HTTP_TIMEOUT_S).json()
            comparison = readout["comparisons"][0]
            if comparison["decision"] == "better":
                break
            assert time.monotonic() < deadline, f"no `better` decision after {sent} calls: {readout}"

        out = podium_cli("promote", "fraud-ab", "--if-better", "--server", base(srv))
        assert out.returncode == 0, out.stderr
        assert "fraud@champion now serves version 2 (was 1)" in out.stdout, out.stdout
        assert "warning" not in out.stderr, out.stderr

    assert client.get_model_version_by_alias("fraud", "champion").version == "2"
    tags = client.get_model_version("fraud", "2").tags
    assert tags["podium.experiment"] == "fraud-v2-trial"
    assert tags["podium.decision"] == "better"
    assert tags["podium.metric"] == "accuracy"
    assert float(tags["podium.diff"]) == comparison["diff"], (tags, comparison)
    assert float(tags["podium.p_value"]) == comparison["p_value"], (tags, comparison)
    assert "podium.decision" not in client.get_model_version("fraud", "1").tags


@pytest.fixture(scope="module")
def heldout(ort_run):
    """Rows on which the two versions disagree half the time: (features,
    v1's labels, v2's labels)."""
    rng = np.random.default_rng(11)
    X = (rng.standard_normal((20000, 30)) * 3).astype(np.float32)
    v1 = ort_run("fraud_v1", {"input": X})["label"].astype(np.int64)
    v2 = ort_run("fraud_v2", {"input": X})["label"].astype(np.int64)
    rows = np.concatenate([np.flatnonzero(v1 != v2)[:100], np.flatnonzero(v1 == v2)[:100]])
    assert len(rows) == 200
    return X[rows], v1[rows], v2[rows]


def compare(mlflow_server, tmp_path, X, y) -> tuple[dict, str]:
    path = tmp_path / "heldout.parquet"
    pq.write_table(make_heldout.table(X, y, list_column=True), path)
    out = podium_cli(
        "--registry", registry_uri(mlflow_server), "--cache-dir", str(tmp_path / "cache"),
        "compare", "fraud", "--data", str(path), "--label", "label",
        "--bootstrap", "200", "--json", "--promote-if-better",
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), out.stderr


def compare_tags(result: dict) -> dict:
    return {
        "podium.compare.metric": "accuracy",
        "podium.compare.rows": "200",
        "podium.compare.champion_alias": "champion",
        "podium.compare.champion_version": str(result["champion"]["version"]),
        "podium.compare.decision": result["decision"],
    }


def test_compare_promotes_a_better_challenger_and_tags_it_passed(mlflow_server, heldout, tmp_path):
    client = MlflowClient(mlflow_server.url)
    reset_aliases(client)
    X, _, v2_labels = heldout
    result, stderr = compare(mlflow_server, tmp_path, X, v2_labels)
    assert (result["decision"], result["promoted"]) == ("better", True), (result, stderr)
    assert (result["champion"]["version"], result["challenger"]["version"]) == (1, 2)

    assert client.get_model_version_by_alias("fraud", "champion").version == "2"
    tags = client.get_model_version("fraud", "2").tags
    assert tags["model_validation_status"] == "PASSED"
    for key, value in compare_tags(result).items():
        assert tags[key] == value, (key, tags)
    for key, number in (("champion_value", result["champion"]["value"]),
                        ("challenger_value", result["challenger"]["value"]),
                        ("diff", result["diff"]), ("ci_low", result["ci_low"]), ("ci_high", result["ci_high"])):
        assert float(tags[f"podium.compare.{key}"]) == number, (key, tags, result)


def test_compare_keeps_the_champion_when_not_better_and_tags_it_failed(mlflow_server, heldout, tmp_path):
    client = MlflowClient(mlflow_server.url)
    # The challenger is v3: the champion's own file, so no better.
    reset_aliases(client, challenger="3")
    X, v1_labels, _ = heldout
    result, stderr = compare(mlflow_server, tmp_path, X, v1_labels)
    assert (result["decision"], result["promoted"]) == ("no_difference", False), (result, stderr)
    assert "fraud@champion stays at version 1: the challenger is not better (no_difference)" in stderr

    assert client.get_model_version_by_alias("fraud", "champion").version == "1"
    tags = client.get_model_version("fraud", "3").tags
    assert tags["model_validation_status"] == "FAILED"
    for key, value in compare_tags(result).items():
        assert tags[key] == value, (key, tags)
    assert float(tags["podium.compare.diff"]) == result["diff"] == 0.0

    # A worse challenger (v2 against v1's own labels) is FAILED too, and nothing moves.
    reset_aliases(client)
    result, _ = compare(mlflow_server, tmp_path, X, v1_labels)
    assert (result["decision"], result["promoted"]) == ("worse", False), result
    assert client.get_model_version_by_alias("fraud", "champion").version == "1"
    assert client.get_model_version("fraud", "2").tags["model_validation_status"] == "FAILED"
