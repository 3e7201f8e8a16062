"""The inference table read the way users read it: pandas and DuckDB on the
directory Podium wrote, after tritonclient (HTTP binary and gRPC) calls.

Each row must come back with the partition columns (endpoint, request_date)
restored from the Hive directories, and the request ids Podium returned in
``x-request-id`` must match the rows one to one.
"""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import run_podium


def _fraud_input(module, binary: bool = True):
    x = np.random.default_rng(7).normal(size=(2, 30)).astype(np.float32)
    inp = module.InferInput("input", list(x.shape), "FP32")
    if module is httpclient:
        inp.set_data_from_numpy(x, binary_data=binary)
    else:
        inp.set_data_from_numpy(x)
    return x, inp


def test_pandas_and_duckdb_read_the_table(registry, tmp_path):
    table = tmp_path / "table"
    with run_podium(registry, tmp_path, "--table-dir", str(table)) as srv:
        ids = {}
        # A plain JSON request with the client's own id, over requests.
        body = {"id": "json-1", "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": [0.5] * 30}]}
        r = requests.post(f"http://{srv.url}/v2/models/fraud/infer", json=body, timeout=30)
        assert r.status_code == 200
        ids[r.headers["x-request-id"]] = ("rest", 200)
        # tritonclient HTTP: binary tensors in and out.
        x, inp = _fraud_input(httpclient)
        with httpclient.InferenceServerClient(srv.url) as c:
            result = c.infer("fraud", [inp], request_id="triton-http")
            probabilities = result.as_numpy("probabilities")
        # tritonclient gRPC.
        _, ginp = _fraud_input(grpcclient)
        with grpcclient.InferenceServerClient(srv.grpc_url) as g:
            g.infer("fraud", [ginp], request_id="triton-grpc")
        # A client error.
        r = requests.post(f"http://{srv.url}/v2/models/fraud/infer", data=b"{not json", timeout=30)
        assert r.status_code == 400
        ids[r.headers["x-request-id"]] = ("rest", 400)

    # Leaving the block stops the server with SIGTERM, which closes every file.
    assert srv.proc.returncode == 0
    df = pd.read_parquet(table)
    assert len(df) == 4, df
    assert set(ids) <= set(df["request_id"])
    assert (df["endpoint"].astype(str) == "fraud").all()
    today = pd.Timestamp.now(tz="UTC").date().isoformat()
    assert set(df["request_date"].astype(str)) <= {today, (pd.Timestamp(today) - pd.Timedelta(days=1)).date().isoformat()}
    assert (df["request_date"].astype(str) == df["request_time"].dt.strftime("%Y-%m-%d")).all()

    by_client = df.set_index("client_request_id")
    http_row = by_client.loc["triton-http"]
    assert http_row["protocol"] == "rest-binary"
    assert http_row["status_code"] == 200
    assert http_row["served_entity_id"] == "fraud/1"
    # The binary request is stored in the OIP JSON form, values intact.
    sent = json.loads(http_row["request"])
    np.testing.assert_array_equal(np.array(sent["inputs"][0]["data"], dtype=np.float32).reshape(2, 30), x)
    answered = json.loads(http_row["response"])
    out = {o["name"]: o for o in answered["outputs"]}
    np.testing.assert_array_equal(np.array(out["probabilities"]["data"], dtype=np.float32).reshape(2, 2), probabilities)

    grpc_row = by_client.loc["triton-grpc"]
    assert grpc_row["protocol"] == "grpc"
    assert grpc_row["grpc_status"] == 0
    assert json.loads(grpc_row["request"])["inputs"][0]["shape"] == [2, 30]

    bad = df[df["status_code"] == 400].iloc[0]
    assert "malformed" in bad["error"]
    assert json.loads(bad["response"]) == {"error": bad["error"]}

    # DuckDB finds the partitions by itself and types request_date as a DATE.
    con = duckdb.connect()
    rows = con.sql(
        f"SELECT endpoint, typeof(request_date), status_code, count(*) FROM read_parquet('{table}/**/*.parquet') "
        "GROUP BY ALL ORDER BY status_code"
    ).fetchall()
    assert rows == [("fraud", "DATE", 200, 3), ("fraud", "DATE", 400, 1)], rows
    p50 = con.execute(
        f"SELECT quantile_cont(total_duration_ms, 0.5) FROM read_parquet('{table}/**/*.parquet') WHERE status_code = 200"
    ).fetchone()[0]
    assert p50 > 0


@pytest.mark.parametrize(
    ("flag", "codec"),
    [("snappy", "SNAPPY"), ("lz4", "LZ4_RAW"), ("zstd", "ZSTD"), ("none", "UNCOMPRESSED")],
)
def test_every_table_compression_is_read_back_by_pandas_and_duckdb(registry, tmp_path, flag, codec):
    table = tmp_path / "table"
    rng = np.random.default_rng(11)
    sent = [rng.normal(size=30).astype(np.float32) for _ in range(20)]
    with run_podium(registry, tmp_path, "--table-dir", str(table), "--table-compression", flag) as srv:
        for x in sent:
            body = {"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": x.tolist()}]}
            r = requests.post(f"http://{srv.url}/v2/models/fraud/infer", json=body, timeout=30)
            assert r.status_code == 200, r.text
    assert srv.proc.returncode == 0

    # DuckDB names the codec each column chunk was written with.
    con = duckdb.connect()
    codecs = con.sql(
        f"SELECT DISTINCT compression FROM parquet_metadata('{table}/**/*.parquet')"
    ).fetchall()
    assert codecs == [(codec,)], codecs
    # Both readers decode every row, payloads intact.
    df = pd.read_parquet(table).sort_values("request_time")
    assert len(df) == len(sent)
    stored = [np.array(json.loads(r)["inputs"][0]["data"], dtype=np.float32) for r in df["request"]]
    np.testing.assert_array_equal(np.stack(stored), np.stack(sent))
    total = con.execute(
        f"SELECT count(*), count(DISTINCT request) FROM read_parquet('{table}/**/*.parquet')"
    ).fetchone()
    assert total == (len(sent), len(sent))
