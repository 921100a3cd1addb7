"""The Kubernetes manifests in k8s/: valid against the Kubernetes schemas (kubernetes-validate, offline: the
schemas ship in the package) and consistent with the services they deploy."""
from __future__ import annotations

import pytest
import yaml

from facemask.serving.local_server import REPO_ROOT

kubernetes_validate = pytest.importorskip("kubernetes_validate",
                                          reason="kubernetes-validate is not installed (requirements-dev.txt)")

K8S = REPO_ROOT / "k8s"
# The oldest version the manifests promise to work with (autoscaling/v2 is GA since 1.23) and the newest bundled.
KUBERNETES_VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]
SERVICES = {"classification": 3000, "detection": 8000}


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
                                      "Service/detection", "HorizontalPodAutoscaler/classification"])


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
