"""The Kubernetes manifests in deploy/kubernetes, checked offline.

No cluster can run here, so the manifests are checked the ways that need
none: rendered with `kubectl kustomize` (scripts/setup-kubectl.sh fetches
it), validated strictly against the Kubernetes API schemas with
kubernetes-validate (a warning, such as an apiVersion without a schema, fails
too), cross-checked for the references Kubernetes only resolves at run time
(selectors, named ports, scale targets, the shutdown budget), and the demo
overlay's endpoints file is served by the real `podium` binary.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from conftest import REPO, run_podium

KUBECTL = Path(os.environ.get("PODIUM_KUBECTL", REPO / ".tools" / "kubectl" / "usr" / "bin" / "kubectl"))
KUBERNETES_VERSION = "1.34.0"
DEPLOY = REPO / "deploy" / "kubernetes"
# Directories of `kubectl apply -k`; monitoring needs the Prometheus Operator.
KUSTOMIZATIONS = ["base", "demo", "monitoring"]


def render(name: str) -> list[dict]:
    assert KUBECTL.exists(), f"no kubectl at {KUBECTL}: run scripts/setup-kubectl.sh (scripts/test.sh does)"
    out = subprocess.run(
        [str(KUBECTL), "kustomize", str(DEPLOY / name)],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, f"kubectl kustomize {name} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("name", ["base", "demo"])
def test_manifests_validate_strictly(name, tmp_path):
    rendered = tmp_path / f"{name}.yaml"
    rendered.write_text(yaml.safe_dump_all(render(name)))
    validator = Path(os.sys.executable).with_name("kubernetes-validate")
    out = subprocess.run(
        [str(validator), "--strict", "-k", KUBERNETES_VERSION, str(rendered)],
        capture_output=True, text=True, timeout=120,
    )
    report = out.stdout + out.stderr
    assert out.returncode == 0, report
    problems = [line for line in report.splitlines() if line.startswith(("WARN", "ERROR"))]
    assert not problems, report
    passed = [line for line in report.splitlines() if line.startswith("INFO") and "passed" in line]
    assert len(passed) == len(render(name)), report


@pytest.mark.parametrize("name", ["base", "demo"])
def test_objects_refer_to_each_other(name):
    docs = render(name)
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    assert matches(deployment["spec"]["selector"]["matchLabels"], pod_labels)

    container = one([{"kind": "c", **c} for c in pod["spec"]["containers"]], "c")
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port_names == {"http": 8000, "grpc": 8001}
    assert "--listen=0.0.0.0:8000" in container["args"]
    assert "--grpc-listen=0.0.0.0:8001" in container["args"]

    service = one(docs, "Service")
    assert matches(service["spec"]["selector"], pod_labels)
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in port_names, f"Service port {port} targets no container port"
    grpc = [p for p in service["spec"]["ports"] if p["name"] == "grpc"]
    assert grpc and grpc[0]["appProtocol"] == "grpc"

    hpa = one(docs, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2, "one replica cannot keep serving through a disruption"

    pdb = one(docs, "PodDisruptionBudget")
    assert matches(pdb["spec"]["selector"]["matchLabels"], pod_labels)

    # Every ConfigMap, Secret and ServiceAccount the pod names exists.
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("ServiceAccount", pod["spec"]["serviceAccountName"]) in names
    for volume in pod["spec"]["volumes"]:
        if "configMap" in volume:
            assert ("ConfigMap", volume["configMap"]["name"]) in names
        if "secret" in volume:
            assert ("Secret", volume["secret"]["secretName"]) in names
    for source in container["envFrom"]:
        assert ("ConfigMap", source["configMapRef"]["name"]) in names
    if name == "demo":
        assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"podium-demo"}


@pytest.mark.parametrize("name", ["base", "demo"])
def test_probes_and_shutdown_fit_podium(name):
    docs = render(name)
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"

    # The pod is killed only after the preStop pause and Podium's drain.
    config = one(docs, "ConfigMap")["data"]
    drain = int(config["PODIUM_DRAIN_TIMEOUT_SECS"])
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "/bin/sleep"
    assert pod["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + drain + 5

    # Inference threads follow the CPU limit; the file system is read-only
    # except the mounted cache, table and /tmp volumes; no root.
    threads = {e["name"]: e for e in container["env"]}["PODIUM_INFERENCE_THREADS"]
    assert threads["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
    assert container["resources"]["limits"]["cpu"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert {config["PODIUM_TABLE_DIR"], config["PODIUM_CACHE_DIR"], "/tmp"} <= writable


def test_servicemonitor_scrapes_the_service():
    monitor = one(render("monitoring"), "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = one(render("base"), "Service")
    assert matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    ports = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in ports
        assert endpoint["path"] == "/metrics"


def test_demo_endpoints_file_is_served(registry, tmp_path):
    """The overlay's endpoints.toml is one Podium accepts and serves."""
    config = one(render("demo"), "ConfigMap")["data"]
    endpoints = tmp_path / "endpoints.toml"
    endpoints.write_text(config["endpoints.toml"])
    body = {"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": [0.5] * 30}]}
    with run_podium(registry, tmp_path, "--config", str(endpoints)) as srv:
        r = requests.post(f"http://{srv.url}/v2/models/fraud-ab/infer", json=body,
                          headers={"x-user-id": "user-7"}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.headers["x-podium-endpoint"] == "fraud-ab"
        assert r.headers["x-podium-arm"] in {"champion", "challenger"}
