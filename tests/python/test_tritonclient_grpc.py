"""Black-box tests of Podium's OIP gRPC API with NVIDIA's own `tritonclient[grpc]`
(and raw grpcio where tritonclient cannot express a request).

Everything talks to a real `podium serve` over 127.0.0.1 (see conftest.py) and
checks results against onnxruntime run in-process on the same .onnx files. The
error texts are compared with what the REST API answers for the same mistake:
the two protocols share one core and must say the same thing.
"""

from __future__ import annotations

import queue
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from conftest import REGISTRATIONS, build_registry, register_model, run_podium, set_alias

try:  # grpcio-health-checking (tests/python/requirements.txt)
    from grpc_health.v1 import health_pb2, health_pb2_grpc
except ImportError:  # pragma: no cover - only without the package
    health_pb2 = health_pb2_grpc = None

BATCH = 4
FRAUD_FEATURES = 30
MLP_FEATURES = 64
RPC_TIMEOUT_S = 10.0
SERVICE = "/inference.GRPCInferenceService/"


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


def rest_error(client, *args, **kwargs) -> str:
    """The REST API's error text for the same request (tritonclient.http)."""
    return message_of(raises_from(client.infer, *args, **kwargs))


@pytest.fixture(scope="module")
def stub(grpc_url):
    """Raw grpcio stub of inference.GRPCInferenceService (tritonclient's generated code)."""
    channel = grpc.insecure_channel(
        grpc_url,
        options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
    )
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


# ---------------------------------------------------------------------------
# 1. health and metadata
# ---------------------------------------------------------------------------


def test_server_live_and_ready(grpc_client):
    assert grpc_client.is_server_live() is True
    assert grpc_client.is_server_ready() is True


def test_server_metadata(grpc_client, client):
    md = grpc_client.get_server_metadata()
    assert md.name and md.version
    rest = client.get_server_metadata()
    assert (md.name, md.version) == (rest["name"], rest["version"])
    assert list(md.extensions) == list(rest["extensions"])


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
def test_model_ready(grpc_client, model, version):
    assert grpc_client.is_model_ready(model, model_version=version) is True


@pytest.mark.parametrize(
    "model,version",
    [("no_such_model", ""), ("fraud", "99"), ("fraud", "no_such_alias")],
)
def test_model_not_ready_when_unknown(grpc_client, model, version):
    assert grpc_client.is_model_ready(model, model_version=version) is False


def _by_name(tensors):
    out = {}
    for t in tensors:
        assert t.name not in out, f"duplicate tensor {t.name} in metadata"
        out[t.name] = (t.datatype, list(t.shape))
    return out


FRAUD_INPUTS = {"input": ("FP32", [-1, FRAUD_FEATURES])}
FRAUD_OUTPUTS = {"label": ("INT64", [-1]), "probabilities": ("FP32", [-1, 2])}


@pytest.mark.parametrize(
    "version,concrete",
    [("", "1"), ("challenger", "2"), ("2", "2"), ("champion", "1"), ("latest", "2")],
)
def test_fraud_model_metadata(grpc_client, client, version, concrete):
    md = grpc_client.get_model_metadata("fraud", model_version=version)
    assert md.name == "fraud"
    assert md.platform == "onnx_onnxv1"
    assert concrete in md.versions, f"version {concrete} not listed in {list(md.versions)}"
    assert set(md.versions) <= {"1", "2"}, list(md.versions)
    assert _by_name(md.inputs) == FRAUD_INPUTS
    assert _by_name(md.outputs) == FRAUD_OUTPUTS
    # the same document as REST
    rest = client.get_model_metadata("fraud", model_version=version)
    assert list(md.versions) == rest["versions"]
    assert md.platform == rest["platform"]


def test_mlp_and_alltypes_model_metadata(grpc_client):
    md = grpc_client.get_model_metadata("mlp")
    assert md.platform == "onnx_onnxv1"
    assert "1" in md.versions
    assert _by_name(md.inputs) == {"input": ("FP32", [-1, MLP_FEATURES])}
    assert _by_name(md.outputs) == {"logits": ("FP32", [-1, 10])}
    md = grpc_client.get_model_metadata("alltypes")
    assert _by_name(md.inputs) == {f"in_{s}": (dt, [-1, -1]) for dt, _, s in ALLTYPES}
    assert _by_name(md.outputs) == {f"out_{s}": (dt, [-1, -1]) for dt, _, s in ALLTYPES}


@pytest.mark.parametrize(
    "model,version,named",
    [("no_such_model", "", "no_such_model"), ("fraud", "99", "99"),
     ("fraud", "no_such_alias", "no_such_alias")],
)
def test_model_metadata_unknown_is_not_found(grpc_client, model, version, named):
    e = raises_from(grpc_client.get_model_metadata, model, model_version=version)
    assert status_of(e) == "StatusCode.NOT_FOUND", f"{status_of(e)}: {message_of(e)}"
    assert named in message_of(e), message_of(e)


def test_unimplemented_triton_rpcs(grpc_client):
    # ModelConfig and the repository rpcs are served: test_triton_repository.py
    for call in (
        lambda: grpc_client.get_inference_statistics("fraud"),
        lambda: grpc_client.get_system_shared_memory_status(),
    ):
        e = raises_from(call)
        assert status_of(e) == "StatusCode.UNIMPLEMENTED", f"{status_of(e)}: {message_of(e)}"


# ---------------------------------------------------------------------------
# 2. inference vs onnxruntime
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


