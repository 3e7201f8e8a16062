"""Triton's model repository and model configuration extensions, and gRPC
health for endpoints, driven with NVIDIA's own `tritonclient` (http and grpc)
and `grpcio-health-checking` against a real `podium serve` on 127.0.0.1.

The server has the session registry (fraud v1 champion, v2 challenger; mlp;
alltypes), an endpoint `fraud-ab` over fraud's champion and challenger, and
dynamic batching for mlp. Configurations are checked against the models' real
signatures, read with onnxruntime from the same .onnx files.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import grpc
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import REGISTRATIONS, _run_cli, build_registry, run_podium, set_alias

try:  # grpcio-health-checking (tests/python/requirements.txt)
    from grpc_health.v1 import health_pb2, health_pb2_grpc
except ImportError:  # pragma: no cover - only without the package
    health_pb2 = health_pb2_grpc = None

RPC_TIMEOUT_S = 10.0
MLP_MAX_BATCH = 16
MLP_DELAY_US = 300
MLP_PREFERRED = [4, 8]
MANAGED = "models are managed by the registry"

CONFIG = f"""
[[endpoint]]
name = "fraud-ab"
model = "fraud"
arms = [{{ alias = "champion", weight = 90 }}, {{ alias = "challenger", weight = 10 }}]

[model.mlp.batching]
max_batch_size = {MLP_MAX_BATCH}
max_queue_delay_us = {MLP_DELAY_US}
preferred_batch_sizes = {MLP_PREFERRED}
"""

ORT_TYPES = {
    "tensor(float)": "TYPE_FP32", "tensor(double)": "TYPE_FP64", "tensor(float16)": "TYPE_FP16",
    "tensor(bfloat16)": "TYPE_BF16", "tensor(bool)": "TYPE_BOOL", "tensor(string)": "TYPE_STRING",
    "tensor(int8)": "TYPE_INT8", "tensor(int16)": "TYPE_INT16", "tensor(int32)": "TYPE_INT32",
    "tensor(int64)": "TYPE_INT64", "tensor(uint8)": "TYPE_UINT8", "tensor(uint16)": "TYPE_UINT16",
    "tensor(uint32)": "TYPE_UINT32", "tensor(uint64)": "TYPE_UINT64",
}


@pytest.fixture(scope="module")
def triton_server(tmp_path_factory, model_paths):
    reg = build_registry(tmp_path_factory.mktemp("registry-triton"), REGISTRATIONS, model_paths)
    logdir = tmp_path_factory.mktemp("server-triton")
    config = logdir / "endpoints.toml"
    config.write_text(CONFIG)
    with run_podium(reg, logdir, "--config", str(config), "--poll-interval-ms", "200") as srv:
        yield srv


@pytest.fixture(scope="module")
def http_client(triton_server):
    with httpclient.InferenceServerClient(url=triton_server.url) as c:
        yield c


@pytest.fixture(scope="module")
def grpc_cl(triton_server):
    with grpcclient.InferenceServerClient(url=triton_server.grpc_url) as c:
        yield c


def signature(path, batched: bool):
    """(name, Triton type, dims) of each input and output, as Triton's config says them."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def dims(shape):
        full = [d if isinstance(d, int) else -1 for d in shape]
        return full[1:] if batched else full

    def tensors(args):
        return [(a.name, ORT_TYPES[a.type], dims(a.shape)) for a in args]

    return tensors(session.get_inputs()), tensors(session.get_outputs())


def http_config_tensors(config, key):
    return [(t["name"], t["data_type"], [int(d) for d in t["dims"]]) for t in config[key]]


def grpc_config_tensors(config, key):
    from tritonclient.grpc import model_config_pb2

    return [
        (t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims))
        for t in getattr(config, key)
    ]


def refused(fn, *args) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        fn(*args)
    return info.value


# ---------------------------------------------------------------------------
# server metadata lists the extensions
# ---------------------------------------------------------------------------


def test_extensions_listed(http_client, grpc_cl):
    for extensions in (http_client.get_server_metadata()["extensions"],
                       list(grpc_cl.get_server_metadata().extensions)):
        assert {"binary_tensor_data", "model_repository", "model_configuration"} <= set(extensions)


# ---------------------------------------------------------------------------
# the repository index
# ---------------------------------------------------------------------------

EXPECTED_READY = {
    ("fraud", "1"), ("fraud", "2"), ("mlp", "1"), ("alltypes", "1"), ("fraud-ab", "1"),
}


