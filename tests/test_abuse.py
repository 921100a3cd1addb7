"""Abuse the services as issue 15's probe did: pixel bombs, oversized chunked bodies, a hung classifier."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import time

import pytest
import requests
from PIL import Image

from facemask.serving.local_server import LocalService

GIB = 1024 ** 3


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def pixel_bomb() -> bytes:
    """The probe's crop: about 10 KB on the wire, 8900x8900 pixels (just under the global 80 Mpx limit) decoded."""
    return png(Image.new("1", (8900, 8900)))


@pytest.fixture(scope="module")
def face_crop(sample_paths) -> bytes:
    return png(Image.open(sample_paths[0]).convert("RGB").crop((0, 0, 96, 96)))


def test_classify_refuses_pixel_bombs_from_their_headers(classifier_service, pixel_bomb, face_crop):
    files = [("crops", (f"bomb{i}.png", pixel_bomb, "image/png")) for i in range(24)]
    files.insert(3, ("crops", ("face.png", face_crop, "image/png")))
    started = time.monotonic()
    response = requests.post(classifier_service.url + "/classify", files=files, timeout=60)
    assert response.status_code == 200, response.text[:300]
    assert time.monotonic() - started < 5  # refused from the header: nothing decoded (the probe saw 11 s)
    body = response.json()
    assert body["count"] == 25 and body["errors"] == 24
    assert "label" in body["results"][3]
    assert all("too large" in r["error"] for i, r in enumerate(body["results"]) if i != 3)
    assert max(classifier_service.worker_peak_rss()) < 1 * GIB


def test_classify_refuses_a_request_over_its_pixel_budget(classifier_service):
    info = requests.get(classifier_service.url + "/info", timeout=10).json()
    side = int(info["max_crop_pixels"] ** 0.5)  # each crop within its own limit, together over the request's
    crop = png(Image.new("RGB", (side, side), (120, 90, 60)))
    count = info["max_request_pixels"] // (side * side) + 1
    response = requests.post(classifier_service.url + "/classify", timeout=60,
                             files=[("crops", (f"c{i}.png", crop, "image/png")) for i in range(count)])
    assert response.status_code == 413 and "limit per request" in response.json()["error"]
    within = requests.post(classifier_service.url + "/classify", timeout=60,
                           files=[("crops", (f"c{i}.png", crop, "image/png")) for i in range(count - 1)])
    assert within.status_code == 200 and within.json()["errors"] == 0
    assert max(classifier_service.worker_peak_rss()) < 1 * GIB


@pytest.mark.parametrize("service", ["detection", "classification"])
def test_chunked_body_over_the_upload_limit_is_refused_with_413(service, detection_service, classifier_service):
    server = detection_service if service == "detection" else classifier_service
    path = "/detect" if service == "detection" else "/classify"
    limit = requests.get(server.url + "/info", timeout=10).json()["max_upload_bytes"]
    chunk = b"\0" * 1_000_000

    def chunks():
        for _ in range(limit // len(chunk) + 5):
            yield chunk

    try:
        response = requests.post(server.url + path, data=chunks(), timeout=60,
                                 headers={"Content-Type": "application/octet-stream"})
    except requests.ConnectionError:
        pytest.fail("the server dropped the connection instead of answering 413")
    assert response.status_code == 413, response.text[:200]
    assert "limit" in response.json()["error"]


def test_annotate_refuses_an_unknown_output_format(detection_service, sample_paths):
    response = requests.post(detection_service.url + "/annotate?format=bmp", data=sample_paths[0].read_bytes(),
                             timeout=60)
    assert response.status_code == 400 and "png" in response.json()["error"]
    assert requests.post(detection_service.url + "/annotate?format=png", data=sample_paths[0].read_bytes(),
                         timeout=60).headers["Content-Type"] == "image/png"


@pytest.mark.parametrize("service", ["detection", "classification"])
def test_metrics_content_type_names_its_charset_once(service, detection_service, classifier_service):
    server = detection_service if service == "detection" else classifier_service
    content_type = requests.get(server.url + "/metrics", timeout=10).headers["Content-Type"]
    assert content_type.count("charset") == 1, content_type


@pytest.mark.slow  # waits out a time-out by design
def test_hung_classifier_gives_503_json_with_every_face_unclassified_within_20_s(sample_paths, sample_labels,
                                                                                tmp_path):
    """SIGSTOP freezes the classifier: connections are accepted by the kernel and never answered."""
    photo = next(p for p in sample_paths if p.name == "group_mixed.jpg")
    with LocalService("classification", workers=1, log_path=tmp_path / "cls.log") as classifier, \
            LocalService("detection", workers=1, env={"CLASSIFIER_URL": classifier.url},
                         log_path=tmp_path / "det.log") as detection:
        assert requests.post(detection.url + "/detect", data=photo.read_bytes(), timeout=60).status_code == 200
        frozen = [classifier.process.pid] + [int(pid) for pid in subprocess.run(
            ["pgrep", "-P", str(classifier.process.pid)], capture_output=True, text=True).stdout.split()]
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            response = requests.post(detection.url + "/detect", data=photo.read_bytes(), timeout=60)
            elapsed = time.monotonic() - started
            health = requests.get(detection.url + "/health", timeout=5)
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
    assert elapsed < 20, elapsed
    assert response.status_code == 503 and response.headers["Content-Type"] == "application/json"
    faces = response.json()["faces"]
    assert len(faces) == len(sample_labels["group_mixed.jpg"])
    assert all(face["status"] == "unclassified" and face["label"] == "unclassified" for face in faces)
    assert "deadline" in response.json()["error"]
    assert health.status_code == 200


@pytest.mark.slow  # waits out a time-out by design
def test_a_worker_killed_by_the_timeout_shows_in_metrics(pixel_bomb, tmp_path):
    """A request that outlives gunicorn's worker timeout never reaches after_request; worker_abort counts it."""
    env = {"GUNICORN_TIMEOUT": "2", "MAX_CROP_PIXELS": "80000000", "MAX_REQUEST_PIXELS": "1000000000"}
    with LocalService("classification", workers=1, env=env, log_path=tmp_path / "cls.log") as classifier:
        files = [("crops", (f"bomb{i}.png", pixel_bomb, "image/png")) for i in range(12)]  # many seconds of decoding
        with pytest.raises(requests.RequestException):
            requests.post(classifier.url + "/classify", files=files, timeout=60)
        deadline, metrics = time.monotonic() + 30, ""
        while time.monotonic() < deadline and 'endpoint="worker_timeout"' not in metrics:
            try:
                metrics = requests.get(classifier.url + "/metrics", timeout=5).text
            except requests.RequestException:
                time.sleep(0.5)
    assert 'classifier_http_requests_total{endpoint="worker_timeout",status="500"} 1.0' in metrics
