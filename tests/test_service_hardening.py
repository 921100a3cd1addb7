"""Issue 27's service defects against the real servers: a hung classifier under concurrency, a .npy header bomb,
internal details in answers, security headers, misleading messages, request bodies that stall."""
from __future__ import annotations

import io
import socket
import time

import numpy as np
import pytest
import requests
from PIL import Image

from bench.robustness import frozen_classifier_answers
from facemask.serving.local_server import LocalService


def npy_header(shape: tuple, dtype: str = "|u1") -> bytes:
    """A .npy file's header alone: what a 100-byte body may declare."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


@pytest.mark.parametrize("body, message", [
    (npy_header((1, 100000, 100000, 3)), "exceed 1024 px"),
    (npy_header((2, 96, 96, 3)) + b"\0" * 100, "the header declares"),
    (npy_header((-1, 96, 96, 3)), "holds no crop"),
    (b"\x93NUMPY\x09\x00" + b"\0" * 20, "not a .npy array"),
])
def test_npy_headers_are_checked_before_anything_is_allocated(classifier_service, body, message):
    response = requests.post(classifier_service.url + "/classify", data=body, timeout=30,
                             headers={"Content-Type": "application/x-npy"})
    assert 400 <= response.status_code < 500, response.text[:300]
    assert message in response.json()["error"], response.json()


def test_security_headers_on_the_page_and_the_json(detection_service, classifier_service):
    for url in (detection_service.url + "/", detection_service.url + "/info", detection_service.url + "/nowhere",
                classifier_service.url + "/health"):
        headers = requests.get(url, timeout=10).headers
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], url
        assert "default-src 'self'" in headers["Content-Security-Policy"], url
        assert headers["X-Content-Type-Options"] == "nosniff", url
        assert headers["X-Frame-Options"] == "DENY" and headers["Referrer-Policy"] == "no-referrer", url


def test_answers_show_no_server_paths_or_internal_urls(detection_service, classifier_service):
    info = requests.get(detection_service.url + "/info", timeout=10).json()
    assert "/" not in info["detector"]["model"] and info["detector"]["model"].endswith(".onnx"), info
    for path in ("/info", "/ready"):
        text = requests.get(detection_service.url + path, timeout=10).text
        assert classifier_service.url not in text and str(classifier_service.port) not in text, (path, text)


def test_messages_say_what_is_wrong(detection_service, classifier_service):
    big_crop = io.BytesIO()
    Image.new("RGB", (3000, 3000)).save(big_crop, format="PNG")
    answer = requests.post(classifier_service.url + "/classify", timeout=30,
                           files=[("crops", ("big.png", big_crop.getvalue(), "image/png"))]).json()
    assert "too large" in answer["results"][0]["error"] and "corrupt" not in answer["results"][0]["error"], answer

    parts = [("crops", (f"c{i}.png", b"x", "image/png")) for i in range(1100)]
    response = requests.post(classifier_service.url + "/classify", files=parts, timeout=30)
    assert response.status_code == 413 and "too many parts" in response.json()["error"], response.text[:200]

    response = requests.get(detection_service.url + "/detect", timeout=10)
    assert response.status_code == 405 and "POST" in response.headers["Allow"]
    assert response.headers["Content-Type"] == "application/json"


def read_response(client: socket.socket) -> str:
    """One HTTP answer, headers and body: they may arrive in separate packets."""
    data = b""
    while b"\r\n\r\n" not in data and (chunk := client.recv(65536)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length and (chunk := client.recv(65536)):
        body += chunk
    return (head + b"\r\n\r\n" + body).decode(errors="replace")


@pytest.mark.slow  # waits out a time-out by design
def test_a_stalled_body_is_dropped_with_408(tmp_path):
    """A client that sends its headers and 2 bytes of a 1 MB body held its connection for ever."""
    with LocalService("classification", workers=1, env={"BODY_IDLE_TIMEOUT_S": "2"},
                      log_path=tmp_path / "cls.log") as service:
        with socket.create_connection(("127.0.0.1", service.port), timeout=30) as client:
            client.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                           b"Content-Length: 1000000\r\n\r\nab")
            started = time.monotonic()
            answer = read_response(client)
            waited = time.monotonic() - started
    assert answer.startswith("HTTP/1.1 408"), answer[:300]
    assert "nothing received for 2 s" in answer and 1.5 < waited < 10, (waited, answer[-200:])


@pytest.mark.slow  # waits out the classify deadline by design
def test_a_hung_classifier_is_waited_for_once_not_by_every_request(sample_paths, sample_labels, tmp_path):
    """8 clients on /detect with the classifier SIGSTOPped answered at 15, 16, 30, 31, 46... s: each waited its
    own deadline in turn. Once the classifier is known to be down, requests fail fast with 503 and every face."""
    photo = next(p for p in sample_paths if p.name == "group_mixed.jpg").read_bytes()
    with LocalService("classification", workers=1, log_path=tmp_path / "cls.log") as classifier, \
            LocalService("detection", workers=2, env={"CLASSIFIER_URL": classifier.url},
                         log_path=tmp_path / "det.log") as detection:
        for _ in range(4):  # both workers warm, each with the classifier's /info
            assert requests.post(detection.url + "/detect", data=photo, timeout=60).status_code == 200
        *answers, (later_seconds, later) = frozen_classifier_answers(classifier, detection, photo, 8)
        recovered = None
        deadline = time.monotonic() + 30  # back within the breaker's cool-down once the classifier answers
        while time.monotonic() < deadline and recovered != 200:
            recovered = requests.post(detection.url + "/detect", data=photo, timeout=60).status_code
            time.sleep(1)
    slowest = max(seconds for seconds, _ in answers)
    assert slowest < 25, [round(seconds, 1) for seconds, _ in answers]
    for _, response in answers + [(later_seconds, later)]:
        assert response.status_code == 503 and response.headers["Content-Type"] == "application/json"
        body = response.json()
        assert len(body["faces"]) == len(sample_labels["group_mixed.jpg"])
        assert all(face["status"] == "unclassified" for face in body["faces"])
        assert classifier.url not in body["error"] and "Read timed out" not in body["error"], body["error"]
    assert later_seconds < 5, later_seconds
    assert recovered == 200


def test_uniform_noise_is_no_face(detection_service, classifier_service, sample_paths):
    # Noise made frame-filling boxes cut at the top (scores 0.50-0.64), their eyes above the image: 7 "faces" in 10.
    rng = np.random.default_rng(0)
    for _ in range(10):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(buffer, format="PNG")
        response = requests.post(detection_service.url + "/detect", files={"image": ("noise.png", buffer.getvalue())},
                                 timeout=60)
        assert response.status_code == 200 and response.json()["faces"] == [], response.text[:300]
    # The check asks such boxes for a higher score; faces with an eye in the picture are untouched.
    group = requests.post(detection_service.url + "/detect", files={"image": sample_paths[0].read_bytes()},
                          timeout=60).json()
    assert len(group["faces"]) >= 5
