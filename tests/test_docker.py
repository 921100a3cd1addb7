"""The real compose stack: local base image, the images built, `docker compose up` with Redis and two job workers,
images and a video and a batch job through it, teardown.

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
from facemask.core.paths import REPO_ROOT
from facemask.serving.local_server import free_port

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("FACEMASK_DOCKER_TESTS") != "1", reason="set FACEMASK_DOCKER_TESTS=1"),
]
BASE_IMAGE = os.environ.get("BASE_IMAGE", "facemask-base:bookworm")
PROJECT = "facemask-test"
WORKERS = 2


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
    ports = {"CLASSIFIER_PORT": str(free_port()), "DETECTION_PORT": str(free_port()), "REDIS_PORT": str(free_port()),
             "BASE_IMAGE": BASE_IMAGE}
    compose = ["docker", "compose", "-p", PROJECT, "-f", "docker-compose.yml",
               "-f", "docker/docker-compose.hostnet.yml"]
    sh(*compose, "build", env=ports, timeout=1200)
    try:
        sh(*compose, "up", "-d", "--wait", "--wait-timeout", "180", "--scale", f"worker={WORKERS}", env=ports,
           timeout=300)
        yield compose, ports
    finally:
        logs = sh(*compose, "logs", "--no-color", env=ports, check=False).stdout
        print(logs[-5000:])
        sh(*compose, "down", "--volumes", "--timeout", "40", env=ports, check=False)  # its jobs and Redis data too


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
    for service in ("classification", "detection", "worker", "redis"):
        user = sh(*compose, "exec", "-T", service, "id", "-u", env=ports).stdout.strip()
        assert user != "0", f"{service} runs as root"
        if service == "redis":
            continue
        probe = sh(*compose, "exec", "-T", service, "python", "-c",
                   "import importlib.util, json; print(json.dumps([importlib.util.find_spec(m) is not None "
                   "for m in ('torch', 'fastai')]))", env=ports)
        assert json.loads(probe.stdout) == [False, False], f"{service} image contains torch or fastai"


def test_compose_stack_runs_video_and_batch_jobs_on_its_workers(stack, sample_paths, tmp_path):
    import io
    import zipfile

    import cv2

    from bench.common import frame_count
    from bench.queue_jobs import wait, write_clip

    compose, ports = stack
    detection = f"http://127.0.0.1:{ports['DETECTION_PORT']}"
    running = sh(*compose, "ps", "--status", "running", "--quiet", "worker", env=ports).stdout.split()
    assert len(running) == WORKERS, running
    assert requests.get(detection + "/info", timeout=10).json()["queue"] is True
    photo = cv2.resize(cv2.imread(str(sample_paths[0])), (320, 240))
    clip = write_clip(tmp_path / "clip.mp4", [photo] * 20)
    submitted = requests.post(detection + "/videos", files={"video": clip.open("rb")}, timeout=60)
    assert submitted.status_code == 202, submitted.text
    done = wait(detection, submitted.json()["id"], timeout=300)
    assert done["state"] == "done" and done["frames_done"] == 20, done
    assert frame_count(requests.get(detection + done["video_url"], timeout=30).content, tmp_path) == 20
    batch = requests.post(detection + "/batches", timeout=60,
                          files=[("photos", (path.name, path.read_bytes())) for path in sample_paths])
    assert batch.status_code == 202, batch.text
    done = wait(detection, batch.json()["id"], kind="batches", timeout=300)
    assert done["state"] == "done" and done["photos_annotated"] == len(sample_paths), done
    names = zipfile.ZipFile(io.BytesIO(requests.get(detection + done["zip_url"], timeout=30).content)).namelist()
    assert {"faces.csv", "faces.json"} <= set(names) and len(names) == len(sample_paths) + 2
    logs = sh(*compose, "logs", "--no-color", "worker", env=ports).stdout
    assert logs.count("Job OK") == 2, "both jobs were run by the workers"