def _fp32_input(x: np.ndarray, name: str = "input"):
    inp = grpcclient.InferInput(name, list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return inp


def _infer(grpc_client, model, version, x, *, outputs="all", request_id=""):
    if outputs == "all":
        outputs = list(EXPECTED_OUTPUTS[model])
    requested = None if outputs is None else [grpcclient.InferRequestedOutput(n) for n in outputs]
    return grpc_client.infer(
        model, [_fp32_input(x)], model_version=version, outputs=requested,
        request_id=request_id, client_timeout=RPC_TIMEOUT_S,
    )


def _check_against_ort(result, model, concrete, key, x, ort_run, *, names=None):
    resp = result.get_response()
    assert resp.model_name == model
    assert resp.model_version == concrete, (
        f"model_version {resp.model_version!r}, expected concrete version {concrete!r}"
    )
    names = list(EXPECTED_OUTPUTS[model]) if names is None else names
    expected = ort_run(key, {"input": x})
    returned = {o.name: o for o in resp.outputs}
    assert set(returned) == set(names), f"outputs {sorted(returned)}, asked for {sorted(names)}"
    assert len(resp.raw_output_contents) == len(resp.outputs)
    for name in names:
        datatype, np_dtype = EXPECTED_OUTPUTS[model][name]
        assert returned[name].datatype == datatype
        got, want = result.as_numpy(name), expected[name]
        assert got.dtype == np_dtype, f"{name}: dtype {got.dtype}"
        assert got.shape == want.shape, f"{name}: shape {got.shape} vs {want.shape}"
        assert list(returned[name].shape) == list(want.shape)
        # labels exact; floats bit for bit (same ORT version, same batch)
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert got.tobytes() == want.tobytes(), f"{name}: not bit-exact"


@pytest.mark.parametrize("model,version,concrete,key,features", ROUTES, ids=ROUTE_IDS)
def test_infer_matches_onnxruntime(grpc_client, ort_run, model, version, concrete, key, features):
    x = rand_batch(features)
    result = _infer(grpc_client, model, version, x, request_id=f"req-{model}-{version}")
    _check_against_ort(result, model, concrete, key, x, ort_run)
    assert result.get_response().id == f"req-{model}-{version}"


@pytest.mark.parametrize("route", [0, 4, 6], ids=[ROUTE_IDS[i] for i in (0, 4, 6)])
def test_infer_no_outputs_requested_returns_all(grpc_client, ort_run, route):
    model, version, concrete, key, features = ROUTES[route]
    x = rand_batch(features, seed=1)
    result = _infer(grpc_client, model, version, x, outputs=None)
    _check_against_ort(result, model, concrete, key, x, ort_run)


@pytest.mark.parametrize("only", ["label", "probabilities"])
def test_infer_requested_subset_only(grpc_client, ort_run, only):
    x = rand_batch(FRAUD_FEATURES, seed=2)
    result = _infer(grpc_client, "fraud", "challenger", x, outputs=[only])
    _check_against_ort(result, "fraud", "2", "fraud_v2", x, ort_run, names=[only])
    other = ({"label", "probabilities"} - {only}).pop()
    assert result.as_numpy(other) is None


def test_infer_single_row_and_larger_batch(grpc_client, ort_run):
    for batch in (1, 17):
        x = rand_batch(FRAUD_FEATURES, seed=3, batch=batch)
        result = _infer(grpc_client, "fraud", "", x)
        _check_against_ort(result, "fraud", "1", "fraud_v1", x, ort_run)


def test_champion_and_challenger_really_differ(grpc_client, ort_run):
    """Guards the routing tests above: they only prove routing if v1 != v2."""
    x = rand_batch(FRAUD_FEATURES)
    v1 = ort_run("fraud_v1", {"input": x})["probabilities"]
    v2 = ort_run("fraud_v2", {"input": x})["probabilities"]
    assert not np.array_equal(v1, v2), "fixture models fraud v1 and v2 compute the same thing"
    r1 = _infer(grpc_client, "fraud", "champion", x)
    r2 = _infer(grpc_client, "fraud", "challenger", x)
    assert not np.array_equal(r1.as_numpy("probabilities"), r2.as_numpy("probabilities"))


def test_grpc_and_rest_agree(grpc_client, client):
    x = rand_batch(MLP_FEATURES, seed=4)
    g = _infer(grpc_client, "mlp", "", x).as_numpy("logits")
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    r = client.infer("mlp", [inp]).as_numpy("logits")
    assert g.tobytes() == r.tobytes()


def _typed_fraud_request(x, version=""):
    req = service_pb2.ModelInferRequest(model_name="fraud", model_version=version, id="typed")
    t = req.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    t.contents.fp32_contents.extend(x.flatten().tolist())
    return req


def test_typed_contents_input(stub, ort_run):
    """tritonclient always sends raw_input_contents; other clients use the typed
    fields. Same answer either way, outputs always raw."""
    x = rand_batch(FRAUD_FEATURES, seed=5)
    resp = stub.ModelInfer(_typed_fraud_request(x, "challenger"), timeout=RPC_TIMEOUT_S)
    assert (resp.model_name, resp.model_version, resp.id) == ("fraud", "2", "typed")
    want = ort_run("fraud_v2", {"input": x})
    got = {o.name: (o, raw) for o, raw in zip(resp.outputs, resp.raw_output_contents)}
    assert set(got) == {"label", "probabilities"}
    for name, np_dtype in (("label", np.int64), ("probabilities", np.float32)):
        out, raw = got[name]
        assert not out.HasField("contents")
        arr = np.frombuffer(raw, dtype=np_dtype).reshape(list(out.shape))
        assert arr.tobytes() == want[name].tobytes(), name


def test_infer_batch_over_grpc_default_message_limit(grpc_client, ort_run):
    """5 MiB of input: over gRPC's customary 4 MiB default, well under Podium's
    --max-request-bytes default (64 MiB), which is the limit that must apply."""
    x = rand_batch(MLP_FEATURES, seed=6, batch=20000)
    assert x.nbytes > 4 * 2**20
    _check_against_ort(_infer(grpc_client, "mlp", "", x), "mlp", "1", "mlp_v1", x, ort_run)


def test_concurrent_calls_do_not_mix(grpc_client, ort_run):
    jobs = [(ROUTES[i % len(ROUTES)], i) for i in range(24)]

    def one(job):
        (model, version, concrete, key, features), seed = job
        x = rand_batch(features, seed=100 + seed, batch=1 + seed % 6)
        result = _infer(grpc_client, model, version, x, request_id=f"c{seed}")
        return job, x, result

    with ThreadPoolExecutor(max_workers=8) as pool:
        for ((model, version, concrete, key, _), seed), x, result in pool.map(one, jobs):
            assert result.get_response().id == f"c{seed}"
            _check_against_ort(result, model, concrete, key, x, ort_run)


def test_duplicate_requested_output(stub, ort_run):
    """The same output named twice is a client mistake: INVALID_ARGUMENT naming it."""
    x = rand_batch(FRAUD_FEATURES, seed=7, batch=1)
    req = _raw_fraud_request(x)
    req.outputs.add(name="label")
    req.outputs.add(name="label")
    with pytest.raises(grpc.RpcError) as exc:
        stub.ModelInfer(req, timeout=RPC_TIMEOUT_S)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.value.details()
    assert 'output "label" is requested twice' in exc.value.details()


# ---------------------------------------------------------------------------
# 3. every datatype round-trips through the Identity model
# ---------------------------------------------------------------------------

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

SHAPE = (2, 3)
STRINGS = [
    b"",
    "héllo wörld".encode("utf-8"),
    "日本語 ✓".encode("utf-8"),
    b"plain ascii",
    "emoji \U0001F680".encode("utf-8"),
    b"",
]


def _values(np_dtype) -> np.ndarray:
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
        v = np.array([float("nan"), float("inf"), float("-inf"), -0.0,
                      float(info.smallest_subnormal), float(info.max)], dtype=np_dtype)
    return v.reshape(SHAPE)


def _alltypes_inputs():
    inputs, sent = [], {}
    for datatype, np_dtype, suffix in ALLTYPES:
        arr = _values(np_dtype)
        inp = grpcclient.InferInput(f"in_{suffix}", list(arr.shape), datatype)
        inp.set_data_from_numpy(arr)
        inputs.append(inp)
        sent[suffix] = arr
    return inputs, sent


def _assert_same_tensor(got, want, suffix):
    assert got is not None, f"out_{suffix} missing"
    assert got.shape == want.shape, f"out_{suffix}: shape {got.shape} vs {want.shape}"
    assert got.dtype == want.dtype, f"out_{suffix}: dtype {got.dtype} vs {want.dtype}"
    if want.dtype == np.object_:
        assert list(got.flatten()) == list(want.flatten()), f"out_{suffix}: {got!r}"
    else:  # bit for bit, NaN payloads and -0.0 included
        assert got.tobytes() == want.tobytes(), f"out_{suffix}: {got!r} != {want!r}"


def test_alltypes_roundtrip(grpc_client):
    inputs, sent = _alltypes_inputs()
    outputs = [grpcclient.InferRequestedOutput(f"out_{s}") for _, _, s in ALLTYPES]
    result = grpc_client.infer("alltypes", inputs, outputs=outputs, client_timeout=RPC_TIMEOUT_S)
    resp = result.get_response()
    assert resp.model_version == "1"
    returned = {o.name: o for o in resp.outputs}
    assert set(returned) == {f"out_{s}" for _, _, s in ALLTYPES}
    for datatype, _, suffix in ALLTYPES:
        assert returned[f"out_{suffix}"].datatype == datatype
        assert list(returned[f"out_{suffix}"].shape) == list(SHAPE)
        _assert_same_tensor(result.as_numpy(f"out_{suffix}"), sent[suffix], suffix)


def test_alltypes_requested_subset_only(grpc_client):
    inputs, sent = _alltypes_inputs()
    outputs = [grpcclient.InferRequestedOutput(n) for n in ("out_string", "out_fp16")]
    result = grpc_client.infer("alltypes", inputs, outputs=outputs, client_timeout=RPC_TIMEOUT_S)
    names = sorted(o.name for o in result.get_response().outputs)
    assert names == ["out_fp16", "out_string"]
    assert result.as_numpy("out_int8") is None
    _assert_same_tensor(result.as_numpy("out_string"), sent["string"], "string")
    _assert_same_tensor(result.as_numpy("out_fp16"), sent["fp16"], "fp16")


def test_alltypes_other_shapes(grpc_client):
    """[-1, -1] means any 2-D shape: a single column and a single row."""
    for shape in [(5, 1), (1, 7)]:
        arrs, inputs = {}, []
        n = shape[0] * shape[1]
        for datatype, np_dtype, suffix in ALLTYPES:
            if np_dtype is np.object_:
                arr = np.array([f"s{i}é".encode() for i in range(n)], dtype=np.object_)
            elif np_dtype is np.bool_:
                arr = np.arange(n) % 2 == 0
            else:
                arr = np.arange(n).astype(np_dtype)
            arr = arr.reshape(shape)
            inp = grpcclient.InferInput(f"in_{suffix}", list(shape), datatype)
            inp.set_data_from_numpy(arr)
            inputs.append(inp)
            arrs[suffix] = arr
        result = grpc_client.infer("alltypes", inputs, client_timeout=RPC_TIMEOUT_S)
        for _, _, suffix in ALLTYPES:
            _assert_same_tensor(result.as_numpy(f"out_{suffix}"), arrs[suffix], suffix)


# ---------------------------------------------------------------------------
# 4. errors: status codes, and the same texts as REST
# ---------------------------------------------------------------------------


def _assert_still_serving(grpc_client, ort_run):
    assert grpc_client.is_server_live() is True
    assert grpc_client.is_server_ready() is True
    x = rand_batch(FRAUD_FEATURES, seed=9)
    _check_against_ort(_infer(grpc_client, "fraud", "", x), "fraud", "1", "fraud_v1", x, ort_run)


def test_error_unknown_model(grpc_client, client, ort_run):
    x = rand_batch(FRAUD_FEATURES)
    e = raises_from(grpc_client.infer, "no_such_model_xyz", [_fp32_input(x)])
    assert status_of(e) == "StatusCode.NOT_FOUND", f"{status_of(e)}: {message_of(e)}"
    assert "no_such_model_xyz" in message_of(e)
    assert message_of(e) == rest_error(client, "no_such_model_xyz", [_rest_fp32(x)])
    _assert_still_serving(grpc_client, ort_run)


@pytest.mark.parametrize("version", ["99", "no_such_alias"])
def test_error_unknown_version_or_alias(grpc_client, client, ort_run, version):
    x = rand_batch(FRAUD_FEATURES)
    e = raises_from(grpc_client.infer, "fraud", [_fp32_input(x)], model_version=version)
    assert status_of(e) == "StatusCode.NOT_FOUND", f"{status_of(e)}: {message_of(e)}"
    assert version in message_of(e)
    assert message_of(e) == rest_error(client, "fraud", [_rest_fp32(x)], model_version=version)
    _assert_still_serving(grpc_client, ort_run)


def _rest_fp32(x, name="input", datatype="FP32"):
    inp = httpclient.InferInput(name, list(x.shape), datatype)
    inp.set_data_from_numpy(x, binary_data=True)
    return inp


def test_error_wrong_input_name(grpc_client, client, ort_run):
    x = rand_batch(FRAUD_FEATURES)
    e = raises_from(grpc_client.infer, "fraud", [_fp32_input(x, name="x")])
    assert status_of(e) == "StatusCode.INVALID_ARGUMENT", f"{status_of(e)}: {message_of(e)}"
    assert message_of(e) == 'model fraud v1 has no input "x"; its inputs are: "input" FP32 [-1,30]'
    assert message_of(e) == rest_error(client, "fraud", [_rest_fp32(x, name="x")])
    _assert_still_serving(grpc_client, ort_run)


def test_error_wrong_shape(grpc_client, client, ort_run):
    x = rand_batch(FRAUD_FEATURES - 1, batch=1)  # [1, 29] against [-1, 30]
    e = raises_from(grpc_client.infer, "fraud", [_fp32_input(x)])
    assert status_of(e) == "StatusCode.INVALID_ARGUMENT", f"{status_of(e)}: {message_of(e)}"
    assert message_of(e) == 'input "input" has shape [1,29]; model fraud v1 expects [-1,30]'
    assert message_of(e) == rest_error(client, "fraud", [_rest_fp32(x)])
    _assert_still_serving(grpc_client, ort_run)


def test_error_wrong_rank(grpc_client, client):
    x = rand_batch(FRAUD_FEATURES).reshape(-1)
    e = raises_from(grpc_client.infer, "fraud", [_fp32_input(x)])
    assert status_of(e) == "StatusCode.INVALID_ARGUMENT", f"{status_of(e)}: {message_of(e)}"
    assert message_of(e) == rest_error(client, "fraud", [_rest_fp32(x)])


def test_error_wrong_datatype(grpc_client, client, ort_run):
    x = rand_batch(FRAUD_FEATURES).astype(np.float64)
    inp = grpcclient.InferInput("input", list(x.shape), "FP64")
    inp.set_data_from_numpy(x)
    e = raises_from(grpc_client.infer, "fraud", [inp])
    assert status_of(e) == "StatusCode.INVALID_ARGUMENT", f"{status_of(e)}: {message_of(e)}"
    assert "FP64" in message_of(e), message_of(e)
    assert message_of(e) == rest_error(client, "fraud", [_rest_fp32(x, datatype="FP64")])
    _assert_still_serving(grpc_client, ort_run)


def test_error_unknown_requested_output(grpc_client, client, ort_run):
    x = rand_batch(FRAUD_FEATURES)
    e = raises_from(grpc_client.infer, "fraud", [_fp32_input(x)],
                    outputs=[grpcclient.InferRequestedOutput("no_such_output")])
    assert status_of(e) == "StatusCode.INVALID_ARGUMENT", f"{status_of(e)}: {message_of(e)}"
    assert "no_such_output" in message_of(e)
    assert message_of(e) == rest_error(
        client, "fraud", [_rest_fp32(x)],
        outputs=[httpclient.InferRequestedOutput("no_such_output", binary_data=True)])
    _assert_still_serving(grpc_client, ort_run)


def test_error_missing_input(grpc_client, ort_run):
    inputs, _ = _alltypes_inputs()
    e = raises_from(grpc_client.infer, "alltypes", [i for i in inputs if i.name() != "in_int16"])
    assert status_of(e) == "StatusCode.INVALID_ARGUMENT", f"{status_of(e)}: {message_of(e)}"
    assert "in_int16" in message_of(e)
    _assert_still_serving(grpc_client, ort_run)


def _raw_fraud_request(x, **fields):
    req = service_pb2.ModelInferRequest(model_name="fraud", **fields)
    req.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    req.raw_input_contents.append(x.tobytes())
    return req


@pytest.mark.parametrize(
    "label,mutate,needle",
    [
        ("empty-model-name", lambda r: setattr(r, "model_name", ""), "model_name"),
        ("raw-too-short", lambda r: r.raw_input_contents.__setitem__(0, r.raw_input_contents[0][:-4]), "input"),
        ("raw-extra-entry", lambda r: r.raw_input_contents.append(b"\0" * 4), "raw_input_contents"),
        ("raw-and-typed", lambda r: r.inputs[0].contents.fp32_contents.append(1.0), "raw_input_contents"),
        ("unknown-datatype", lambda r: setattr(r.inputs[0], "datatype", "FLOAT"), "FLOAT"),
        ("negative-dim", lambda r: r.inputs[0].shape.__setitem__(0, -1), "input"),
        ("huge-shape", lambda r: r.inputs[0].shape.extend([2**40, 2**40]), "input"),
    ],
)
def test_error_malformed_raw_request(stub, label, mutate, needle):
    req = _raw_fraud_request(rand_batch(FRAUD_FEATURES, batch=1))
    mutate(req)
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(req, timeout=RPC_TIMEOUT_S)
    e = info.value
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{label}: {e.code()}: {e.details()}"
    assert needle in e.details(), f"{label}: {e.details()}"


def test_error_typed_contents(stub):
    # FP16 has no typed field; a wrong field; an out-of-range narrow integer
    cases = []
    req = service_pb2.ModelInferRequest(model_name="alltypes")
    req.inputs.add(name="in_fp16", datatype="FP16", shape=[1, 1])
    cases.append((req, "send it in raw_input_contents"))
    req = service_pb2.ModelInferRequest(model_name="fraud")
    t = req.inputs.add(name="input", datatype="FP32", shape=[1, FRAUD_FEATURES])
    t.contents.fp64_contents.extend([0.5] * FRAUD_FEATURES)
    cases.append((req, 'input "input" is FP32 but its data is in fp64_contents; use fp32_contents'))
    req = service_pb2.ModelInferRequest(model_name="alltypes")
    t = req.inputs.add(name="in_uint8", datatype="UINT8", shape=[1, 1])
    t.contents.uint_contents.append(256)
    cases.append((req, 'input "in_uint8" element 0 is 256, which is not a valid UINT8'))
    for req, needle in cases:
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(req, timeout=RPC_TIMEOUT_S)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert needle in info.value.details()


def test_error_message_over_default_limit(grpc_url, grpc_client, ort_run):
    """Default --max-request-bytes is 64 MiB; one byte more is RESOURCE_EXHAUSTED."""
    call = grpc.insecure_channel(grpc_url, options=[("grpc.max_send_message_length", -1)])
    try:
        payload = b"\x0a\x05fraud" + b"\x3a" + _varint(64 * 2**20) + bytes(64 * 2**20)
        infer = call.unary_unary(SERVICE + "ModelInfer")
        with pytest.raises(grpc.RpcError) as info:
            infer(payload, timeout=30)
    finally:
        call.close()
    e = info.value
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, f"{e.code()}: {e.details()}"
    assert "--max-request-bytes" in e.details(), e.details()
    _assert_still_serving(grpc_client, ort_run)


# ---------------------------------------------------------------------------
# 5. ModelStreamInfer through tritonclient's streaming API
# ---------------------------------------------------------------------------


def test_stream_infer(grpc_url, ort_run):
    # request i: (model, version, concrete, onnx key, x, error text or None)
    plan = []
    for i in range(20):
        if i == 6:
            x = rand_batch(FRAUD_FEATURES - 1, seed=i, batch=1)
            plan.append(("fraud", "", None, None, x, "input",
                         'input "input" has shape [1,29]; model fraud v1 expects [-1,30]'))
        elif i == 13:
            x = rand_batch(FRAUD_FEATURES, seed=i)
            plan.append(("fraud", "challenger", None, None, x, "x",
                         'model fraud v2 has no input "x"; its inputs are: "input" FP32 [-1,30]'))
        elif i % 3 == 0:
            plan.append(("mlp", "", "1", "mlp_v1", rand_batch(MLP_FEATURES, seed=i), "input", None))
        elif i % 3 == 1:
            plan.append(("fraud", "champion", "1", "fraud_v1",
                         rand_batch(FRAUD_FEATURES, seed=i, batch=1 + i % 5), "input", None))
        else:
            plan.append(("fraud", "latest", "2", "fraud_v2",
                         rand_batch(FRAUD_FEATURES, seed=i, batch=1 + i % 7), "input", None))

    answers: "queue.Queue[tuple]" = queue.Queue()

    def callback(q, result, error):
        q.put((result, error))

    c = grpcclient.InferenceServerClient(url=grpc_url)
    try:
        c.start_stream(callback=partial(callback, answers), stream_timeout=60)
        for i, (model, version, _, _, x, name, _) in enumerate(plan):
            c.async_stream_infer(model, [_fp32_input(x, name=name)], model_version=version,
                                 request_id=f"s{i}")
        got = []
        for i in range(len(plan)):
            try:
                got.append(answers.get(timeout=RPC_TIMEOUT_S))
            except queue.Empty:
                pytest.fail(f"stream: only {i} of {len(plan)} responses within {RPC_TIMEOUT_S}s")
        c.stop_stream()
    finally:
        c.close()
    assert answers.empty(), "more responses than requests"
    for i, ((model, version, concrete, key, x, _, err), (result, error)) in enumerate(zip(plan, got)):
        if err is not None:
            assert result is None and error is not None, f"request {i}: expected an error"
            assert message_of(error) == err, f"request {i}: {message_of(error)}"
            continue
        assert error is None, f"request {i}: {message_of(error)}"
        # one response per request, in order
        assert result.get_response().id == f"s{i}"
        _check_against_ort(result, model, concrete, key, x, ort_run)


def test_stream_unknown_model_continues(stub, ort_run):
    """Raw stream: a NOT_FOUND request answers with error_message and the stream goes on."""
    x = rand_batch(FRAUD_FEATURES, seed=11)
    good = _raw_fraud_request(x, id="a")
    bad = _raw_fraud_request(x, id="b")
    bad.model_name = "nope"
    responses = list(stub.ModelStreamInfer(iter([good, bad, good]), timeout=RPC_TIMEOUT_S))
    assert len(responses) == 3
    assert [r.error_message == "" for r in responses] == [True, False, True]
    assert "nope" in responses[1].error_message
    want = ort_run("fraud_v1", {"input": x})["probabilities"].tobytes()
    for r in (responses[0], responses[2]):
        assert r.infer_response.model_version == "1"
        i = [o.name for o in r.infer_response.outputs].index("probabilities")
        assert r.infer_response.raw_output_contents[i] == want


def test_stream_error_carries_request_id(stub):
    x = rand_batch(FRAUD_FEATURES, seed=11)
    bad = _raw_fraud_request(x, id="bad-1")
    bad.model_name = "nope"
    (response,) = list(stub.ModelStreamInfer(iter([bad]), timeout=RPC_TIMEOUT_S))
    assert response.error_message
    assert response.infer_response.id == "bad-1"


def test_stream_malformed_message_ends_stream_cleanly(grpc_url, grpc_client, ort_run):
    """Garbage on a stream: the answers before it arrive, then the stream ends
    with an error status; it never hangs."""
    good = _valid_fraud_bytes()
    with grpc.insecure_channel(grpc_url) as channel:
        call = channel.stream_stream(SERVICE + "ModelStreamInfer",
                                     request_serializer=None, response_deserializer=None)
        for garbage in (b"\x0a\xff\x01", _field(1, 0), b"\x80"):
            it = call(iter([good, garbage, good]), timeout=RPC_TIMEOUT_S)
            first = service_pb2.ModelStreamInferResponse.FromString(next(it))
            assert first.error_message == "" and first.infer_response.model_version == "1"
            with pytest.raises(grpc.RpcError) as info:
                for _ in it:
                    pass
            assert info.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL), (
                f"{info.value.code()}: {info.value.details()}"
            )
    _assert_still_serving(grpc_client, ort_run)


