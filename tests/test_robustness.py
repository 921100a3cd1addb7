"""What cameras and upload forms really send, faults, and shutdown, against the real servers."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image

from facemask.core.images import decode_image
from facemask.core.paths import REPO_ROOT
from facemask.serving.local_server import LocalService


def encoded(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo(sample_paths) -> Image.Image:
    return Image.open(next(p for p in sample_paths if p.name == "group_mixed.jpg")).convert("RGB")


def odd_inputs(photo: Image.Image) -> dict[str, tuple[bytes, int]]:
    """name -> (request body, expected status)."""
    sixteen_bit = Image.fromarray((np.asarray(photo.convert("L"), dtype=np.uint16) * 257))
    return {
        "grayscale": (encoded(photo.convert("L")), 200),
        "rgba": (encoded(photo.convert("RGBA")), 200),
        "16-bit png": (encoded(sixteen_bit), 200),
        "cmyk jpeg": (encoded(photo.convert("CMYK"), "JPEG"), 200),
        "1x1": (encoded(Image.new("RGB", (1, 1))), 200),
        "panorama 6000x300": (encoded(Image.new("RGB", (6000, 300), (90, 120, 150)), "JPEG"), 200),
        "no faces": (encoded(Image.new("RGB", (320, 240), (30, 160, 60))), 200),
        "zero bytes": (b"", 400),
        "text": (b"GET / HTTP/1.1 this is not an image", 400),
        "truncated jpeg": (encoded(photo, "JPEG")[:5000], 400),
        "truncated png": (encoded(photo)[:3000], 400),
        "decompression bomb": (encoded(Image.new("1", (20000, 20000))), 400),
    }


@pytest.fixture(scope="module")
def odd_cases(photo) -> dict[str, tuple[bytes, int]]:
    """odd_inputs(photo), made once for the module: encoding them takes over a second."""
    return odd_inputs(photo)


def test_detection_service_handles_every_odd_input(detection_service, odd_cases):
    for name, (body, status) in odd_cases.items():
        response = requests.post(detection_service.url + "/detect", data=body, timeout=60)
        assert response.status_code == status, f"{name}: {response.status_code} {response.text[:200]}"
        assert response.headers["Content-Type"].startswith("application/json"), name
        if status == 200:
            assert isinstance(response.json()["faces"], list), name
        else:
            assert response.json()["error"], name
    converted = requests.post(detection_service.url + "/detect", data=odd_cases["cmyk jpeg"][0], timeout=60)
    assert len(converted.json()["faces"]) == 6  # colour conversions keep the faces findable


def test_exif_rotated_photo_gets_boxes_on_the_faces(detection_service, photo, sample_labels):
    """A phone photo stored sideways with an orientation tag: boxes must be in the upright picture."""
    exif = Image.Exif()
    exif[0x0112] = 8  # display = stored image rotated 90 degrees clockwise
    stored = photo.transpose(Image.Transpose.ROTATE_270)  # what a sideways camera writes
    body = encoded(stored, "JPEG", exif=exif)
    assert decode_image(body).shape[:2] == (photo.height, photo.width)
    faces = requests.post(detection_service.url + "/detect", data=body, timeout=60).json()["faces"]
    assert len(faces) == len(sample_labels["group_mixed.jpg"])
    for truth in sample_labels["group_mixed.jpg"]:
        x, y = truth["center"]
        assert any(f["box"][0] <= x <= f["box"][2] and f["box"][1] <= y <= f["box"][3] for f in faces)


@pytest.mark.slow  # a fuzzing run
def test_classify_matches_its_openapi_document_under_fuzzing(classifier_service, tmp_path):
    """A bounded schemathesis run (loopback only) finds no 5xx and no response that breaks the schema."""
    schema = requests.get(classifier_service.url + "/openapi.json", timeout=5)
    assert schema.status_code == 200 and "/classify" in schema.json()["paths"]
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", classifier_service.url + "/openapi.json",
         "--url", classifier_service.url, "--checks", "not_a_server_error,response_schema_conformance",
         "--max-examples", "25", "--phases", "examples,fuzzing", "--request-timeout", "20", "--seed", "1",
         "--generation-database", "none"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.slow  # waits out a time-out by design
def test_sigterm_lets_in_flight_requests_finish(sample_paths, tmp_path):
    """gunicorn's graceful shutdown: a request already being served is answered, then the server exits."""
    crop = encoded(Image.open(sample_paths[0]).convert("RGB").resize((256, 256)), "JPEG")
    files = [("crops", (f"c{i}.jpg", crop, "image/jpeg")) for i in range(250)]  # about a second of work
    with LocalService("classification", workers=1, log_path=tmp_path / "cls.log") as classifier:
        answers = []
        client = threading.Thread(target=lambda: answers.append(
            (requests.post(classifier.url + "/classify", files=files, timeout=60), time.monotonic())))
        client.start()
        time.sleep(0.2)
        signalled = time.monotonic()
        classifier.process.send_signal(signal.SIGTERM)
        client.join()
        assert classifier.process.wait(timeout=40) == 0
    response, answered = answers[0]
    assert answered > signalled, "the request finished before the signal: make it longer"
    assert response.status_code == 200 and response.json()["count"] == 250


