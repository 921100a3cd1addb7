"""The detection service's page and video-job endpoints over plain HTTP (the browser test drives the same)."""
from __future__ import annotations

import json
import re
import socket
import time

import cv2
import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.common import frame_count
from bench.queue_jobs import write_clip  # noqa: F401  (the other video tests import it from here)
from facemask.core.paths import REPO_ROOT
from tests.test_service_hardening import read_response

STATIC = REPO_ROOT / "detection" / "app" / "static"


def stage_count(base: str, stage: str) -> float:
    text = requests.get(base + "/metrics", timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "detection_stage_seconds_count" and sample.labels.get("stage") == stage)


def wait_for_job(base: str, status_url: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = requests.get(base + status_url, timeout=10).json()
        if status["state"] in ("done", "failed"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"video job not finished after {timeout} s: {status}")


def test_page_and_its_assets_are_served_locally(detection_service):
    page = requests.get(detection_service.url + "/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    # data:, is the empty icon: without it the browser asks for /favicon.ico and logs the 404 as an error.
    assets = [a for a in re.findall(r'(?:src|href)="([^"]+)"', page.text) if a != "data:,"]
    assert assets and all(a.startswith("/static/") for a in assets), assets
    for asset in assets:
        assert requests.get(detection_service.url + asset, timeout=10).status_code == 200, asset
    for path in STATIC.iterdir():  # nothing fetched from elsewhere, even from script (SVG's namespace is a name)
        text = path.read_text().replace('"http://www.w3.org/2000/svg"', "")
        assert not re.search(r"https?://", text), f"{path.name} refers to another site"


def test_sample_photos_are_served_for_the_page(detection_service, sample_paths):
    listed = requests.get(detection_service.url + "/samples", timeout=10).json()["samples"]
    samples = [sample for sample in listed if sample["kind"] == "photo"]
    assert [sample["name"] for sample in samples] == [path.name for path in sample_paths]
    # ...and the example video made from them (sample-images/make_example_video.py).
    (video,) = [sample for sample in listed if sample["kind"] == "video"]
    assert video["name"] == "example_entrance.webm"
    for sample, path in [*zip(samples, sample_paths), (video, REPO_ROOT / "sample-images" / video["name"])]:
        response = requests.get(detection_service.url + sample["url"], timeout=10)
        assert response.status_code == 200 and response.content == path.read_bytes()
    for name in ("nothing.jpg", "labels.json", "make_samples.py", "make_example_video.py"):
        response = requests.get(f"{detection_service.url}/samples/{name}", timeout=10)
        assert response.status_code == 404 and response.json()["error"], name
    for path in ("/samples/../labels.json", "/samples/..%2Flabels.json", "/samples/%2e%2e%2fmake_samples.py",
                 "/samples/..%2F..%2Fetc%2Fpasswd", "/static/../web.py", "/static/%2e%2e/web.py"):
        status, body = raw_get(detection_service.url, path)
        assert status == 404 and json.loads(body)["error"], path


def test_video_job_annotates_every_frame(detection_service, sample_paths, sample_labels, tmp_path):
    photo = cv2.resize(cv2.imread(str(sample_paths[0])), (640, 480))
    frames_total = 18
    clip = write_clip(tmp_path / "door cam.mp4", [photo] * frames_total)
    detect_timings_before = stage_count(detection_service.url, "detect")
    response = requests.post(detection_service.url + "/videos", files={"video": clip.open("rb")}, timeout=60)
    assert response.status_code == 202, response.text
    submitted = response.json()
    assert submitted["state"] == "queued" and submitted["frames_total"] == frames_total
    status = wait_for_job(detection_service.url, submitted["status_url"])
    assert status["state"] == "done", status
    assert status["frames_done"] == status["frames_total"] == frames_total and status["classifier_errors"] == 0
    # The tracked path, as infer.py: the people seen, by label, not faces summed over frames.
    truth = sample_labels[sample_paths[0].name]
    expected = {label: sum(face["label"] == label for face in truth) for label in {face["label"] for face in truth}}
    assert status["people"]["total"] == len(truth) and status["people"]["by_label"] == expected
    assert status["counts"] == expected
    video = requests.get(detection_service.url + status["video_url"], timeout=30)
    assert video.status_code == 200 and video.headers["Content-Type"] == "video/webm"
    assert 'filename="door cam_annotated.webm"' in video.headers["Content-Disposition"]
    assert frame_count(video.content, tmp_path) == frames_total

    record = requests.get(detection_service.url + status["json_url"], timeout=30).json()
    assert record["source"] == "door cam.mp4" and "/" not in record["output"]  # no server paths
    assert [frame["frame"] for frame in record["frames"]] == list(range(frames_total))
    assert all(face["status"] == "classified" for frame in record["frames"] for face in frame["faces"])
    assert all(len(frame["faces"]) == len(truth) for frame in record["frames"])
    assert len({face["track_id"] for frame in record["frames"] for face in frame["faces"]}) == len(truth)
    runs = record["summary"]["detector_runs"]
    assert runs < frames_total and stage_count(detection_service.url, "detect") - detect_timings_before == runs, \
        "every detector run in the stage histogram"


@pytest.mark.parametrize("name, body, message", [
    ("notes.txt", b"just text", "not a video"),
    ("empty.mp4", b"", "empty.mp4: empty file"),
    ("photo.jpg", None, "a photo, not a video"),
])
def test_bad_video_uploads_get_a_clear_400(detection_service, sample_paths, name, body, message):
    data = sample_paths[0].read_bytes() if body is None else body
    response = requests.post(detection_service.url + "/videos", files={"video": (name, data)}, timeout=30)
    assert response.status_code == 400 and response.headers["Content-Type"] == "application/json"
    assert message in response.json()["error"]


def test_too_long_a_video_is_refused(detection_service, tmp_path):
    from detection.app.video_jobs import DEFAULT_MAX_VIDEO_FRAMES

    frames = [np.full((16, 16, 3), i % 255, np.uint8) for i in range(DEFAULT_MAX_VIDEO_FRAMES + 1)]
    clip = write_clip(tmp_path / "long.mp4", frames, fps=30)
    response = requests.post(detection_service.url + "/videos", data=clip.read_bytes(), timeout=30)
    assert response.status_code == 400
    assert "video too long" in response.json()["error"] and "MAX_VIDEO_FRAMES" in response.json()["error"]


def raw_get(base: str, path: str) -> tuple[int, str]:
    """GET with the path exactly as given: requests (urllib3) removes dot segments, so "/videos/../../etc/passwd"
    went out as "/etc/passwd" and never reached the service's routes (issue 35)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = read_response(client)
    head, _, body = answer.partition("\r\n\r\n")
    return int(head.split()[1]), body


def test_unknown_jobs_are_404(detection_service):
    for path in ("/videos/" + "0" * 32, "/videos/" + "0" * 32 + "/video", "/videos/nothex/json"):
        response = requests.get(detection_service.url + path, timeout=10)
        assert response.status_code == 404, path
    for path in ("/videos/../../etc/passwd", "/videos/..%2F..%2Fetc%2Fpasswd", "/videos/" + "0" * 32 + "/../../x",
                 "/videos/..", "/videos/%2e%2e", "/videos/..%5C..%5Cetc%5Cpasswd", "/videos/../json"):
        status, body = raw_get(detection_service.url, path)
        assert status == 404 and json.loads(body)["error"] and "root:" not in body, (path, body)
    # These reach the job-id check itself (no slash left for the router to refuse):
    for path in ("/videos/..", "/videos/%2e%2e", "/videos/..%5C..%5Cetc%5Cpasswd"):
        assert "no video job" in json.loads(raw_get(detection_service.url, path)[1])["error"], path


def test_a_zip_of_photos_is_annotated_into_a_zip_with_csv_and_json(detection_service, sample_paths, sample_labels):
    """POST /batches on one machine (no queue): the same job as on the queue (tests/test_queue_jobs.py)."""
    import io
    import json
    import zipfile

    upload = io.BytesIO()
    with zipfile.ZipFile(upload, "w") as archive:
        for path in sample_paths:
            archive.write(path, f"shots/{path.name}")
        archive.writestr("__MACOSX/shots/._x.jpg", b"resource fork")
        archive.writestr("readme.txt", b"not a photo")
    response = requests.post(detection_service.url + "/batches", files={"photos": ("shots.zip", upload.getvalue())},
                             timeout=60)
    assert response.status_code == 202, response.text
    assert response.json()["photos_total"] == len(sample_paths)
    status = wait_for_job(detection_service.url, response.json()["status_url"])
    assert status["state"] == "done" and status["photos_annotated"] == len(sample_paths), status
    download = requests.get(detection_service.url + status["zip_url"], timeout=30)
    assert download.headers["Content-Type"] == "application/zip"
    assert download.headers["Content-Disposition"] == "attachment; filename=shots_annotated.zip"
    archive = zipfile.ZipFile(io.BytesIO(download.content))
    faces = json.loads(archive.read("faces.json"))
    assert {photo["photo"]: len(photo["faces"]) for photo in faces["photos"]} == {
        f"shots/{path.name}": len(sample_labels[path.name]) for path in sample_paths}
    assert len(archive.read("faces.csv").decode().splitlines()) == 1 + sum(map(len, sample_labels.values()))


@pytest.mark.parametrize("files, message", [
    ({"photos": ("notes.txt", b"text")}, "no photos found"),
    ({"photos": ("broken.zip", b"PK\x03\x04broken")}, "no photos found"),
])
def test_bad_batches_get_a_clear_400(detection_service, files, message):
    response = requests.post(detection_service.url + "/batches", files=files, timeout=30)
    assert response.status_code == 400 and message in response.json()["error"], response.text


@pytest.mark.parametrize("env, code, message", [
    ({"FACEMASK_QUEUE_URL": ""}, 2, "set FACEMASK_QUEUE_URL"),
    ({"FACEMASK_QUEUE_URL": "redis://127.0.0.1:1/0"}, 1, "cannot reach the queue at FACEMASK_QUEUE_URL"),
    ({"FACEMASK_QUEUE_URL": "redis://127.0.0.1:1/0", "FACEMASK_ORT_PROVIDERS": "cuda,cpu"}, 2, "CPU only"),
])
def test_the_worker_command_says_in_one_line_what_it_needs(env, code, message):
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "facemask", "worker"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, **env}, cwd=REPO_ROOT)
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("facemask worker: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