# ---------------------------------------------------------------------------
# 6. grpc.health.v1
# ---------------------------------------------------------------------------

needs_health = pytest.mark.skipif(health_pb2 is None, reason="grpcio-health-checking not installed")


def _health(channel, service):
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT_S).status


@needs_health
def test_health_check(grpc_url):
    with grpc.insecure_channel(grpc_url) as channel:
        SERVING = health_pb2.HealthCheckResponse.SERVING
        for service in ("", "inference.GRPCInferenceService", "fraud", "mlp", "alltypes"):
            assert _health(channel, service) == SERVING, service
        with pytest.raises(grpc.RpcError) as info:
            _health(channel, "no_such_model")
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


# ---------------------------------------------------------------------------
# 7. a second server with tight limits: health follows the registry,
#    oversize messages, a full queue
# ---------------------------------------------------------------------------

SMALL_LIMIT = 1 << 20  # --max-request-bytes
POLL_MS = 200


@pytest.fixture(scope="module")
def small_server(tmp_path_factory, model_paths):
    reg = build_registry(
        tmp_path_factory.mktemp("registry-small"),
        [r for r in REGISTRATIONS if r[0] in ("fraud", "mlp")],
        model_paths,
    )
    with run_podium(
        reg, tmp_path_factory.mktemp("server-small"),
        "--inference-threads", "1", "--queue-depth", "1",
        "--max-request-bytes", str(SMALL_LIMIT), "--poll-interval-ms", str(POLL_MS),
    ) as srv:
        yield srv


