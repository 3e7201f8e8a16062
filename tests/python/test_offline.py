"""`podium batch` and `podium compare` against Python's own stack.

A held-out file is written with pyarrow; `podium batch` must give the same
outputs as Python onnxruntime on the same rows, and `podium compare --json`
the same metric values as scikit-learn on those predictions.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from conftest import CLI_TIMEOUT_S, MODELS_DIR, PODIUM_BIN, REPO

# scripts/make-heldout.py: the README's held-out file, imported by path.
_spec = importlib.util.spec_from_file_location("make_heldout", REPO / "scripts" / "make-heldout.py")
make_heldout = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_heldout)

ROWS = 1500


def podium(registry: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(PODIUM_BIN), "--registry", str(registry), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    reg = tmp_path_factory.mktemp("offline") / "registry"
    for file in ("fraud/v1.onnx", "fraud/v2.onnx"):
        res = podium(reg, "models", "register", "fraud", str(MODELS_DIR / file))
        assert res.returncode == 0, res.stderr
    for alias, version in (("champion", "1"), ("challenger", "2")):
        assert podium(reg, "alias", "set", "fraud", alias, version).returncode == 0
    return reg


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    X, y = make_heldout.fraud_rows(ROWS, seed=3)
    path = tmp_path_factory.mktemp("data") / "heldout.parquet"
    pq.write_table(make_heldout.table(X, y, list_column=True), path)
    return path, X, y


def onnx_outputs(version: int, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # One intra-op thread, as Podium's sessions: a tree ensemble summed on
    # several threads adds in another order and moves the last float bits.
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    path = MODELS_DIR / "fraud" / f"v{version}.onnx"
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    label, probabilities = sess.run(["label", "probabilities"], {"input": X})
    return label, probabilities


def test_batch_outputs_equal_python_onnxruntime(registry, heldout, tmp_path):
    path, X, y = heldout
    out = tmp_path / "scored.parquet"
    # One batch of every row, as onnxruntime below gets them.
    res = podium(registry, "batch", "fraud@challenger", "--input", str(path), "--output", str(out),
                 "--batch-size", str(ROWS))
    assert res.returncode == 0, res.stderr
    table = pq.read_table(out)
    assert table.column_names == ["input", "label", "predicted_label", "probabilities", "model_name", "model_version"]
    assert table.schema.field("probabilities").type == pa.list_(pa.field("item", pa.float32(), nullable=False), 2)
    label, probabilities = onnx_outputs(2, X)
    np.testing.assert_array_equal(table.column("predicted_label").to_numpy(), label)
    got = np.stack(table.column("probabilities").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(got, probabilities)
    np.testing.assert_array_equal(table.column("label").to_numpy(), y)
    assert set(table.column("model_version").to_pylist()) == {2}


@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")
@pytest.mark.parametrize("metric", ["accuracy", "log_loss", "roc_auc"])
def test_compare_metrics_equal_scikit_learn(registry, heldout, metric):
    path, X, y = heldout
    res = podium(registry, "compare", "fraud", "--data", str(path), "--label", "label",
                 "--metric", metric, "--json", "--bootstrap", "200")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert set(result) == {"metric", "rows", "champion", "challenger", "diff", "ci_low", "ci_high",
                           "decision", "promoted"}
    assert (result["metric"], result["rows"], result["promoted"]) == (metric, ROWS, False)
    expected = {}
    for side, version in (("champion", 1), ("challenger", 2)):
        label, probabilities = onnx_outputs(version, X)
        p = probabilities.astype(np.float64)
        expected[side] = {
            "accuracy": lambda: accuracy_score(y, label),
            "log_loss": lambda: log_loss(y, p, labels=[0, 1]),
            "roc_auc": lambda: roc_auc_score(y, p[:, 1]),
        }[metric]()
        assert result[side]["version"] == version
        assert result[side]["value"] == pytest.approx(expected[side], rel=1e-9, abs=1e-12)
    assert result["diff"] == pytest.approx(expected["challenger"] - expected["champion"], rel=1e-9, abs=1e-12)
    assert result["ci_low"] <= result["diff"] <= result["ci_high"]
    assert result["decision"] in ("better", "worse", "no_difference")


def test_compare_refuses_a_missing_label_column(registry, heldout):
    path, _, _ = heldout
    res = podium(registry, "compare", "fraud", "--data", str(path), "--label", "is_fraud")
    assert res.returncode != 0
    assert 'has no label column "is_fraud"; its columns are: input, label' in res.stderr
