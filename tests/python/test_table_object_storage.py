"""The inference table on object storage (`--table-dir s3://bucket/prefix`),
against a local S3-compatible server (moto) that the tests start, stop and
restart on 127.0.0.1, read back with boto3 and pyarrow the way users read it.

What is checked: every acknowledged request's row arrives exactly once under
the same partitions and file names as a local table; a storage outage never
fails a request, keeps the rows in the local spool (up to
--table-spool-max-bytes, beyond it rows are dropped and counted) and uploads
them once storage is back; storage that is down at SIGTERM leaves the files in
the spool for the next start, which uploads them.
"""

from __future__ import annotations

import io
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest
import requests
from botocore.config import Config

from conftest import HOST, run_podium

BUCKET = "tables"
PREFIX = "prod/inference"
DEADLINE_S = 60.0
BODY = {"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": [0.25] * 30}]}
KEY = re.compile(
    rf"^{PREFIX}/endpoint=fraud/request_date=\d{{4}}-\d{{2}}-\d{{2}}/part-\d{{8}}T\d{{6}}Z-[A-Za-z0-9._-]+-[0-9a-f-]{{36}}\.parquet$"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Moto:
    """A moto S3 server on 127.0.0.1:port that can be stopped and started
    again on the same port (it keeps its objects in memory: a restart
    starts empty)."""

    def __init__(self, logdir: Path):
        self.port = _free_port()
        self.logdir = logdir
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        exe = Path(sys.executable).parent / "moto_server"
        log = open(self.logdir / "moto.log", "ab")
        self.proc = subprocess.Popen(
            [str(exe), "-H", HOST, "-p", str(self.port)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                requests.get(self.endpoint, timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):
                assert self.proc.poll() is None, (self.logdir / "moto.log").read_text()
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.05)
        self.s3().create_bucket(Bucket=BUCKET)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)

    def s3(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1}),
        )

    def keys(self) -> list[str]:
        pages = self.s3().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX + "/")
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def rows(self) -> list[str]:
        """The request ids of every row of the inference table's objects."""
        ids = []
        for key in self.keys():
            if "/_feedback/" in key:
                continue
            body = self.s3().get_object(Bucket=BUCKET, Key=key)["Body"].read()
            ids.extend(pq.read_table(io.BytesIO(body)).column("request_id").to_pylist())
        return ids


@pytest.fixture
def moto(tmp_path, monkeypatch):
    server = Moto(tmp_path)
    server.start()
    # Podium reads the standard AWS environment.
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(name, value)
    yield server
    server.stop()


def _serve(registry, tmp_path, *extra, logs: Path | None = None):
    """podium serve on the moto bucket, spooling under tmp_path/spool."""
    return run_podium(
        registry,
        logs or tmp_path,
        "--table-dir", f"s3://{BUCKET}/{PREFIX}",
        "--table-spool-dir", str(tmp_path / "spool"),
        "--table-roll-secs", "0.3",
        "--drain-timeout-secs", "2",
        *extra,
    )


def _infer(srv) -> str:
    r = requests.post(f"http://{srv.url}/v2/models/fraud/infer", json=BODY, timeout=30)
    assert r.status_code == 200, r.text
    return r.headers["x-request-id"]


def _metric(srv, name: str) -> float:
    text = requests.get(f"http://{srv.url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _eventually(check, what: str):
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _spooled(tmp_path) -> list[Path]:
    return [p for p in (tmp_path / "spool").rglob("*.parquet") if "_journal" not in p.parts]


def test_every_acknowledged_row_is_uploaded_exactly_once(registry, tmp_path, moto):
    with _serve(registry, tmp_path) as srv:
        sent = [_infer(srv) for _ in range(20)]
        # Files are uploaded while serving, not only at shutdown.
        _eventually(lambda: _metric(srv, "podium_table_files_uploaded_total") > 0, "an upload")
        sent += [_infer(srv) for _ in range(20)]
    assert srv.proc.returncode == 0, srv.stderr_tail()

    rows = moto.rows()
    assert sorted(rows) == sorted(sent), "every acknowledged row, each once"
    keys = [k for k in moto.keys() if "/_feedback/" not in k]
    assert keys and all(KEY.match(k) for k in keys), keys
    # Nothing is left waiting, and no journal or unfinished file is uploaded.
    assert _spooled(tmp_path) == []
    assert not any("_journal" in k or "inprogress" in k for k in moto.keys())


def test_an_outage_keeps_rows_in_the_spool_and_uploads_them_when_storage_is_back(registry, tmp_path, moto):
    with _serve(registry, tmp_path) as srv:
        moto.stop()
        # Requests never notice.
        sent = [_infer(srv) for _ in range(30)]
        _eventually(lambda: _metric(srv, "podium_table_upload_errors_total") > 0, "a failed upload")
        _eventually(lambda: _spooled(tmp_path), "files waiting in the spool")
        assert _metric(srv, "podium_table_spool_bytes") > 0
        # Storage comes back (empty: moto keeps objects in memory).
        moto.start()
        _eventually(lambda: sorted(moto.rows()) == sorted(sent), "the outage's rows uploaded")
        assert _metric(srv, 'podium_table_rows_dropped_total{reason="spool_full"}') == 0
    assert srv.proc.returncode == 0
    assert sorted(moto.rows()) == sorted(sent), "no row twice"


def test_beyond_the_spool_bound_rows_are_dropped_and_counted_until_storage_is_back(registry, tmp_path, moto):
    with _serve(registry, tmp_path, "--table-spool-max-bytes", "1") as srv:
        moto.stop()
        kept = _infer(srv)
        # Its file completes in the spool, which is then over its bound.
        _eventually(lambda: _metric(srv, "podium_table_upload_errors_total") > 0, "a failed upload")
        dropped = [_infer(srv) for _ in range(5)]
        assert _metric(srv, 'podium_table_rows_dropped_total{reason="spool_full"}') == 5
        moto.start()
        _eventually(lambda: moto.rows() == [kept], "the kept row uploaded")
        _eventually(lambda: _metric(srv, "podium_table_spool_bytes") == 0, "an empty spool")
        # Below the bound again: rows are written.
        after = _infer(srv)
    assert srv.proc.returncode == 0
    rows = moto.rows()
    assert sorted(rows) == sorted([kept, after])
    assert not set(dropped) & set(rows)


def test_storage_down_at_shutdown_leaves_the_files_for_the_next_start(registry, tmp_path, moto):
    with _serve(registry, tmp_path) as srv:
        moto.stop()
        sent = [_infer(srv) for _ in range(10)]
    # SIGTERM: the files are closed; their upload fails until the drain budget ends.
    assert srv.proc.returncode == 0
    assert "uploaded at the next start" in srv.stderr_tail(20000)
    assert _spooled(tmp_path)

    moto.start()
    logs = tmp_path / "second"
    logs.mkdir()
    with _serve(registry, tmp_path, logs=logs) as srv2:
        _eventually(lambda: sorted(moto.rows()) == sorted(sent), "the leftovers uploaded at start")
    assert srv2.proc.returncode == 0
    assert _spooled(tmp_path) == []
