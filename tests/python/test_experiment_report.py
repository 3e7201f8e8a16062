"""The feedback table and `podium experiment report`, checked as a user would.

A server with an inference table runs an experiment (the readout endpoints of
test_experiment_readout.py); feedback is posted in batches; the server stops.
Then:

- the feedback table reads back with pyarrow: its columns and types, its
  ``_feedback/request_date=YYYY-MM-DD`` partitions, every posted item once,
  and a join with the inference table on ``request_id`` (which pyarrow reads
  without mistaking ``_feedback`` for a partition);
- ``podium experiment report --json`` prints the numbers the live readout
  answered (counts, metric values, intervals, p-values, the always-valid
  p-value, decisions), and they equal scipy/statsmodels on the same data;
- ``--html`` writes one page that needs no network: it parses, it names no
  URL of any kind, and it holds the three charts and the summary table.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import uuid
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import requests

from conftest import PODIUM_BIN, run_podium
from test_experiment_readout import BATCHES, CALLS, CONFIG, call, check_readout, msprt_p


def report(table, endpoint, config, *extra):
    res = subprocess.run(
        [str(PODIUM_BIN), "experiment", "report", str(table), "--endpoint", endpoint,
         "--config", str(config), *extra],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def same_numbers(offline, live):
    """Everything but latency (the table's total time is measured a moment
    after the readout's) and `since` (server start vs first call)."""
    for o, l in zip(offline["arms"], live["arms"], strict=True):
        for key in ("arm", "alias", "version", "weight", "requests", "errors", "error_rate", "feedback", "metric"):
            assert o[key] == l[key], (key, o, l)
    assert offline["srm"] == live["srm"]
    assert offline["comparisons"] == live["comparisons"]
    for key in ("endpoint", "experiment", "model", "metric", "baseline", "alpha", "confidence", "min_samples"):
        assert offline[key] == live[key], key


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: dict[str, int] = {}
        self.attrs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.attrs.extend(f"{k}={v}" for k, v in attrs)


@pytest.mark.parametrize("endpoint, metric", [("fraud-acc", "accuracy"), ("fraud-conv", "conversion")])
def test_the_report_reads_the_tables_and_matches_the_live_readout(registry, tmp_path, endpoint, metric):
    config = tmp_path / "podium.toml"
    config.write_text(CONFIG)
    table = tmp_path / "table"
    rng = np.random.default_rng(7)
    posted = []
    with run_podium(registry, tmp_path, "--config", str(config), "--table-dir", str(table)) as srv, \
            requests.Session() as session:
        base = f"http://{srv.url}"
        made = [call(session, base, endpoint, rng, f"user-{i}") for i in range(CALLS)]
        calls = {arm: sum(1 for _, a, _ in made if a == arm) for arm in ("champion", "challenger")}
        feedback = []
        for request_id, arm, predicted in made:
            if rng.random() < 0.1:
                continue
            if metric == "accuracy":
                label = int(rng.random() < 0.5)
            else:
                label = bool(rng.random() < (0.6 if arm == "challenger" else 0.15))
            feedback.append((request_id, arm, predicted, label))
        outcomes = {"champion": [], "challenger": []}
        always_valid = 1.0
        for k in range(BATCHES):
            batch = feedback[k::BATCHES]
            items = [{"request_id": rid, "label": label} for rid, _, _, label in batch]
            items.append({"request_id": str(uuid.uuid4()), "label": 1})
            r = session.post(f"{base}/v2/feedback", json={"feedback": items}, timeout=30)
            assert r.status_code == 200, r.text
            posted.extend(items)
            for _, arm, predicted, label in batch:
                if metric == "accuracy":
                    outcomes[arm].append(1.0 if label == predicted else 0.0)
                else:
                    outcomes[arm].append(float(label))
            always_valid = msprt_p(always_valid, outcomes["challenger"], outcomes["champion"], True)
        live = session.get(f"{base}/admin/experiments/{endpoint}", timeout=30).json()
    # The server stopped (SIGTERM): every file is closed.

    fb = ds.dataset(table / "_feedback", format="parquet", partitioning="hive")
    fb_table = fb.to_table()
    assert fb_table.schema.field("request_id").type == pa.string()
    assert fb_table.schema.field("client_request_id").type == pa.string()
    assert fb_table.schema.field("label").type == pa.string()
    assert fb_table.schema.field("received_time").type == pa.timestamp("us", tz="UTC")
    files = list((table / "_feedback").rglob("*.parquet"))
    assert files and all(re.fullmatch(r"request_date=\d{4}-\d{2}-\d{2}", f.parent.name) for f in files)
    got = sorted(zip(fb_table["request_id"].to_pylist(), fb_table["label"].to_pylist()))
    want = sorted((i["request_id"], json.dumps(i["label"])) for i in posted)
    assert got == want

    # The inference table read as a whole: `_feedback` and `_journal` are
    # not partitions, so only calls come back.
    calls_table = pq.read_table(table)
    assert set(calls_table.column_names) >= {"request_id", "arm", "endpoint"}
    calls_df = calls_table.to_pandas()
    calls_df = calls_df[calls_df["endpoint"] == endpoint]
    assert len(calls_df) == CALLS
    joined = calls_df.merge(fb_table.to_pandas(), on="request_id")
    assert len(joined) == len(feedback)
    assert joined.groupby("arm").size().to_dict() == {
        arm: sum(1 for _, a, _, _ in feedback if a == arm) for arm in ("champion", "challenger")
    }

    offline = json.loads(report(table, endpoint, config, "--json"))
    same_numbers(offline, live)
    check_readout(offline, calls, outcomes, always_valid, metric)

    text = report(table, endpoint, config)
    assert f"endpoint {endpoint}" in text and "SRM: ok" in text, text
    assert f"{BATCHES} feedback items name no call" in text, text

    page_path = tmp_path / "report.html"
    report(table, endpoint, config, "--html", str(page_path))
    html = page_path.read_text()
    page = Page()
    page.feed(html)
    page.close()
    assert page.tags.get("svg") == 3, page.tags
    assert page.tags.get("polygon", 0) >= 1, "the metric's interval band"
    assert page.tags.get("polyline", 0) >= 6, "a line per arm in each chart"
    assert page.tags.get("table", 0) == 2
    for banned in ("http:", "https:", "//", "url(", "@import"):
        assert banned not in html, f"the page holds {banned!r}"
    assert not any(a.startswith(("src=", "href=")) for a in page.attrs), page.attrs
    assert page.tags.get("script", 0) == 0 and page.tags.get("link", 0) == 0