def _wait_health(channel, service, want, deadline_s=10.0):
    deadline = time.monotonic() + deadline_s
    seen = None
    while time.monotonic() < deadline:
        try:
            seen = _health(channel, service)
        except grpc.RpcError as e:
            seen = e.code()
        if seen == want:
            return
        time.sleep(POLL_MS / 4000)
    pytest.fail(f"health of {service!r} is {seen}, wanted {want} within {deadline_s}s")


@needs_health
def test_health_follows_registry(small_server, model_paths):
    SERVING = health_pb2.HealthCheckResponse.SERVING
    NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
    with grpc.insecure_channel(small_server.grpc_url) as channel:
        assert _health(channel, "fraud") == SERVING
        # registered, but no champion alias: no default route, NOT_SERVING
        register_model(small_server.registry, "late", model_paths["fraud_v2"], 1)
        _wait_health(channel, "late", NOT_SERVING)
        # no default route: inference says how to make one
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        req = _raw_fraud_request(rand_batch(FRAUD_FEATURES, batch=1))
        req.model_name = "late"
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(req, timeout=RPC_TIMEOUT_S)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND, info.value.details()
        assert "champion" in info.value.details()
        req.model_version = "1"
        assert stub.ModelInfer(req, timeout=RPC_TIMEOUT_S).model_version == "1"
        set_alias(small_server.registry, "late", "champion", 1)
        _wait_health(channel, "late", SERVING)
        assert _health(channel, "") == SERVING