@pytest.mark.slow  # a service of its own, a worker killed and a new one booted
def test_a_killed_worker_is_replaced(tmp_path):
    with LocalService("classification", workers=1, log_path=tmp_path / "cls.log") as classifier:
        children = subprocess.run(["pgrep", "-P", str(classifier.process.pid)], capture_output=True, text=True)
        worker = int(children.stdout.split()[0])
        os.kill(worker, signal.SIGKILL)
        deadline, ready = time.monotonic() + 60, False
        while time.monotonic() < deadline and not ready:
            try:
                ready = requests.get(classifier.url + "/ready", timeout=2).status_code == 200
            except requests.RequestException:
                time.sleep(0.3)
        replacement = subprocess.run(["pgrep", "-P", str(classifier.process.pid)], capture_output=True, text=True)
        assert ready and worker not in map(int, replacement.stdout.split())


def test_cli_never_writes_outside_the_output_folder(classifier_service, sample_paths, tmp_path):
    """Names with '..' or links cannot carry an output file out of --out_path."""
    source = tmp_path / "in"
    source.mkdir()
    (source / "ok.jpg").write_bytes(sample_paths[0].read_bytes())
    outside = tmp_path / "outside"
    outside.mkdir()
    (source / "escape").symlink_to(outside, target_is_directory=True)
    (outside / "x.jpg").write_bytes(sample_paths[0].read_bytes())
    out = tmp_path / "out"
    env = {**os.environ, "CLASSIFIER_URL": classifier_service.url}
    result = subprocess.run([sys.executable, "infer.py", "--is_image", "--in_path", str(source), "--out_path",
                             str(out)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert all(not p.startswith("..") for p in written)
    assert list(outside.iterdir()) == [outside / "x.jpg"], "nothing may be written into the linked folder"
    assert "ok.jpg" in " ".join(written) and json.loads(result.stdout.splitlines()[-1])["processed"] >= 1


def test_cli_batch_of_odd_files_processes_the_good_and_reports_the_bad(classifier_service, odd_cases, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    cases = odd_cases
    for index, (name, (body, _)) in enumerate(cases.items()):
        (folder / f"{index:02d}_{name.replace(' ', '_')}.png").write_bytes(body)
    env = {**os.environ, "CLASSIFIER_URL": classifier_service.url}
    result = subprocess.run([sys.executable, "infer.py", "--is_image", "--in_path", str(folder), "--out_path",
                             str(out)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1  # some inputs were bad
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    good = [name for name, (_, status) in cases.items() if status == 200]
    assert summary["processed"] == len(good) and len(summary["failed"]) == len(cases) - len(good)
    for index, (name, (_, status)) in enumerate(cases.items()):
        stem = f"{index:02d}_{name.replace(' ', '_')}"
        assert (out / f"{stem}.json").is_file() == (status == 200), name
        if status != 200:
            assert f"{stem}.png" in result.stderr, name
