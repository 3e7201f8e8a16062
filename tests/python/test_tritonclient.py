"""Black-box tests of Podium with NVIDIA's own `tritonclient[http]`.

Everything here talks to a real `podium serve` over 127.0.0.1 (see conftest.py)
and checks results against onnxruntime run in-process on the same .onnx files.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import struct
import time

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


HOST = "127.0.0.1"
BATCH = 4
FRAUD_FEATURES = 30
MLP_FEATURES = 64


def rand_batch(features: int, seed: int = 0, batch: int = BATCH) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, features)).astype(np.float32)


def raises_from(fn, *args, **kwargs) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        fn(*args, **kwargs)
    return info.value


def status_of(e: InferenceServerException) -> str:
    return str(e.status())


def message_of(e: InferenceServerException) -> str:
    return e.message() or ""


# ---------------------------------------------------------------------------
# 1. health and metadata
# ---------------------------------------------------------------------------


def test_server_live_and_ready(client):
    assert client.is_server_live() is True
    assert client.is_server_ready() is True


def test_server_metadata(client):
    md = client.get_server_metadata()
    assert isinstance(md.get("name"), str) and md["name"]
    assert isinstance(md.get("version"), str) and md["version"]
    assert isinstance(md.get("extensions"), list)
    assert "binary_tensor_data" in md["extensions"]


@pytest.mark.parametrize(
    "model,version",
    [
        ("fraud", ""),
        ("fraud", "1"),
        ("fraud", "2"),
        ("fraud", "champion"),
        ("fraud", "challenger"),
        ("fraud", "latest"),
        ("mlp", ""),
        ("alltypes", ""),
    ],
)
def test_model_ready(client, model, version):
    assert client.is_model_ready(model, model_version=version) is True


@pytest.mark.parametrize(
    "model,version",
    [("no_such_model", ""), ("fraud", "99"), ("fraud", "no_such_alias")],
)
def test_model_not_ready_when_unknown(client, model, version):
    assert client.is_model_ready(model, model_version=version) is False


def _by_name(tensors):
    out = {}
    for t in tensors:
        assert t["name"] not in out, f"duplicate tensor {t['name']} in metadata"
        out[t["name"]] = (t["datatype"], list(t["shape"]))
    return out


FRAUD_INPUTS = {"input": ("FP32", [-1, FRAUD_FEATURES])}
FRAUD_OUTPUTS = {"label": ("INT64", [-1]), "probabilities": ("FP32", [-1, 2])}


@pytest.mark.parametrize(
    "version,concrete",
    [("", "1"), ("challenger", "2"), ("2", "2"), ("champion", "1")],
)
def test_fraud_model_metadata(client, version, concrete):
    md = client.get_model_metadata("fraud", model_version=version)
    assert md["name"] == "fraud"
    assert md["platform"] == "onnx_onnxv1"
    versions = md["versions"]
    assert isinstance(versions, list) and versions
    assert all(isinstance(v, str) for v in versions), versions
    assert concrete in versions, f"version {concrete} not listed in {versions}"
    assert set(versions) <= {"1", "2"}, versions
    assert _by_name(md["inputs"]) == FRAUD_INPUTS
    assert _by_name(md["outputs"]) == FRAUD_OUTPUTS


def test_mlp_model_metadata(client):
    md = client.get_model_metadata("mlp")
    assert md["name"] == "mlp"
    assert md["platform"] == "onnx_onnxv1"
    assert "1" in md["versions"]
    assert _by_name(md["inputs"]) == {"input": ("FP32", [-1, MLP_FEATURES])}
    assert _by_name(md["outputs"]) == {"logits": ("FP32", [-1, 10])}


# OIP datatype, numpy dtype, alltypes tensor suffix
ALLTYPES = [
    ("BOOL", np.bool_, "bool"),
    ("INT8", np.int8, "int8"),
    ("INT16", np.int16, "int16"),
    ("INT32", np.int32, "int32"),
    ("INT64", np.int64, "int64"),
    ("UINT8", np.uint8, "uint8"),
    ("UINT16", np.uint16, "uint16"),
    ("UINT32", np.uint32, "uint32"),
    ("UINT64", np.uint64, "uint64"),
    ("FP16", np.float16, "fp16"),
    ("FP32", np.float32, "fp32"),
    ("FP64", np.float64, "fp64"),
    ("BYTES", np.object_, "string"),
]


def test_alltypes_model_metadata(client):
    md = client.get_model_metadata("alltypes")
    assert md["platform"] == "onnx_onnxv1"
    assert _by_name(md["inputs"]) == {f"in_{s}": (dt, [-1, -1]) for dt, _, s in ALLTYPES}
    assert _by_name(md["outputs"]) == {f"out_{s}": (dt, [-1, -1]) for dt, _, s in ALLTYPES}


@pytest.mark.parametrize(
    "model,version",
    [("no_such_model", ""), ("fraud", "99"), ("fraud", "no_such_alias")],
)
def test_model_metadata_unknown_is_404(client, model, version):
    e = raises_from(client.get_model_metadata, model, model_version=version)
    assert status_of(e) == "404", f"{status_of(e)}: {message_of(e)}"
    assert message_of(e), "404 without an error message"


# ---------------------------------------------------------------------------
# 2. inference vs onnxruntime, binary and JSON
# ---------------------------------------------------------------------------

# (model, model_version argument, concrete version, onnx file key, features)
ROUTES = [
    ("fraud", "", "1", "fraud_v1", FRAUD_FEATURES),
    ("fraud", "champion", "1", "fraud_v1", FRAUD_FEATURES),
    ("fraud", "1", "1", "fraud_v1", FRAUD_FEATURES),
    ("fraud", "2", "2", "fraud_v2", FRAUD_FEATURES),
    ("fraud", "challenger", "2", "fraud_v2", FRAUD_FEATURES),
    ("fraud", "latest", "2", "fraud_v2", FRAUD_FEATURES),
    ("mlp", "", "1", "mlp_v1", MLP_FEATURES),
]
ROUTE_IDS = [f"{m}@{v or 'default'}" for m, v, *_ in ROUTES]

EXPECTED_OUTPUTS = {
    "fraud": {"label": ("INT64", np.int64), "probabilities": ("FP32", np.float32)},
    "mlp": {"logits": ("FP32", np.float32)},
}


def _infer(client, model, version, x, *, binary_in, binary_out, explicit_outputs=True):
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    outputs = None
    if explicit_outputs:
        outputs = [
            httpclient.InferRequestedOutput(name, binary_data=binary_out)
            for name in EXPECTED_OUTPUTS[model]
        ]
    return client.infer(model, [inp], model_version=version, outputs=outputs)


def _check_against_ort(result, model, concrete, key, x, ort_run, *, binary_out):
    resp = result.get_response()
    assert resp["model_name"] == model
    assert resp["model_version"] == concrete, (
        f"model_version {resp['model_version']!r}, expected concrete version {concrete!r}"
    )
    expected = ort_run(key, {"input": x})
    returned = {o["name"]: o for o in resp["outputs"]}
    assert set(returned) == set(EXPECTED_OUTPUTS[model])
    for name, (datatype, np_dtype) in EXPECTED_OUTPUTS[model].items():
        out = returned[name]
        assert out["datatype"] == datatype
        params = out.get("parameters") or {}
        if binary_out:
            assert "binary_data_size" in params, f"{name} not returned as binary: {out}"
            assert "data" not in out
        else:
            assert "binary_data_size" not in params, f"{name} returned as binary: {out}"
            assert "data" in out
        got = result.as_numpy(name)
        want = expected[name]
        assert got.dtype == np_dtype, f"{name}: dtype {got.dtype}"
        assert got.shape == want.shape, f"{name}: shape {got.shape} vs {want.shape}"
        assert list(out["shape"]) == list(want.shape)
        if np.issubdtype(np_dtype, np.integer) or binary_out:
            # labels are exact always; binary floats must be bit-exact
            np.testing.assert_array_equal(got, want, err_msg=name)
            if binary_out and np.issubdtype(np_dtype, np.floating):
                assert got.tobytes() == want.tobytes(), f"{name}: not bit-exact"
        else:
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("model,version,concrete,key,features", ROUTES, ids=ROUTE_IDS)
def test_infer_binary_matches_onnxruntime(client, ort_run, model, version, concrete, key, features):
    x = rand_batch(features)
    result = _infer(client, model, version, x, binary_in=True, binary_out=True)
    _check_against_ort(result, model, concrete, key, x, ort_run, binary_out=True)


@pytest.mark.parametrize("model,version,concrete,key,features", ROUTES, ids=ROUTE_IDS)
def test_infer_json_matches_onnxruntime(client, ort_run, model, version, concrete, key, features):
    x = rand_batch(features)
    result = _infer(client, model, version, x, binary_in=False, binary_out=False)
    _check_against_ort(result, model, concrete, key, x, ort_run, binary_out=False)


@pytest.mark.parametrize(
    "model,version,concrete,key,features",
    [ROUTES[0], ROUTES[4], ROUTES[6]],
    ids=[ROUTE_IDS[0], ROUTE_IDS[4], ROUTE_IDS[6]],
)
def test_infer_implicit_binary_outputs(client, ort_run, model, version, concrete, key, features):
    """No `outputs` in the request: tritonclient sets parameters.binary_data_output=true,
    so every output must come back, in binary."""
    x = rand_batch(features, seed=1)
    result = _infer(client, model, version, x, binary_in=True, binary_out=True, explicit_outputs=False)
    _check_against_ort(result, model, concrete, key, x, ort_run, binary_out=True)


@pytest.mark.parametrize("binary_in,binary_out", [(True, False), (False, True)])
def test_infer_mixed_binary_json(client, ort_run, binary_in, binary_out):
    x = rand_batch(FRAUD_FEATURES, seed=2)
    result = _infer(client, "fraud", "challenger", x, binary_in=binary_in, binary_out=binary_out)
    _check_against_ort(result, "fraud", "2", "fraud_v2", x, ort_run, binary_out=binary_out)


def test_infer_single_row_and_larger_batch(client, ort_run):
    for batch in (1, 17):
        x = rand_batch(FRAUD_FEATURES, seed=3, batch=batch)
        result = _infer(client, "fraud", "", x, binary_in=True, binary_out=True)
        _check_against_ort(result, "fraud", "1", "fraud_v1", x, ort_run, binary_out=True)


def test_champion_and_challenger_really_differ(client, ort_run):
    """Guards the routing tests above: they only prove routing if v1 != v2."""
    x = rand_batch(FRAUD_FEATURES)
    v1 = ort_run("fraud_v1", {"input": x})["probabilities"]
    v2 = ort_run("fraud_v2", {"input": x})["probabilities"]
    assert not np.array_equal(v1, v2), "fixture models fraud v1 and v2 compute the same thing"
    r1 = _infer(client, "fraud", "champion", x, binary_in=True, binary_out=True)
    r2 = _infer(client, "fraud", "challenger", x, binary_in=True, binary_out=True)
    assert not np.array_equal(r1.as_numpy("probabilities"), r2.as_numpy("probabilities"))


# ---------------------------------------------------------------------------
# 3. every datatype round-trips through the Identity model
# ---------------------------------------------------------------------------

SHAPE = (2, 3)
STRINGS = [
    b"",
    "héllo wörld".encode("utf-8"),
    "日本語 ✓".encode("utf-8"),
    b"plain ascii",
    "emoji \U0001F680".encode("utf-8"),
    b"",
]


def _values(np_dtype, finite_only: bool) -> np.ndarray:
    if np_dtype is np.bool_:
        v = np.array([True, False, True, False, False, True])
    elif np_dtype is np.object_:
        v = np.array(STRINGS, dtype=np.object_)
    elif np.issubdtype(np_dtype, np.integer):
        info = np.iinfo(np_dtype)
        extra = [0, 1, 42, info.max - 1]
        if np_dtype in (np.int64, np.uint64):
            extra[2] = 2**53 + 1  # not representable as f64: catches a float detour
        v = np.array([info.min, info.max, *extra], dtype=np_dtype)
    else:
        info = np.finfo(np_dtype)
        if finite_only:
            big = 1e300 if np_dtype is np.float64 else float(info.max)
            raw = [0.0, -1.5, 3.25, big, float(info.tiny), -0.1]
        else:
            raw = [float("nan"), float("inf"), float("-inf"), -0.0, float(info.smallest_subnormal), 0.1]
        v = np.array(raw, dtype=np_dtype)
    return v.reshape(SHAPE)


def _alltypes_inputs(json_types=(), finite_only=False):
    """All 13 inputs; datatypes named in json_types go as JSON, the rest binary."""
    inputs, sent = [], {}
    for datatype, np_dtype, suffix in ALLTYPES:
        arr = _values(np_dtype, finite_only)
        inp = httpclient.InferInput(f"in_{suffix}", list(arr.shape), datatype)
        inp.set_data_from_numpy(arr, binary_data=datatype not in json_types)
        inputs.append(inp)
        sent[suffix] = arr
    return inputs, sent


def _assert_same_tensor(got, want, datatype, suffix, *, bit_exact):
    assert got is not None, f"out_{suffix} missing"
    assert got.shape == want.shape, f"out_{suffix}: shape {got.shape} vs {want.shape}"
    assert got.dtype == want.dtype, f"out_{suffix}: dtype {got.dtype} vs {want.dtype}"
    if datatype == "BYTES":
        # binary gives bytes objects; JSON gives str, which must be the utf-8 text
        as_bytes = [g if isinstance(g, bytes) else str(g).encode("utf-8") for g in got.flatten()]
        assert as_bytes == list(want.flatten()), f"out_string: {got!r}"
    elif np.issubdtype(want.dtype, np.floating):
        if bit_exact:
            assert got.tobytes() == want.tobytes(), f"out_{suffix}: {got!r} != {want!r}"
        else:
            rtol = 1e-12 if want.dtype == np.float64 else 1e-6
            np.testing.assert_allclose(got, want, rtol=rtol, atol=0, err_msg=suffix)
    else:
        np.testing.assert_array_equal(got, want, err_msg=suffix)


def test_alltypes_binary_roundtrip(client):
    inputs, sent = _alltypes_inputs()
    outputs = [httpclient.InferRequestedOutput(f"out_{s}", binary_data=True) for _, _, s in ALLTYPES]
    result = client.infer("alltypes", inputs, outputs=outputs)
    resp = result.get_response()
    assert resp["model_version"] == "1"
    returned = {o["name"]: o for o in resp["outputs"]}
    assert set(returned) == {f"out_{s}" for _, _, s in ALLTYPES}
    for datatype, _, suffix in ALLTYPES:
        assert returned[f"out_{suffix}"]["datatype"] == datatype
        assert list(returned[f"out_{suffix}"]["shape"]) == list(SHAPE)
        _assert_same_tensor(result.as_numpy(f"out_{suffix}"), sent[suffix], datatype, suffix, bit_exact=True)


def test_alltypes_json_roundtrip(client):
    """Every datatype but FP16 as JSON in and out (FP16 travels binary alongside)."""
    json_types = {dt for dt, _, _ in ALLTYPES if dt != "FP16"}
    inputs, sent = _alltypes_inputs(json_types=json_types, finite_only=True)
    outputs = [
        httpclient.InferRequestedOutput(f"out_{s}", binary_data=(dt == "FP16"))
        for dt, _, s in ALLTYPES
    ]
    result = client.infer("alltypes", inputs, outputs=outputs)
    resp = result.get_response()
    returned = {o["name"]: o for o in resp["outputs"]}
    assert set(returned) == {f"out_{s}" for _, _, s in ALLTYPES}
    for datatype, _, suffix in ALLTYPES:
        out = returned[f"out_{suffix}"]
        assert out["datatype"] == datatype
        if datatype != "FP16":
            assert "data" in out and "binary_data_size" not in (out.get("parameters") or {})
        _assert_same_tensor(
            result.as_numpy(f"out_{suffix}"), sent[suffix], datatype, suffix, bit_exact=(datatype == "FP16")
        )
    # JSON booleans must really be JSON booleans, and BYTES JSON strings
    assert returned["out_bool"]["data"] == [True, False, True, False, False, True]
    assert returned["out_string"]["data"] == [s.decode("utf-8") for s in STRINGS]


def test_alltypes_fp16_as_json(client):
    """FP16 in JSON is optional (Triton refuses it). Podium may accept it or
    reject it cleanly with a 400 that says why; nothing else."""
    inputs, sent = _alltypes_inputs(json_types={"FP16"}, finite_only=True)
    outputs = [httpclient.InferRequestedOutput("out_fp16", binary_data=False)]
    try:
        result = client.infer("alltypes", inputs, outputs=outputs)
    except InferenceServerException as e:
        assert status_of(e) == "400", f"{status_of(e)}: {message_of(e)}"
        assert re.search(r"fp16|float16|half", message_of(e), re.I), message_of(e)
        return
    got = result.as_numpy("out_fp16")
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, sent["fp16"])


@pytest.mark.parametrize("binary_out", [True, False], ids=["binary", "json"])
def test_alltypes_requested_subset_only(client, binary_out):
    inputs, sent = _alltypes_inputs(finite_only=True)
    outputs = [
        httpclient.InferRequestedOutput("out_fp32", binary_data=binary_out),
        httpclient.InferRequestedOutput("out_string", binary_data=binary_out),
    ]
    result = client.infer("alltypes", inputs, outputs=outputs)
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert sorted(names) == ["out_fp32", "out_string"]
    assert result.as_numpy("out_int8") is None
    _assert_same_tensor(result.as_numpy("out_fp32"), sent["fp32"], "FP32", "fp32", bit_exact=binary_out)
    _assert_same_tensor(result.as_numpy("out_string"), sent["string"], "BYTES", "string", bit_exact=True)


def test_alltypes_other_shapes(client):
    """[-1, -1] means any 2-D shape: a single column and a single row."""
    for shape in [(5, 1), (1, 7)]:
        arrs = {}
        inputs = []
        for datatype, np_dtype, suffix in ALLTYPES:
            n = shape[0] * shape[1]
            if np_dtype is np.object_:
                arr = np.array([f"s{i}é".encode() for i in range(n)], dtype=np.object_)
            elif np_dtype is np.bool_:
                arr = np.arange(n) % 2 == 0
            else:
                arr = np.arange(n).astype(np_dtype)
            arr = arr.reshape(shape)
            inp = httpclient.InferInput(f"in_{suffix}", list(shape), datatype)
            inp.set_data_from_numpy(arr, binary_data=True)
            inputs.append(inp)
            arrs[suffix] = arr
        result = client.infer("alltypes", inputs)
        for datatype, _, suffix in ALLTYPES:
            _assert_same_tensor(result.as_numpy(f"out_{suffix}"), arrs[suffix], datatype, suffix, bit_exact=True)


# ---------------------------------------------------------------------------
# 4. errors through tritonclient
# ---------------------------------------------------------------------------


def _fraud_input(name="input", shape=(BATCH, FRAUD_FEATURES), datatype="FP32", np_dtype=np.float32):
    x = np.random.default_rng(5).standard_normal(shape).astype(np_dtype)
    inp = httpclient.InferInput(name, list(shape), datatype)
    inp.set_data_from_numpy(x, binary_data=True)
    return inp


def _assert_still_serving(client, ort_run):
    assert client.is_server_live() is True
    assert client.is_server_ready() is True
    x = rand_batch(FRAUD_FEATURES, seed=9)
    result = _infer(client, "fraud", "", x, binary_in=True, binary_out=True)
    _check_against_ort(result, "fraud", "1", "fraud_v1", x, ort_run, binary_out=True)


def test_error_unknown_model(client, ort_run):
    e = raises_from(client.infer, "no_such_model_xyz", [_fraud_input()])
    assert status_of(e) == "404", f"{status_of(e)}: {message_of(e)}"
    assert "no_such_model_xyz" in message_of(e)
    _assert_still_serving(client, ort_run)


@pytest.mark.parametrize("version", ["99", "no_such_alias"])
def test_error_unknown_version_or_alias(client, ort_run, version):
    e = raises_from(client.infer, "fraud", [_fraud_input()], model_version=version)
    assert status_of(e) == "404", f"{status_of(e)}: {message_of(e)}"
    assert message_of(e)
    _assert_still_serving(client, ort_run)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_error_wrong_input_name(client, ort_run, binary):
    x = rand_batch(FRAUD_FEATURES)
    inp = httpclient.InferInput("not_the_input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    e = raises_from(client.infer, "fraud", [inp])
    assert status_of(e) == "400", f"{status_of(e)}: {message_of(e)}"
    assert "not_the_input" in message_of(e)
    _assert_still_serving(client, ort_run)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_error_wrong_shape(client, ort_run, binary):
    x = rand_batch(FRAUD_FEATURES - 1)  # [4, 29] against [-1, 30]
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    e = raises_from(client.infer, "fraud", [inp])
    assert status_of(e) == "400", f"{status_of(e)}: {message_of(e)}"
    assert re.search(r"\b29\b", message_of(e)), f"shape not named: {message_of(e)}"
    _assert_still_serving(client, ort_run)


def test_error_wrong_rank(client, ort_run):
    e = raises_from(client.infer, "fraud", [_fraud_input(shape=(BATCH * FRAUD_FEATURES,))])
    assert status_of(e) == "400", f"{status_of(e)}: {message_of(e)}"
    _assert_still_serving(client, ort_run)


def test_error_wrong_datatype(client, ort_run):
    e = raises_from(client.infer, "fraud", [_fraud_input(datatype="FP64", np_dtype=np.float64)])
    assert status_of(e) == "400", f"{status_of(e)}: {message_of(e)}"
    assert "FP64" in message_of(e).upper(), message_of(e)
    _assert_still_serving(client, ort_run)


def test_error_unknown_requested_output(client, ort_run):
    out = httpclient.InferRequestedOutput("no_such_output", binary_data=True)
    e = raises_from(client.infer, "fraud", [_fraud_input()], outputs=[out])
    assert status_of(e) == "400", f"{status_of(e)}: {message_of(e)}"
    assert "no_such_output" in message_of(e)
    _assert_still_serving(client, ort_run)


def test_duplicate_requested_output(client, ort_run):
    """The same output named twice is a client mistake: 400 naming it."""
    x = rand_batch(FRAUD_FEATURES, seed=7, batch=1)
    outputs = [httpclient.InferRequestedOutput("label", binary_data=True) for _ in range(2)]
    with pytest.raises(InferenceServerException) as exc:
        client.infer("fraud", [_fraud_input(shape=x.shape)], outputs=outputs)
    assert status_of(exc.value) == "400", f"{status_of(exc.value)}: {message_of(exc.value)}"
    assert 'output "label" is requested twice' in message_of(exc.value)
    _assert_still_serving(client, ort_run)


def test_error_missing_input(client, ort_run):
    inputs, _ = _alltypes_inputs()
    e = raises_from(client.infer, "alltypes", [i for i in inputs if i.name() != "in_int16"])
    assert status_of(e) == "400", f"{status_of(e)}: {message_of(e)}"
    assert "in_int16" in message_of(e)
    _assert_still_serving(client, ort_run)


# ---------------------------------------------------------------------------
# 5. malformed storm with the standard library
# ---------------------------------------------------------------------------

FRAUD_INFER = "/v2/models/fraud/infer"
ALLTYPES_INFER = "/v2/models/alltypes/infer"
GOOD_ROW = [0.5] * FRAUD_FEATURES


def _post(port, path, body: bytes, headers=None, timeout=10.0):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _get(port, path, timeout=10.0):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _json_req(obj) -> bytes:
    return json.dumps(obj).encode()


def _binary_req(header: dict, payload: bytes, header_len=None):
    h = json.dumps(header).encode()
    hl = len(h) if header_len is None else header_len
    return h + payload, {"Inference-Header-Content-Length": str(hl)}


def _alltypes_binary_with_string_payload(string_payload: bytes):
    """Binary alltypes request, shape [1, 2] per input, whose in_string payload
    is replaced by `string_payload` (binary_data_size adjusted to match)."""
    tensors, payloads = [], []
    for datatype, np_dtype, suffix in ALLTYPES:
        if np_dtype is np.object_:
            raw = string_payload
        else:
            raw = np.zeros((1, 2), dtype=np_dtype).tobytes()
        tensors.append({"name": f"in_{suffix}", "shape": [1, 2], "datatype": datatype,
                        "parameters": {"binary_data_size": len(raw)}})
        payloads.append(raw)
    return _binary_req({"inputs": tensors}, b"".join(payloads))


def _fraud_json(shape=(1, FRAUD_FEATURES), datatype="FP32", data=None, name="input", **extra):
    if data is None:
        data = GOOD_ROW * shape[0]
    t = {"name": name, "shape": shape if isinstance(shape, str) else list(shape),
         "datatype": datatype, "data": data}
    t.update(extra)
    return {"inputs": [t]}


def _storm_cases():
    """Yields (label, path, body, headers). Deterministic."""
    J = {"Content-Type": "application/json"}
    cases = []

    def add(label, body, headers=None, path=FRAUD_INFER):
        cases.append((label, path, body, {**J, **(headers or {})}))

    # -- malformed JSON
    for i, b in enumerate([b"", b"{", b"}", b"[", b"null", b"[]", b"42", b'"str"', b"{,}",
                           b'{"inputs": [}', b'{"inputs": [{"name": "input",', b"\xff\xfe\x00garbage",
                           b'{"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": [1.0,]}]}',
                           b"{'inputs': []}", b"NaN"]):
        add(f"malformed-json-{i}", b)
    # -- wrong structure / types
    add("no-inputs-key", _json_req({"outputs": []}))
    add("inputs-empty", _json_req({"inputs": []}))
    add("inputs-not-list", _json_req({"inputs": {"name": "input"}}))
    add("inputs-null", _json_req({"inputs": None}))
    add("input-not-object", _json_req({"inputs": ["input"]}))
    add("name-missing", _json_req({"inputs": [{"shape": [1, 30], "datatype": "FP32", "data": GOOD_ROW}]}))
    add("name-number", _json_req(_fraud_json(name=7)))
    add("shape-missing", _json_req({"inputs": [{"name": "input", "datatype": "FP32", "data": GOOD_ROW}]}))
    add("shape-string", _json_req(_fraud_json(shape="1,30", data=GOOD_ROW)))
    add("shape-floats", _json_req({"inputs": [{"name": "input", "shape": [1.5, 30], "datatype": "FP32", "data": GOOD_ROW}]}))
    add("shape-negative", _json_req({"inputs": [{"name": "input", "shape": [-1, 30], "datatype": "FP32", "data": GOOD_ROW}]}))
    add("datatype-missing", _json_req({"inputs": [{"name": "input", "shape": [1, 30], "data": GOOD_ROW}]}))
    add("datatype-unknown", _json_req(_fraud_json(datatype="FLOAT")))
    add("datatype-wrong", _json_req(_fraud_json(datatype="INT32", data=[1] * 30)))
    add("data-missing", _json_req({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32"}]}))
    add("data-string", _json_req(_fraud_json(data="abc")))
    add("data-strings", _json_req(_fraud_json(data=["x"] * 30)))
    add("data-bools", _json_req(_fraud_json(data=[True] * 30)))
    add("data-nulls", _json_req(_fraud_json(data=[None] * 30)))
    add("data-objects", _json_req(_fraud_json(data=[{}] * 30)))
    add("data-too-few", _json_req(_fraud_json(data=GOOD_ROW[:-1])))
    add("data-too-many", _json_req(_fraud_json(data=GOOD_ROW + [1.0])))
    add("data-empty", _json_req(_fraud_json(data=[])))
    add("data-ragged-nested", _json_req(_fraud_json(data=[GOOD_ROW[:10], GOOD_ROW[:15]])))
    add("outputs-not-list", _json_req({**_fraud_json(), "outputs": "label"}))
    add("output-unknown", _json_req({**_fraud_json(), "outputs": [{"name": "nope"}]}))
    add("input-duplicated", _json_req({"inputs": _fraud_json()["inputs"] * 2}))
    add("extra-unknown-input", _json_req({"inputs": _fraud_json()["inputs"] + _fraud_json(name="bogus")["inputs"]}))
    add("int8-out-of-range", _json_req({"inputs": [{"name": "in_int8", "shape": [1, 1], "datatype": "INT8", "data": [300]}]}),
        path=ALLTYPES_INFER)
    add("missing-inputs-alltypes", _json_req({"inputs": [{"name": "in_fp32", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}),
        path=ALLTYPES_INFER)
    # -- huge declared shapes with tiny data
    for shape in ([1_000_000_000, 8], [1_000_000_000, FRAUD_FEATURES], [2**62, 2**62],
                  [2**63 - 1, FRAUD_FEATURES], [0, FRAUD_FEATURES, 1_000_000_000]):
        add(f"huge-shape-json-{shape}", _json_req(_fraud_json(shape=shape, data=[1.0, 2.0])))
        body, hdr = _binary_req(
            {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32",
                         "parameters": {"binary_data_size": 8}}]}, b"\x00" * 8)
        add(f"huge-shape-binary-{shape}", body, hdr)
    # -- binary extension abuse
    good_payload = np.full((1, FRAUD_FEATURES), 0.5, np.float32).tobytes()
    good_hdr = {"inputs": [{"name": "input", "shape": [1, FRAUD_FEATURES], "datatype": "FP32",
                            "parameters": {"binary_data_size": len(good_payload)}}]}
    hjson = json.dumps(good_hdr).encode()
    for label, hl in [("hl-larger-than-body", len(hjson) + len(good_payload) + 100),
                      ("hl-way-larger", 10**12), ("hl-negative", -5), ("hl-not-a-number", "abc"),
                      ("hl-too-small", len(hjson) - 3), ("hl-zero", 0), ("hl-empty", "")]:
        add(label, hjson + good_payload, {"Inference-Header-Content-Length": str(hl)})
    body, hdr = _binary_req(good_hdr, good_payload[:-4])
    add("binary-payload-short", body, hdr)
    body, hdr = _binary_req({"inputs": [{**good_hdr["inputs"][0], "parameters": {"binary_data_size": 1000}}]}, good_payload)
    add("binary-size-exceeds-body", body, hdr)
    body, hdr = _binary_req({"inputs": [{**good_hdr["inputs"][0], "parameters": {"binary_data_size": 60}}]}, good_payload)
    add("binary-size-not-shape", body, hdr)
    body, hdr = _binary_req({"inputs": [{**good_hdr["inputs"][0], "parameters": {"binary_data_size": -1}}]}, good_payload)
    add("binary-size-negative", body, hdr)
    body, hdr = _binary_req({"inputs": [{**good_hdr["inputs"][0], "parameters": {"binary_data_size": "120"}}]}, good_payload)
    add("binary-size-string", body, hdr)
    # BYTES payloads whose 4-byte length prefixes lie, inside an otherwise valid
    # request carrying all 13 alltypes inputs
    for label, string_payload in [
        ("bytes-length-prefix-overflow", struct.pack("<I", 1000) + b"abcd" + struct.pack("<I", 0)),
        ("bytes-truncated-length-prefix", b"\x01\x00"),
        ("bytes-too-few-elements", struct.pack("<I", 1) + b"a"),
        ("bytes-too-many-elements", (struct.pack("<I", 1) + b"a") * 3),
        ("bytes-huge-length-prefix", struct.pack("<I", 0xFFFFFFFF) + b"x" * 8),
    ]:
        body, hdr = _alltypes_binary_with_string_payload(string_payload)
        add(label, body, hdr, path=ALLTYPES_INFER)

    # -- deterministic fuzz: truncations and corruptions of valid requests
    rng = np.random.default_rng(1234)
    valid_json = _json_req(_fraud_json(shape=(2, FRAUD_FEATURES)))
    for i in range(40):
        cut = int(rng.integers(0, len(valid_json) - 1))
        add(f"json-truncated-{i}@{cut}", valid_json[:cut])
    valid_bin = hjson + good_payload
    for i in range(40):
        # truncated binary body, Content-Length matching what is sent, but
        # Inference-Header-Content-Length still the full JSON length
        cut = int(rng.integers(0, len(valid_bin) - 1))
        add(f"binary-truncated-{i}@{cut}", valid_bin[:cut], {"Inference-Header-Content-Length": str(len(hjson))})
    for i in range(50):
        b = bytearray(valid_json)
        pos = int(rng.integers(0, len(b)))
        b[pos:pos + 1] = bytes([int(rng.choice(list(b'{}[]:,"\\')))])
        cases.append((f"json-corrupt-{i}@{pos}", FRAUD_INFER, bytes(b), J))
    return cases


def _assert_error_response(label, status, body):
    assert 400 <= status < 500, f"{label}: status {status}, body {body[:300]!r}"
    try:
        doc = json.loads(body)
    except ValueError:
        pytest.fail(f"{label}: {status} with non-JSON body {body[:300]!r}")
    assert isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"], (
        f"{label}: error body without an 'error' string: {doc!r}"
    )


def _still_a_valid_request(body: bytes) -> bool:
    """A random corruption can, rarely, still be a valid request (e.g. a
    replaced digit-free char inside a string); such cases are skipped."""
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    return doc == json.loads(_json_req(_fraud_json(shape=(2, FRAUD_FEATURES))))


def test_malformed_storm(server, client, ort_run):
    cases = _storm_cases()
    assert len(cases) >= 200
    # Controls: the unbroken versions of the requests the storm corrupts are
    # accepted, so every 4xx below is due to the corruption alone.
    J = {"Content-Type": "application/json"}
    good_bin_hdr = {"inputs": [{"name": "input", "shape": [1, FRAUD_FEATURES], "datatype": "FP32",
                                "parameters": {"binary_data_size": 4 * FRAUD_FEATURES}}]}
    controls = [
        ("control-json", FRAUD_INFER, _json_req(_fraud_json(shape=(2, FRAUD_FEATURES))), J),
        ("control-binary", FRAUD_INFER,
         *_binary_req(good_bin_hdr, np.full((1, FRAUD_FEATURES), 0.5, np.float32).tobytes())),
        ("control-alltypes", ALLTYPES_INFER,
         *_alltypes_binary_with_string_payload((struct.pack("<I", 1) + b"a") * 2)),
    ]
    for label, path, body, headers in controls:
        status, resp_body = _post(server.port, path, body, headers)
        assert status == 200, f"{label}: {status} {resp_body[:300]!r}"
        # nothing asked for binary outputs, so the response is plain JSON
        doc = json.loads(resp_body)
        assert doc["outputs"] and all("data" in o for o in doc["outputs"]), f"{label}: {doc!r}"
    started = time.monotonic()
    failures = []
    checked = 0
    for label, path, body, headers in cases:
        if label.startswith("json-corrupt") and _still_a_valid_request(body):
            continue
        checked += 1
        try:
            status, resp_body = _post(server.port, path, body, headers)
        except (http.client.HTTPException, OSError) as e:
            if server.proc.poll() is not None:
                pytest.fail(
                    f"podium died (exit {server.proc.returncode}) on storm case {label!r}: "
                    f"{body[:200]!r}\nstderr:\n{server.stderr_tail()}"
                )
            failures.append(f"{label}: no HTTP response: {e!r}")
            continue
        try:
            _assert_error_response(label, status, resp_body)
        except AssertionError as e:
            failures.append(str(e))
        except pytest.fail.Exception as e:
            failures.append(str(e))
    elapsed = time.monotonic() - started
    assert not failures, f"{len(failures)} of {checked} bad requests mishandled:\n" + "\n".join(failures[:40])
    assert elapsed < 30, f"storm of {checked} requests took {elapsed:.1f}s"

    status, _ = _get(server.port, "/v2/health/live")
    assert status == 200
    _assert_still_serving(client, ort_run)


def _raw_exchange(port, head: bytes, body: bytes, *, half_close: bool, timeout=10.0) -> bytes:
    """Sends head+body, optionally half-closes (the server then sees EOF where
    it expects more body), and reads until the server closes. Requests carry
    `Connection: close`, so a server that answers also closes."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(head + body)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline:
                pytest.fail("server neither answered nor closed a truncated request")
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                pytest.fail("server neither answered nor closed a truncated request")
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def test_truncated_body_raw_socket(server, client, ort_run):
    """Content-Length promises more than arrives: the server must answer 4xx
    (JSON error) or drop the connection, never hang, 2xx or die."""
    payload = np.full((1, FRAUD_FEATURES), 0.5, np.float32).tobytes()
    header = json.dumps({"inputs": [{"name": "input", "shape": [1, FRAUD_FEATURES], "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(payload)}}]}).encode()
    full = header + payload
    started = time.monotonic()
    for cut in (0, 10, len(header) - 1, len(header), len(header) + 7, len(full) - 1):
        head = (
            f"POST {FRAUD_INFER} HTTP/1.1\r\nHost: {HOST}:{server.port}\r\n"
            f"Content-Length: {len(full)}\r\nInference-Header-Content-Length: {len(header)}\r\n"
            f"Connection: close\r\n\r\n"
        ).encode()
        raw = _raw_exchange(server.port, head, full[:cut], half_close=True)
        if raw:
            m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
            assert m, f"cut={cut}: not an HTTP response: {raw[:200]!r}"
            status = int(m.group(1))
            assert 400 <= status < 500, f"cut={cut}: status {status}: {raw[:300]!r}"
    # the header claims more JSON than the (complete) body has
    for extra in (1, 1000):
        head = (
            f"POST {FRAUD_INFER} HTTP/1.1\r\nHost: {HOST}:{server.port}\r\n"
            f"Content-Length: {len(full)}\r\nInference-Header-Content-Length: {len(full) + extra}\r\n"
            f"Connection: close\r\n\r\n"
        ).encode()
        raw = _raw_exchange(server.port, head, full, half_close=False)
        m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
        assert m, f"no HTTP response: {raw[:200]!r}"
        status = int(m.group(1))
        _, _, resp_body = raw.partition(b"\r\n\r\n")
        assert 400 <= status < 500, f"status {status}: {raw[:300]!r}"
        assert b'"error"' in resp_body, raw[:300]
    assert time.monotonic() - started < 30
    status, _ = _get(server.port, "/v2/health/live")
    assert status == 200
    _assert_still_serving(client, ort_run)


def test_health_endpoints_raw(server):
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/fraud/ready",
                 "/v2/models/fraud/versions/challenger/ready"):
        status, _ = _get(server.port, path)
        assert status == 200, path
    status, body = _get(server.port, "/v2/models/no_such_model")
    assert status == 404
    assert "error" in json.loads(body)
    status, body = _get(server.port, "/v2")
    doc = json.loads(body)
    assert status == 200 and "binary_tensor_data" in doc["extensions"]