def _oversize_fraud_request(total_bytes):
    """A valid fraud request whose serialized size is about total_bytes."""
    rows = total_bytes // (4 * FRAUD_FEATURES)
    x = np.zeros((rows, FRAUD_FEATURES), np.float32)
    return _raw_fraud_request(x)


def test_small_limit_unary_and_stream(small_server):
    with grpc.insecure_channel(small_server.grpc_url,
                               options=[("grpc.max_send_message_length", -1)]) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        under = _oversize_fraud_request(SMALL_LIMIT - 4096)
        assert under.ByteSize() <= SMALL_LIMIT
        assert stub.ModelInfer(under, timeout=RPC_TIMEOUT_S).model_version == "1"
        over = _oversize_fraud_request(SMALL_LIMIT + 4096)
        assert over.ByteSize() > SMALL_LIMIT
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(over, timeout=RPC_TIMEOUT_S)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
        assert "--max-request-bytes" in info.value.details()
        # in a stream: the good request before it is answered, then the stream fails
        it = stub.ModelStreamInfer(iter([under, over]), timeout=RPC_TIMEOUT_S)
        first = next(it)
        assert first.error_message == "" and first.infer_response.model_version == "1"
        with pytest.raises(grpc.RpcError) as info:
            next(it)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
        assert "--max-request-bytes" in info.value.details()
        assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=RPC_TIMEOUT_S).live