def test_repository_index_http_and_grpc_agree(http_client, grpc_cl):
    index = http_client.get_model_repository_index()
    entries = {(e["name"], e["version"]): (e["state"], e["reason"]) for e in index}
    for key in EXPECTED_READY:
        assert entries.get(key) == ("READY", ""), (key, index)
    assert all(set(e) == {"name", "version", "state", "reason"} for e in index), index
    via_grpc = grpc_cl.get_model_repository_index().models
    assert [(m.name, m.version, m.state, m.reason) for m in via_grpc] == [
        (e["name"], e["version"], e["state"], e["reason"]) for e in index
    ]
    as_json = grpc_cl.get_model_repository_index(as_json=True)["models"]
    assert [(m["name"], m.get("version", "")) for m in as_json] == [
        (e["name"], e["version"]) for e in index
    ]


def test_repository_index_ready_only(triton_server, model_paths):
    # a version registered but not loaded is listed, UNAVAILABLE with why;
    # {"ready": true} leaves it out
    _run_cli("--registry", str(triton_server.registry), "models", "register", "fraud",
             str(model_paths["fraud_v2"]))

    def index(body: bytes | None):
        req = urllib.request.Request(f"http://{triton_server.url}/v2/repository/index",
                                     data=body, method="POST")
        with urllib.request.urlopen(req, timeout=RPC_TIMEOUT_S) as r:
            return json.loads(r.read())

    deadline = time.monotonic() + 10
    while True:
        unloaded = [e for e in index(None) if (e["name"], e["version"]) == ("fraud", "3")]
        if unloaded or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert unloaded and unloaded[0]["state"] == "UNAVAILABLE", unloaded
    assert "version 3" in unloaded[0]["reason"], unloaded
    ready = index(b'{"ready": true}')
    assert ready and all(e["state"] == "READY" for e in ready), ready
    assert ("fraud", "3") not in {(e["name"], e["version"]) for e in ready}
    with grpc.insecure_channel(triton_server.grpc_url) as channel:
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        ready_grpc = stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(ready=True),
                                          timeout=RPC_TIMEOUT_S).models
        assert [(m.name, m.version) for m in ready_grpc] == [(e["name"], e["version"]) for e in ready]


def test_repository_index_bad_body_is_400(triton_server):
    req = urllib.request.Request(f"http://{triton_server.url}/v2/repository/index",
                                 data=b'{"ready": "yes"}', method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=RPC_TIMEOUT_S)
    assert info.value.code == 400
    error = json.loads(info.value.read())["error"]
    assert '"ready": "yes"' in error and '{"ready": true}' in error, error


# ---------------------------------------------------------------------------
# load / unload: refused, saying what to do instead
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["load_model", "unload_model"])
def test_model_control_refused_over_http(http_client, action):
    e = refused(getattr(http_client, action), "fraud")
    assert e.status() == "400", (e.status(), e.message())
    assert MANAGED in e.message() and "podium alias set fraud champion" in e.message()


@pytest.mark.parametrize("action", ["load_model", "unload_model"])
def test_model_control_refused_over_grpc(grpc_cl, action):
    e = refused(getattr(grpc_cl, action), "fraud-ab")
    assert e.status() == "StatusCode.FAILED_PRECONDITION", (e.status(), e.message())
    # the endpoint's model is the one whose alias to move
    assert MANAGED in e.message() and "podium alias set fraud champion" in e.message()


# ---------------------------------------------------------------------------
# model configuration
# ---------------------------------------------------------------------------

# (name, model_version argument, onnx file key, batched)
CONFIGS = [
    ("fraud", "", "fraud_v1", False),
    ("fraud", "2", "fraud_v2", False),
    ("fraud", "challenger", "fraud_v2", False),
    ("fraud-ab", "", "fraud_v1", False),
    ("mlp", "", "mlp_v1", True),
    ("alltypes", "1", "alltypes", False),
]


@pytest.mark.parametrize("name,version,key,batched", CONFIGS)
def test_model_config_http(http_client, model_paths, name, version, key, batched):
    config = http_client.get_model_config(name, model_version=version)
    assert config["name"] == name
    assert config["platform"] == "onnxruntime_onnx" and config["backend"] == "onnxruntime"
    assert config["version_policy"] == {"all": {}}
    inputs, outputs = signature(model_paths[key], batched)
    assert http_config_tensors(config, "input") == inputs
    assert http_config_tensors(config, "output") == outputs
    if batched:
        assert config["max_batch_size"] == MLP_MAX_BATCH
        assert config["dynamic_batching"] == {
            "preferred_batch_size": MLP_PREFERRED,
            "max_queue_delay_microseconds": MLP_DELAY_US,
        }
    else:
        assert config["max_batch_size"] == 0 and "dynamic_batching" not in config


