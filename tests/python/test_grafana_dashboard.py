"""The Grafana dashboard in deploy/grafana queries only metrics that a real
Podium exposes, with the types the queries assume (`*_bucket` of a
histogram, `rate()` of a counter)."""

from __future__ import annotations

import json
import re
import time

import requests

from conftest import REPO, run_podium

DASHBOARD = REPO / "deploy" / "grafana" / "podium.json"
METRIC = re.compile(r"\b(podium_[a-z_]+)")
TYPE_LINE = re.compile(r"^# TYPE (podium_[a-z_]+) (counter|gauge|histogram|summary)$", re.M)


def queried_metrics(dashboard: dict) -> dict[str, str]:
    """Metric name -> the type the dashboard's queries need."""
    wanted: dict[str, str] = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for name in METRIC.findall(target["expr"]):
                if name.endswith("_bucket"):
                    wanted[name.removesuffix("_bucket")] = "histogram"
                elif name.endswith("_total"):
                    wanted[name] = "counter"
                else:
                    wanted.setdefault(name, "gauge")
    return wanted


def test_dashboard_is_well_formed():
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "endpoint"} <= variables
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} queries nothing"
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            # every query names a Podium metric; rate() only over counters/histograms
            assert METRIC.search(target["expr"]), target["expr"]
            for inner in re.findall(r"rate\((podium_[a-z_]+)", target["expr"]):
                assert inner.endswith(("_total", "_bucket")), f"rate() of a gauge: {target['expr']}"


def test_every_queried_metric_exists(registry, tmp_path):
    wanted = queried_metrics(json.loads(DASHBOARD.read_text()))
    assert len(wanted) >= 25, sorted(wanted)
    config = tmp_path / "endpoints.toml"
    config.write_text(
        '[[endpoint]]\nname = "fraud-ab"\nmodel = "fraud"\n'
        'arms = [{ alias = "champion", weight = 90 }, { alias = "challenger", weight = 10 }]\n'
        'shadow = { alias = "challenger", fraction = 1.0, max_in_flight = 4 }\n'
    )
    body = {"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": [0.5] * 30}]}
    with run_podium(registry, tmp_path, "--config", str(config),
                    "--table-dir", str(tmp_path / "table"), "--table-roll-secs", "1") as srv:
        base = f"http://{srv.url}"
        for _ in range(5):
            assert requests.post(f"{base}/v2/models/fraud-ab/infer", json=body, timeout=30).status_code == 200
        # an error, so that result="error" series exist too
        bad = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [0.5] * 3}]}
        assert requests.post(f"{base}/v2/models/fraud-ab/infer", json=bad, timeout=30).status_code == 400

        # Shadow copies and the table's first file arrive in the background.
        deadline = time.monotonic() + 30
        while True:
            text = requests.get(f"{base}/metrics", timeout=30).text
            types = dict(TYPE_LINE.findall(text))
            missing = {n: t for n, t in wanted.items() if types.get(n) != t}
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert not missing, (
            "the dashboard queries metrics /metrics does not have (name: wanted type, found type): "
            + ", ".join(f"{n}: {t}, {types.get(n)}" for n, t in sorted(missing.items()))
        )
