"""`podium monitor` against numpy and SciPy, and end to end.

1. Fixed data in a table written with pyarrow: the drift table's PSI equals a
   numpy PSI (10 bins at the baseline's deciles, empty bins smoothed with
   1e-4), its Kolmogorov–Smirnov statistic and p-value equal
   ``scipy.stats.ks_2samp`` (exact below 10,000 values, asymptotic above),
   its Jensen–Shannon distance ``scipy.spatial.distance.jensenshannon``
   (base 2) on the same bins, and the profile's moments and quantiles numpy's.
2. A real server with a champion/challenger split writes a real table; the
   traffic has one feature shifted, and exactly that feature is flagged,
   per arm, and posted to a webhook receiver on 127.0.0.1 (which refuses the
   first post, so the retry is exercised too). Feedback labels give accuracy.
3. ``--watch`` picks up a new table file, and stops cleanly on SIGTERM.
4. Bad input is refused with messages that name the fix.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

from conftest import CLI_TIMEOUT_S, PODIUM_BIN, run_podium

DEADLINE_S = 30.0


def monitor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(PODIUM_BIN), "monitor", *map(str, args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def numpy_psi(actual: np.ndarray, expected: np.ndarray) -> float:
    edges = np.unique(np.quantile(expected, np.arange(1, 10) / 10))
    def shares(v):
        counts = np.bincount(np.searchsorted(edges, v, side="left"), minlength=len(edges) + 1)
        return counts / counts.sum()
    a, e = shares(actual), shares(expected)
    a = np.where(a == 0, 1e-4, a)
    e = np.where(e == 0, 1e-4, e)
    return float(np.sum((a - e) * np.log(a / e))), shares(actual), shares(expected)


def write_table(root: Path, endpoint: str, arm: str, x: np.ndarray, name: str = "part-0.parquet",
                start: str = "2026-11-27T10:00:00Z") -> Path:
    """A table file as Podium writes it: one logged OIP JSON call per row of x."""
    n = len(x)
    t0 = pd.Timestamp(start)
    times = [t0 + pd.Timedelta(seconds=i) for i in range(n)]
    requests_ = [json.dumps({"inputs": [{"name": "x", "shape": [1, x.shape[1]], "datatype": "FP64",
                                         "data": [float(v) for v in row]}]}) for row in x]
    responses = [json.dumps({"model_name": "m", "outputs": [{"name": "score", "shape": [1], "datatype": "FP64",
                                                             "data": [float(row.sum())]}]}) for row in x]
    table = pa.table({
        "request_id": pa.array([f"{name}-{i}" for i in range(n)]),
        "client_request_id": pa.array([None] * n, pa.string()),
        "request_time": pa.array(times, pa.timestamp("us", tz="UTC")),
        "arm": pa.array([arm] * n),
        "status_code": pa.array([200] * n, pa.int32()),
        "total_duration_ms": pa.array(np.linspace(0.1, 2.0, n)),
        "request": pa.array(requests_),
        "response": pa.array(responses),
        "protocol": pa.array(["rest"] * n),
    })
    part = root / f"endpoint={endpoint}" / f"request_date={t0.date().isoformat()}"
    part.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, part / name)
    return part / name


def test_psi_ks_and_js_equal_numpy_and_scipy_on_fixed_data(tmp_path):
    rng = np.random.default_rng(11)
    # Column 0: a continuous shift; column 1: few distinct values (ties, merged edges).
    base = np.column_stack([rng.normal(0, 1, 400), rng.integers(0, 4, 400)]).astype(float)
    live = np.column_stack([rng.normal(0.3, 1.2, 250), rng.integers(0, 5, 250)]).astype(float)
    table = tmp_path / "table"
    write_table(table, "fixed", "champion", live)
    baseline = tmp_path / "baseline.parquet"
    pq.write_table(pa.table({"x[0]": base[:, 0], "x[1]": base[:, 1]}), baseline)
    out = tmp_path / "metrics"
    res = monitor(table, "--endpoint", "fixed", "--baseline", baseline, "--out", out)
    assert res.returncode == 0, res.stderr

    drift = pd.read_parquet(out / "drift.parquet").set_index("column_name")
    assert set(drift.index) == {"x[0]", "x[1]"}
    for j in range(2):
        row = drift.loc[f"x[{j}]"]
        psi, a, e = numpy_psi(live[:, j], base[:, j])
        assert row["psi"] == pytest.approx(psi, rel=1e-9, abs=1e-12)
        ks = ks_2samp(base[:, j], live[:, j])
        assert row["ks_statistic"] == pytest.approx(ks.statistic, rel=1e-12)
        assert row["ks_pvalue"] == pytest.approx(ks.pvalue, rel=1e-9, abs=1e-300)
        assert row["ks_method"] == "exact"
        assert row["js_distance"] == pytest.approx(jensenshannon(a, e, base=2), rel=1e-9, abs=1e-12)
        assert (row["count"], row["baseline_count"]) == (250, 400)
        assert row["window_start"] == pd.Timestamp("2026-11-27T00:00:00Z")

    profile = pd.read_parquet(out / "profile.parquet").set_index("column_name")
    x0 = profile.loc["x[0]"]
    assert x0["count"] == 250 and x0["nulls"] == 0
    assert x0["mean"] == pytest.approx(live[:, 0].mean(), rel=1e-12)
    assert x0["std"] == pytest.approx(live[:, 0].std(ddof=1), rel=1e-12)
    for q, col in ((0.05, "p05"), (0.25, "p25"), (0.5, "p50"), (0.75, "p75"), (0.95, "p95")):
        assert x0[col] == pytest.approx(np.quantile(live[:, 0], q), rel=1e-12)
    assert (x0["min"], x0["max"]) == (live[:, 0].min(), live[:, 0].max())
    score = profile.loc["score"]
    assert score["role"] == "output"
    assert score["mean"] == pytest.approx(live.sum(axis=1).mean(), rel=1e-12)
    t = profile.loc[":table"]
    assert t["request_count"] == 250 and t["error_rate"] == 0
    assert t["latency_p50_ms"] == pytest.approx(np.quantile(np.linspace(0.1, 2.0, 250), 0.5))


def test_ks_above_ten_thousand_values_is_asymptotic_and_close_to_scipy(tmp_path):
    rng = np.random.default_rng(5)
    base = rng.normal(0, 1, (12000, 1))
    live = rng.normal(0.03, 1, (11000, 1))
    table = tmp_path / "table"
    write_table(table, "big", "champion", live)
    baseline = tmp_path / "baseline.csv"
    pd.DataFrame({"feature": base[:, 0]}).to_csv(baseline, index=False)  # signature order
    out = tmp_path / "metrics"
    res = monitor(table, "--endpoint", "big", "--baseline", baseline, "--out", out)
    assert res.returncode == 0, res.stderr
    row = pd.read_parquet(out / "drift.parquet").set_index("column_name").loc["x[0]"]
    ks = ks_2samp(base[:, 0], live[:, 0])
    assert row["ks_method"] == "asymptotic"
    assert row["ks_statistic"] == pytest.approx(ks.statistic, rel=1e-9)
    # SciPy evaluates the finite-n Kolmogorov distribution at round(en); Podium
    # its limit with Stephens' correction. They agree to a few per cent here.
    assert row["ks_pvalue"] == pytest.approx(ks.pvalue, rel=0.05)


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers 503 to its first post."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.refused = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.refused == 0:
                    outer.refused += 1
                    self.send_response(503)
                else:
                    outer.bodies.append(json.loads(body))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self):
        self.server.shutdown()


def test_a_shifted_feature_is_flagged_and_posted_per_arm(registry, tmp_path):
    config = tmp_path / "endpoints.toml"
    config.write_text(
        '[[endpoint]]\nname = "fraud-ab"\nmodel = "fraud"\n'
        'arms = [{ alias = "champion", weight = 50 }, { alias = "challenger", weight = 50 }]\n'
    )
    table = tmp_path / "table"
    rng = np.random.default_rng(21)
    shifted = 3
    answers = []  # (request id, row-0 predicted label)
    with run_podium(registry, tmp_path, "--config", str(config), "--table-dir", str(table)) as srv:
        for _ in range(80):
            x = rng.normal(size=(20, 30))
            x[:, shifted] += 2.0
            body = {"inputs": [{"name": "input", "shape": [20, 30], "datatype": "FP32", "data": x.ravel().tolist()}]}
            r = requests.post(f"http://{srv.url}/v2/models/fraud-ab/infer", json=body, timeout=30)
            assert r.status_code == 200, r.text
            label = next(o for o in r.json()["outputs"] if o["name"] == "label")["data"][0]
            answers.append((r.headers["x-request-id"], r.headers.get("x-podium-arm"), label))
    assert srv.proc.returncode == 0

    # Ground truth for half the calls: right for some, wrong for others.
    fb_ids, fb_labels, expected = [], [], {}
    for i, (rid, _arm, label) in enumerate(answers[::2]):
        truth = label if i % 3 else 1 - label
        fb_ids.append(rid)
        fb_labels.append(json.dumps(truth))
        expected[rid] = truth == label
    fb_dir = table / "_feedback" / "request_date=2026-11-27"
    fb_dir.mkdir(parents=True)
    pq.write_table(pa.table({
        "request_id": fb_ids,
        "client_request_id": pa.array([None] * len(fb_ids), pa.string()),
        "label": fb_labels,
        "received_time": pa.array([pd.Timestamp.now(tz="UTC")] * len(fb_ids), pa.timestamp("us", tz="UTC")),
    }), fb_dir / "part-0.parquet")

    baseline = tmp_path / "baseline.parquet"
    base = np.random.default_rng(22).normal(size=(3000, 30))
    pq.write_table(pa.table({f"f{j}": base[:, j] for j in range(30)}), baseline)  # signature order
    out = tmp_path / "metrics"
    hook = Receiver()
    try:
        res = monitor(table, "--endpoint", "fraud-ab", "--baseline", baseline, "--out", out,
                      "--webhook", hook.url, "--ks-alpha", "1e-6")
    finally:
        hook.close()
    assert res.returncode == 0, res.stderr

    drift = pd.read_parquet(out / "drift.parquet")
    assert set(drift["role"]) == {"input"}  # the baseline file has no outputs
    assert set(drift["arm"]) == {"champion", "challenger"}
    flagged = drift[drift["psi_breach"] | drift["ks_breach"]]
    assert set(flagged["column_name"]) == {f"input[{shifted}]"}, flagged
    assert flagged["psi_breach"].all() and flagged["ks_breach"].all()

    # One post per breach: psi and ks_pvalue for each arm, bodies as documented.
    assert hook.refused == 1
    got = {(b["arm"], b["column"], b["metric"]) for b in hook.bodies}
    assert got == {(arm, f"input[{shifted}]", m) for arm in ("champion", "challenger") for m in ("psi", "ks_pvalue")}
    assert len(hook.bodies) == 4
    for b in hook.bodies:
        assert set(b) == {"endpoint", "arm", "column", "metric", "value", "threshold", "window"}
        assert b["endpoint"] == "fraud-ab"
        assert b["threshold"] == (0.2 if b["metric"] == "psi" else 1e-6)
        assert b["value"] > 0.2 if b["metric"] == "psi" else b["value"] < 1e-6
        assert set(b["window"]) == {"start", "end"}
    assert "breach: fraud-ab arm champion column input[3] psi" in res.stdout

    profile = pd.read_parquet(out / "profile.parquet")
    tables = profile[profile["column_name"] == ":table"]
    assert tables["request_count"].sum() == 80
    assert (tables["error_rate"] == 0).all()
    assert tables["quality"].notna().all() and (tables["quality_metric"] == "accuracy").all()
    # Accuracy per arm equals the share of right labels among that arm's labelled calls.
    arm_of = {rid: arm for rid, arm, _ in answers}
    for _, row in tables.iterrows():
        mine = [ok for rid, ok in expected.items() if arm_of[rid] == row["arm"]]
        assert row["labelled"] == len(mine)
        assert row["quality"] == pytest.approx(sum(mine) / len(mine))
    # 20 rows per call: every input column counts them.
    cols = profile[profile["column_name"] == "input[0]"]
    assert cols["count"].sum() == 80 * 20


def test_a_baseline_window_compares_the_table_with_itself(tmp_path):
    rng = np.random.default_rng(3)
    table = tmp_path / "table"
    write_table(table, "self", "champion", rng.normal(size=(300, 2)), start="2026-11-26T10:00:00Z")
    late = rng.normal(size=(300, 2))
    late[:, 1] += 5
    write_table(table, "self", "champion", late, name="part-1.parquet", start="2026-11-27T10:00:00Z")
    out = tmp_path / "metrics"
    res = monitor(table, "--endpoint", "self", "--baseline-window",
                  "2026-11-26T00:00:00Z..2026-11-27T00:00:00Z", "--out", out, "--window", "1d")
    assert res.returncode == 0, res.stderr
    drift = pd.read_parquet(out / "drift.parquet")
    day2 = drift[drift["window_start"] == pd.Timestamp("2026-11-27T00:00:00Z")].set_index("column_name")
    assert bool(day2.loc["x[1]", "psi_breach"]) and not bool(day2.loc["x[0]", "psi_breach"])
    # The baseline's own day is at distance zero; outputs are compared too.
    day1 = drift[drift["window_start"] == pd.Timestamp("2026-11-26T00:00:00Z")]
    assert (day1["psi"].abs() < 1e-12).all() and (day1["ks_statistic"] == 0).all()
    assert "score" in set(drift["column_name"])


def test_watch_picks_up_a_new_file_and_stops_on_sigterm(tmp_path):
    rng = np.random.default_rng(4)
    table = tmp_path / "table"
    first = write_table(table, "w", "champion", rng.normal(size=(50, 2)))
    baseline = tmp_path / "baseline.parquet"
    pq.write_table(pa.table({"x[0]": rng.normal(size=100), "x[1]": rng.normal(size=100)}), baseline)
    out = tmp_path / "metrics"
    proc = subprocess.Popen(
        [str(PODIUM_BIN), "monitor", str(table), "--endpoint", "w", "--baseline", str(baseline),
         "--out", str(out), "--watch", "--poll-secs", "0.2"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        def requests_counted():
            try:
                p = pd.read_parquet(out / "profile.parquet")
            except (FileNotFoundError, OSError):
                return None
            return int(p.loc[p["column_name"] == ":table", "request_count"].sum())

        def wait_for(value):
            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline:
                if requests_counted() == value:
                    return
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.05)
            pytest.fail(f"profile never counted {value} requests (last: {requests_counted()})")

        wait_for(50)
        # A new file appears (written aside, then moved in, as the server publishes).
        staged = tmp_path / "part-1.parquet"
        shutil.copy(first, staged)
        staged.rename(first.parent / "part-1.parquet")
        wait_for(100)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("monitor --watch did not stop on SIGTERM")
    assert proc.returncode == 0, stderr
    assert "stopping" in stderr
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())


def test_bad_input_is_refused_with_the_fix(tmp_path):
    rng = np.random.default_rng(6)
    table = tmp_path / "table"
    write_table(table, "fixed", "champion", rng.normal(size=(20, 2)))
    (table / "_feedback" / "request_date=2026-11-27").mkdir(parents=True)
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"x[0]": [1.0, 2.0], "x[1]": [1.0, 2.0]}), good)
    out = tmp_path / "metrics"

    res = monitor(tmp_path / "missing", "--endpoint", "fixed", "--baseline", good, "--out", out)
    assert res.returncode != 0 and "--table-dir" in res.stderr, res.stderr

    res = monitor(table, "--endpoint", "nope", "--baseline", good, "--out", out)
    assert res.returncode != 0
    assert 'no endpoint "nope"' in res.stderr and "it holds: fixed" in res.stderr, res.stderr
    res = monitor(table, "--endpoint", "_feedback", "--baseline", good, "--out", out)
    assert res.returncode != 0 and "it holds: fixed" in res.stderr, res.stderr

    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"a": [1.0], "b": [2.0], "c": [3.0]}), bad)
    res = monitor(table, "--endpoint", "fixed", "--baseline", bad, "--out", out)
    assert res.returncode != 0
    assert "x[0], x[1]" in res.stderr and "exactly 2 feature columns in signature order" in res.stderr, res.stderr

    res = monitor(table, "--endpoint", "fixed", "--out", out)
    assert res.returncode != 0 and "--baseline" in res.stderr, res.stderr
    res = monitor(table, "--endpoint", "fixed", "--baseline-window", "yesterday", "--out", out)
    assert res.returncode != 0 and "RFC 3339" in res.stderr, res.stderr
    res = monitor(table, "--endpoint", "fixed", "--baseline-window",
                  "2020-01-01T00:00:00Z..2020-01-02T00:00:00Z", "--out", out)
    assert res.returncode != 0 and "choose a range the table covers" in res.stderr, res.stderr
    res = monitor(table, "--endpoint", "fixed", "--baseline", good, "--out", out, "--window", "soon")
    assert res.returncode != 0 and "1h, 1d" in res.stderr, res.stderr
    assert not (out / "drift.parquet").exists()
