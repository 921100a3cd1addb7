"""The Kubernetes manifests in k8s/: valid against the Kubernetes schemas (kubernetes-validate, offline: the
schemas ship in the package) and consistent with the services they deploy."""
from __future__ import annotations

import pytest
import yaml

from facemask.core.paths import REPO_ROOT

kubernetes_validate = pytest.importorskip("kubernetes_validate",
                                          reason="kubernetes-validate is not installed (requirements-dev.txt)")

K8S = REPO_ROOT / "k8s"
# The oldest version the manifests promise to work with (autoscaling/v2 is GA since 1.23) and the newest bundled.
KUBERNETES_VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]
SERVICES = {"classification": 3000, "detection": 8000}
KEDA_EXAMPLE = K8S / "examples" / "keda-worker-scaler.yaml"


def documents() -> list[dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def of_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in documents() if doc["kind"] == kind}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(version):
    checked = []
    for doc in documents():
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any unknown or wrong field
        checked.append(f"{doc['kind']}/{doc['metadata']['name']}")
    assert sorted(checked) == sorted(["Deployment/classification", "Deployment/detection", "Service/classification",
                                      "Service/detection", "HorizontalPodAutoscaler/classification",
                                      "PersistentVolumeClaim/facemask-jobs", "Deployment/worker", "Deployment/redis",
                                      "Service/redis"])