@pytest.mark.parametrize("name,version,key,batched", CONFIGS)
def test_model_config_grpc(grpc_cl, http_client, model_paths, name, version, key, batched):
    config = grpc_cl.get_model_config(name, model_version=version).config
    assert config.name == name
    assert (config.platform, config.backend) == ("onnxruntime_onnx", "onnxruntime")
    assert config.version_policy.WhichOneof("policy_choice") == "all"
    inputs, outputs = signature(model_paths[key], batched)
    assert grpc_config_tensors(config, "input") == inputs
    assert grpc_config_tensors(config, "output") == outputs
    assert config.max_batch_size == (MLP_MAX_BATCH if batched else 0)
    if batched:
        assert config.WhichOneof("scheduling_choice") == "dynamic_batching"
        assert list(config.dynamic_batching.preferred_batch_size) == MLP_PREFERRED
        assert config.dynamic_batching.max_queue_delay_microseconds == MLP_DELAY_US
    else:
        assert config.WhichOneof("scheduling_choice") is None
    # the same configuration as REST, through tritonclient's own JSON rendering
    as_json = grpc_cl.get_model_config(name, model_version=version, as_json=True)["config"]
    rest = http_client.get_model_config(name, model_version=version)
    assert as_json.get("max_batch_size", 0) == rest["max_batch_size"]  # proto3 JSON omits 0
    assert [i["name"] for i in as_json["input"]] == [i["name"] for i in rest["input"]]


def test_model_config_unknown_is_not_found(http_client, grpc_cl):
    e = refused(http_client.get_model_config, "no_such_model")
    assert e.status() == "404" and "no_such_model" in e.message(), e.message()
    e = refused(grpc_cl.get_model_config, "fraud", "no_such_alias")
    assert e.status() == "StatusCode.NOT_FOUND" and "no_such_alias" in e.message(), e.message()


# ---------------------------------------------------------------------------
# gRPC health for endpoint names
# ---------------------------------------------------------------------------

needs_health = pytest.mark.skipif(health_pb2 is None, reason="grpcio-health-checking not installed")


def _health(channel, service):
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT_S).status
    except grpc.RpcError as e:
        return e.code()


def _wait_health(channel, service, want, deadline_s=10.0):
    deadline = time.monotonic() + deadline_s
    seen = None
    while time.monotonic() < deadline:
        seen = _health(channel, service)
        if seen == want:
            return
        time.sleep(0.05)
    pytest.fail(f"health of {service!r} is {seen}, wanted {want} within {deadline_s}s")


def _set_traffic(server, arms):
    body = json.dumps({"arms": arms}).encode()
    req = urllib.request.Request(f"http://{server.url}/admin/endpoints/fraud-ab/traffic",
                                 data=body, method="PUT",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=RPC_TIMEOUT_S) as r:
        assert r.status == 200


@needs_health
def test_health_follows_endpoint_arms(triton_server, http_client):
    SERVING = health_pb2.HealthCheckResponse.SERVING
    NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
    reg = str(triton_server.registry)
    with grpc.insecure_channel(triton_server.grpc_url) as channel:
        assert _health(channel, "fraud-ab") == SERVING
        # the challenger arm loses its version: the endpoint cannot answer all its traffic
        _run_cli("--registry", reg, "alias", "delete", "fraud", "challenger")
        _wait_health(channel, "fraud-ab", NOT_SERVING)
        assert _health(channel, "fraud") == SERVING  # the model's champion still serves
        index = {e["name"]: e for e in http_client.get_model_repository_index()}
        assert index["fraud-ab"]["state"] == "UNAVAILABLE"
        assert "fraud@challenger" in index["fraud-ab"]["reason"], index["fraud-ab"]
        # the endpoint's traffic moves to the champion alone: serving again
        _set_traffic(triton_server, [{"alias": "champion", "weight": 100}])
        _wait_health(channel, "fraud-ab", SERVING)
        set_alias(triton_server.registry, "fraud", "challenger", 2)
        deadline = time.monotonic() + 10
        while not http_client.is_model_ready("fraud", "challenger"):
            assert time.monotonic() < deadline, "fraud@challenger is back within 10 s"
            time.sleep(0.05)
        _set_traffic(triton_server, [{"alias": "champion", "weight": 90},
                                     {"alias": "challenger", "weight": 10}])
        _wait_health(channel, "fraud-ab", SERVING)
        assert _health(channel, "no-such-endpoint") == grpc.StatusCode.NOT_FOUND