def test_queue_full_is_resource_exhausted(small_server, ort_run):
    """One inference thread, one queue slot: a burst of requests must see
    RESOURCE_EXHAUSTED ("queue is full") for some and correct answers for the
    rest. Small requests in large numbers over several connections: with big
    ones a debug build decodes more slowly than it infers, and the queue never
    fills."""
    x = rand_batch(MLP_FEATURES, seed=12, batch=16)
    want = ort_run("mlp_v1", {"input": x})["logits"].tobytes()
    req = service_pb2.ModelInferRequest(model_name="mlp")
    req.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    req.raw_input_contents.append(x.tobytes())
    channels = [
        grpc.insecure_channel(small_server.grpc_url, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(4)
    ]
    try:
        stubs = [service_pb2_grpc.GRPCInferenceServiceStub(c) for c in channels]
        ok = exhausted = 0
        for _ in range(5):
            futures = [stubs[i % len(stubs)].ModelInfer.future(req, timeout=30) for i in range(64)]
            for f in futures:
                try:
                    resp = f.result()
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, f"{e.code()}: {e.details()}"
                    assert "queue is full" in e.details(), e.details()
                    exhausted += 1
                else:
                    assert resp.raw_output_contents[0] == want
                    ok += 1
            if exhausted and ok:
                break
        assert ok and exhausted, f"{ok} answered, {exhausted} refused"
    finally:
        for c in channels:
            c.close()


# ---------------------------------------------------------------------------
# 8. malformed protobuf storm with raw grpcio
# ---------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _ld(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _field(field: int, wire: int) -> bytes:
    """A syntactically complete field of the given wire type."""
    return {
        0: _key(field, 0) + _varint(7),
        1: _key(field, 1) + b"\x01" * 8,
        2: _ld(field, b"abc"),
        3: _key(field, 3) + _key(field, 4),  # an empty group
        4: _key(field, 4),
        5: _key(field, 5) + b"\x01" * 4,
        6: _key(field, 6) + b"\x01" * 4,
        7: _key(field, 7) + b"\x01" * 4,
    }[wire]


def _valid_fraud_bytes() -> bytes:
    x = np.full((1, FRAUD_FEATURES), 0.5, np.float32)
    req = _raw_fraud_request(x, id="storm")
    req.outputs.add(name="probabilities")
    return req.SerializeToString()


def _input_tensor_bytes(*extra: bytes) -> bytes:
    return (_ld(1, b"input") + _ld(2, b"FP32") + _ld(3, _varint(1) + _varint(FRAUD_FEATURES))
            + b"".join(extra))


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _field_ends(data: bytes) -> list[int]:
    """Offsets where each top-level field of a (length-delimited only) message ends."""
    ends, pos = [], 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        assert key & 7 == 2, "only length-delimited fields expected"
        length, pos = _read_varint(data, pos)
        pos += length
        ends.append(pos)
    return ends


def _storm_cases() -> list[tuple[str, str, bytes]]:
    """(label, method, message bytes), deterministic; none is a valid request."""
    cases: list[tuple[str, str, bytes]] = []

    def add(label, data, method="ModelInfer"):
        cases.append((label, method, data))

    valid = _valid_fraud_bytes()
    head = _ld(1, b"fraud")
    rng = np.random.default_rng(4321)
    # -- random bytes
    for i in range(60):
        n = int(rng.integers(1, 300))
        add(f"random-{i}", rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    # -- truncations of a valid request (raw_input_contents is last, so every
    #    strict prefix either cuts a field or drops data)
    cuts = sorted(set(int(c) for c in rng.integers(0, len(valid), 45)) | {0, 1, len(valid) - 1})
    for cut in cuts:
        add(f"truncated@{cut}", valid[:cut])
    # ... and exactly at each top-level field boundary: well-formed protobuf,
    # but the input's data (or the input itself) is missing
    for cut in _field_ends(valid)[:-1]:
        add(f"truncated-at-field-end@{cut}", valid[:cut])
    # -- wrong wire types on every field of ModelInferRequest (all are
    #    length-delimited: strings, messages, maps, bytes)
    for field in range(1, 8):
        for wire in (0, 1, 3, 4, 5, 6, 7):
            add(f"request-field{field}-wire{wire}", valid + _field(field, wire))
    # -- wrong wire types inside an input tensor (shape is repeated int64:
    #    varint and packed are both right; name/datatype/parameters/contents are LD)
    for field, wire in [(1, 0), (2, 5), (3, 1), (3, 5), (4, 0), (5, 0), (5, 1), (2, 6), (1, 3)]:
        add(f"tensor-field{field}-wire{wire}", head + _ld(5, _input_tensor_bytes(_field(field, wire))))
    # -- wrong wire types inside InferTensorContents
    for field, wire in [(1, 1), (2, 5), (3, 5), (6, 0), (6, 1), (7, 0), (7, 5), (8, 0), (8, 5)]:
        contents = _field(field, wire)
        add(f"contents-field{field}-wire{wire}", head + _ld(5, _input_tensor_bytes(_ld(5, contents))))
    # -- length prefixes that lie or overflow
    for n in (1, 100, 2**31, 2**32 + 5, 2**63, 2**64 - 1):
        add(f"raw-length-{n}", valid + _key(7, 2) + _varint(n) + b"\x00" * 8)
        add(f"name-length-{n}", _key(1, 2) + _varint(n) + b"fraud")
    add("packed-fp32-not-multiple-of-4",
        head + _ld(5, _input_tensor_bytes(_ld(5, _ld(6, b"\x00" * 7)))))
    add("packed-fp64-not-multiple-of-8",
        head + _ld(5, _input_tensor_bytes(_ld(5, _ld(7, b"\x00" * 12)))))
    add("packed-shape-truncated-varint", head + _ld(5, _ld(1, b"input") + _ld(3, b"\x80\x80")))
    # -- broken varints and keys
    add("varint-overlong", b"\x08" + b"\xff" * 11 + b"\x01")
    add("varint-truncated", b"\x08\xff")
    add("key-truncated", b"\x80")
    add("field-number-zero", _key(0, 0) + _varint(1) + valid)
    add("field-number-zero-ld", _ld(0, b"x") + valid)
    add("unterminated-group", valid + _key(99, 3) + _field(100, 0))
    add("unmatched-end-group", valid + _key(99, 4))
    add("nested-truncated", head + _key(5, 2) + _varint(50) + _ld(1, b"input"))
    # -- strings that are not UTF-8
    add("model-name-not-utf8", _ld(1, b"fr\xffaud"))
    add("model-version-not-utf8", head + _ld(2, b"\xc3\x28"))
    add("id-not-utf8", head + _ld(3, b"\xed\xa0\x80"))
    add("input-name-not-utf8", head + _ld(5, _ld(1, b"inp\xfe") + _ld(2, b"FP32")))
    add("datatype-not-utf8", head + _ld(5, _ld(1, b"input") + _ld(2, b"FP\x8032")))
    add("output-name-not-utf8", valid + _ld(6, _ld(1, b"\xff\xff")))
    add("bytes-contents-fine-but-param-broken",
        head + _ld(4, _ld(1, b"k") + _ld(2, _key(1, 2) + b"\x05ab")))
    # -- parameters map with broken InferParameter
    add("param-wrong-wire", head + _ld(4, _ld(1, b"key") + _ld(2, _field(3, 0))))
    add("param-double-truncated", head + _ld(4, _ld(1, b"key") + _ld(2, _key(4, 1) + b"\x00\x00")))
    # -- the other unary methods get a few too
    for method in ("ModelReady", "ModelMetadata"):
        add(f"{method}-name-wire0", _field(1, 0), method)
        add(f"{method}-name-not-utf8", _ld(1, b"\xff"), method)
        add(f"{method}-truncated", _key(1, 2) + _varint(10) + b"fr", method)
    return cases


def test_malformed_protobuf_storm(grpc_url, grpc_client, ort_run):
    cases = _storm_cases()
    assert len(cases) >= 200, len(cases)
    allowed = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL}
    failures = []
    started = time.monotonic()
    with grpc.insecure_channel(grpc_url) as channel:
        calls = {
            m: channel.unary_unary(SERVICE + m, request_serializer=None, response_deserializer=None)
            for m in ("ModelInfer", "ModelReady", "ModelMetadata")
        }
        # control: the unbroken request is accepted, so each failure below is
        # due to the damage alone
        resp = service_pb2.ModelInferResponse.FromString(
            calls["ModelInfer"](_valid_fraud_bytes(), timeout=RPC_TIMEOUT_S))
        assert resp.model_version == "1" and [o.name for o in resp.outputs] == ["probabilities"]
        for label, method, data in cases:
            try:
                answer = calls[method](data, timeout=5)
            except grpc.RpcError as e:
                if e.code() not in allowed:
                    failures.append(f"{label}: {e.code()} {e.details()!r} for {data[:80]!r}")
            else:
                failures.append(f"{label}: OK ({len(answer)} bytes) for {data[:80]!r}")
    elapsed = time.monotonic() - started
    assert not failures, f"{len(failures)} of {len(cases)} mishandled:\n" + "\n".join(failures[:40])
    assert elapsed < 20, f"storm of {len(cases)} messages took {elapsed:.1f}s"
    _assert_still_serving(grpc_client, ort_run)