def test_a_schema_violation_is_caught():
    broken = of_kind("Deployment")["classification"]
    broken["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("service", SERVICES)
def test_deployments_probe_limit_and_drop_root(service):
    deployment = of_kind("Deployment")[service]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["ports"][0]["containerPort"] == SERVICES[service]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{service}: {kind}"
    assert pod["securityContext"]["runAsNonRoot"] is True
    dockerfile = (REPO_ROOT / service / "Dockerfile").read_text()
    assert f"--uid {pod['securityContext']['runAsUser']} " in dockerfile, "the image's user is the pod's user"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    assert container["image"] == compose["services"][service]["image"]
    # A read-only root file system needs somewhere for gunicorn and Prometheus to write.
    if container["securityContext"].get("readOnlyRootFilesystem"):
        assert any(mount["mountPath"] == "/tmp" for mount in container["volumeMounts"])
    assert deployment["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"][
        "labels"].items()


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_selects_its_deployment(service):
    deployment, svc = of_kind("Deployment")[service], of_kind("Service")[service]
    assert svc["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    (port,) = svc["spec"]["ports"]
    assert port["port"] == SERVICES[service]
    container_ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert port["targetPort"] in container_ports


def test_classifier_autoscales_and_detection_reaches_it_by_service_name():
    hpa = of_kind("HorizontalPodAutoscaler")["classification"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "classification"}
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    env = {e["name"]: e["value"] for e in of_kind("Deployment")["detection"]["spec"]["template"]["spec"][
        "containers"][0]["env"]}
    assert env["CLASSIFIER_URL"] == "http://classification:3000"
    # The classifier Deployment's CPU request is what the autoscaler's utilisation is measured against.
    classifier = of_kind("Deployment")["classification"]["spec"]["template"]["spec"]["containers"][0]
    assert "cpu" in classifier["resources"]["requests"]


def test_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def _env(deployment: str) -> dict[str, str]:
    return {e["name"]: e["value"] for e in of_kind("Deployment")[deployment]["spec"]["template"]["spec"][
        "containers"][0]["env"]}


def test_detection_is_stateless_and_shares_the_jobs_store_and_queue_with_the_workers():
    """Issue 34: no emptyDir jobs folder and no session affinity; detection and workers mount one ReadWriteMany
    claim at FACEMASK_JOBS_STORE and name one Redis."""
    from facemask.jobs.redis_queue import QUEUE_NAME

    assert "sessionAffinity" not in of_kind("Service")["detection"]["spec"]
    claim = of_kind("PersistentVolumeClaim")["facemask-jobs"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for name in ("detection", "worker"):
        env, pod = _env(name), of_kind("Deployment")[name]["spec"]["template"]["spec"]
        assert env["FACEMASK_QUEUE_URL"] == "redis://redis:6379/0", name
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == env["FACEMASK_JOBS_STORE"]]
        assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == "facemask-jobs", name
        assert not any("emptyDir" in volume and volume_name != "tmp" for volume_name, volume in volumes.items())
    worker = of_kind("Deployment")["worker"]["spec"]["template"]["spec"]
    assert worker["containers"][0]["command"] == ["python", "-m", "facemask.worker"]
    assert worker["containers"][0]["image"] == of_kind("Deployment")["detection"]["spec"]["template"]["spec"][
        "containers"][0]["image"]
    assert _env("worker")["CLASSIFIER_URL"] == _env("detection")["CLASSIFIER_URL"]
    redis = of_kind("Service")["redis"]
    assert redis["spec"]["ports"][0]["port"] == 6379
    assert redis["spec"]["selector"].items() <= of_kind("Deployment")["redis"]["spec"]["template"]["metadata"][
        "labels"].items()
    scaler = yaml.safe_load(KEDA_EXAMPLE.read_text())
    assert scaler["spec"]["triggers"][0]["metadata"]["listName"] == f"rq:queue:{QUEUE_NAME}"
    assert scaler["spec"]["scaleTargetRef"]["name"] == "worker"


def test_the_keda_example_matches_its_schema():
    """kubernetes-validate has no schemas for CRDs: KEDA's ScaledObject is checked against the subset of its CRD
    schema committed beside it, and a broken one is caught."""
    import json

    import jsonschema

    schema = json.loads((K8S / "examples" / "keda-scaledobject.schema.json").read_text())
    scaler = yaml.safe_load(KEDA_EXAMPLE.read_text())
    jsonschema.validate(scaler, schema)
    for broken in ({**scaler, "spec": {**scaler["spec"], "maxReplicaCount": "ten"}},
                   {**scaler, "spec": {**scaler["spec"], "triggers": [{"type": "redis", "metadata": {
                       "address": "redis:6379", "listLength": "2"}}]}},  # no listName
                   {**scaler, "spec": {**scaler["spec"], "scaleTargetref": {"name": "worker"}}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


def test_the_gpu_example_is_valid_and_asks_each_pod_for_one_gpu():
    """k8s/examples/gpu.yaml (issue 38): schema-valid like the base, the GPU images of the compose profile, one
    nvidia.com/gpu per pod, the CUDA provider asked for, one worker per card."""
    gpu_docs = [doc for doc in yaml.safe_load_all((K8S / "examples" / "gpu.yaml").read_text()) if doc]
    for doc in gpu_docs:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
    deployments = {doc["metadata"]["name"]: doc for doc in gpu_docs if doc["kind"] == "Deployment"}
    assert set(deployments) == {"classification-gpu", "detection-gpu"}
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["FACEMASK_ORT_PROVIDERS"] == "cuda,cpu" and env["WEB_CONCURRENCY"] == "1"
        assert container["image"] == compose[name]["image"]
        assert compose[name]["profiles"] == ["gpu"]
        (device,) = compose[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
        assert compose[name]["build"]["dockerfile"] == "docker/gpu.Dockerfile"
        assert pod["securityContext"]["runAsUser"] == of_kind("Deployment")[name.removesuffix("-gpu")]["spec"][
            "template"]["spec"]["securityContext"]["runAsUser"]
    assert "http://classification-gpu:3000" in str(deployments["detection-gpu"])
    dockerfile = (REPO_ROOT / "docker" / "gpu.Dockerfile").read_text()
    # onnxruntime leaves before onnxruntime-gpu comes: both own the `onnxruntime` module
    assert dockerfile.index("pip uninstall -y onnxruntime") < dockerfile.index("requirements-gpu.txt \\")
    assert "--uid 10001 " in dockerfile
