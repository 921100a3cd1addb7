"""The real compose stack: local base image, both images built, `docker compose up`, images through it, teardown.

Slow (a few minutes on a fresh machine) and needs root for dockerd, so it runs only with FACEMASK_DOCKER_TESTS=1
(.ci/run sets it). It builds FROM a debootstrapped local base image, so no registry is needed, and runs both
services with host networking on loopback ports.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest
import requests

from facemask.core.images import decode_image
from facemask.serving.local_server import REPO_ROOT, free_port

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("FACEMASK_DOCKER_TESTS") != "1", reason="set FACEMASK_DOCKER_TESTS=1"),
]
BASE_IMAGE = os.environ.get("BASE_IMAGE", "facemask-base:bookworm")
PROJECT = "facemask-test"


def sh(*command, timeout=900, env=None, check=True):
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def stack():
    sh("bash", "docker/setup_docker.sh", timeout=900)
    ports = {"CLASSIFIER_PORT": str(free_port()), "DETECTION_PORT": str(free_port()), "BASE_IMAGE": BASE_IMAGE}
    compose = ["docker", "compose", "-p", PROJECT, "-f", "docker-compose.yml",
               "-f", "docker/docker-compose.hostnet.yml"]
    sh(*compose, "build", env=ports, timeout=1200)
    try:
        sh(*compose, "up", "-d", "--wait", "--wait-timeout", "180", env=ports, timeout=300)
        yield compose, ports
    finally:
        logs = sh(*compose, "logs", "--no-color", env=ports, check=False).stdout
        print(logs[-5000:])
        sh(*compose, "down", "--timeout", "40", env=ports, check=False)


def test_compose_stack_serves_annotated_images(stack, sample_paths, sample_labels):
    _, ports = stack
    detection = f"http://127.0.0.1:{ports['DETECTION_PORT']}"
    classification = f"http://127.0.0.1:{ports['CLASSIFIER_PORT']}"
    assert requests.get(classification + "/ready", timeout=10).status_code == 200
    assert requests.get(detection + "/ready", timeout=10).status_code == 200
    for path in sample_paths:
        response = requests.post(detection + "/detect", files={"image": path.open("rb")}, timeout=60)
        assert response.status_code == 200
        assert len(response.json()["faces"]) == len(sample_labels[path.name])
        annotated = requests.post(detection + "/annotate", data=path.read_bytes(), timeout=60)
        assert annotated.status_code == 200
        assert decode_image(annotated.content).shape == decode_image(path).shape
    assert requests.post(detection + "/detect", data=b"not an image", timeout=10).status_code == 400
    page = requests.get(detection + "/", timeout=10)  # the upload page and its assets are in the image
    assert page.status_code == 200 and requests.get(detection + "/static/page.js", timeout=10).status_code == 200


def test_images_run_as_non_root_without_torch(stack):
    compose, ports = stack
    for service in ("classification", "detection"):
        user = sh(*compose, "exec", "-T", service, "id", "-u", env=ports).stdout.strip()
        assert user != "0", f"{service} runs as root"
        probe = sh(*compose, "exec", "-T", service, "python", "-c",
                   "import importlib.util, json; print(json.dumps([importlib.util.find_spec(m) is not None "
                   "for m in ('torch', 'fastai')]))", env=ports)
        assert json.loads(probe.stdout) == [False, False], f"{service} image contains torch or fastai"
