"""Issue 27's video-job defects against the real detection service: raw streams past the frame limit, frames too
large, an unbounded queue, jobs of a dead worker, control characters in names, a video that cannot be written."""
from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from facemask.serving.local_server import LocalService
from tests.test_video_jobs import wait_for_job, write_clip


def raw_stream(path: Path, fourcc: str, size: tuple[int, int], frames: int) -> Path:
    """A container-less stream (raw H.263, MJPEG, MPEG-1): OpenCV cannot tell its frame count."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, size)
    assert writer.isOpened(), fourcc
    for index in range(frames):
        writer.write(np.full((size[1], size[0], 3), index % 250, np.uint8))
    writer.release()
    return path


def post_video(base: str, name: str, data: bytes, source_address: str = "127.0.0.1") -> tuple[int, dict, dict]:
    """POST /videos from a given loopback address (127.0.0.x are all this machine): another client to the service."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60, source_address=(source_address, 0))
    boundary = "videoboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    connection.request("POST", "/videos", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    return response.status, answer, dict(response.getheaders())


@pytest.fixture(scope="module")
def face_clip(sample_paths, tmp_path_factory) -> bytes:
    """150 frames of a photo with faces: a few seconds of work, long enough to keep a job queued behind it."""
    photo = cv2.resize(cv2.imread(str(next(p for p in sample_paths if p.name == "group_mixed.jpg"))), (640, 480))
    return write_clip(tmp_path_factory.mktemp("clips") / "faces.mp4", [photo] * 150, fps=25).read_bytes()


def test_raw_streams_are_counted_and_held_to_the_frame_limit(detection_service, tmp_path):
    """OpenCV reports a huge negative count for raw streams; max(count, 1) let 9,000 frames through as one."""
    from detection.app.video_jobs import DEFAULT_MAX_VIDEO_FRAMES

    h263 = raw_stream(tmp_path / "long.h263", "H263", (176, 144), DEFAULT_MAX_VIDEO_FRAMES + 50)
    response = requests.post(detection_service.url + "/videos", files={"video": h263.open("rb")}, timeout=60)
    assert response.status_code == 400, response.text
    assert "video too long" in response.json()["error"] and "MAX_VIDEO_FRAMES" in response.json()["error"]

    short = raw_stream(tmp_path / "short.h263", "H263", (176, 144), 40)
    response = requests.post(detection_service.url + "/videos", files={"video": short.open("rb")}, timeout=60)
    assert response.status_code == 202 and response.json()["frames_total"] == 40, response.text
    status = wait_for_job(detection_service.url, response.json()["status_url"])
    assert status["state"] == "done" and status["frames_done"] == 40, status


@pytest.mark.parametrize("size, message", [
    ((4000, 2200), "frames too large"),  # over MAX_VIDEO_PIXELS (4K UHD): a 8000x8000 video took a worker to 5 GB
    ((1, 1), "cannot be annotated"),  # the WebM encoder refuses these: the job was "done" with no video
    ((16400, 16), "cannot be annotated"),
])
def test_video_frames_the_service_cannot_handle_get_a_clear_400(detection_service, tmp_path, size, message):
    clip = raw_stream(tmp_path / "odd.avi", "MJPG", size, 2)
    response = requests.post(detection_service.url + "/videos", files={"video": clip.open("rb")}, timeout=60)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"], response.json()


def test_an_mpeg1_video_is_a_video_not_a_photo(detection_service, tmp_path):
    clip = raw_stream(tmp_path / "clip.m1v", "PIM1", (64, 48), 10)
    response = requests.post(detection_service.url + "/videos", files={"video": clip.open("rb")}, timeout=60)
    assert response.status_code == 202, response.text
    assert wait_for_job(detection_service.url, response.json()["status_url"])["state"] == "done"


def test_control_characters_in_a_name_give_working_downloads(detection_service, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", [np.full((48, 64, 3), 90, np.uint8)] * 5)
    name = "door\x01cam\x00\x7f.mp4"
    status, submitted, _ = post_video(detection_service.url, name, clip.read_bytes())
    assert status == 202, submitted
    assert submitted["filename"] == "door_cam__.mp4"
    done = wait_for_job(detection_service.url, submitted["status_url"])
    assert done["state"] == "done", done
    for url in (done["video_url"], done["json_url"]):
        download = requests.get(detection_service.url + url, timeout=30)
        assert download.status_code == 200, download.text[:200]
        assert "door_cam___annotated." in download.headers["Content-Disposition"]
    record = requests.get(detection_service.url + done["json_url"], timeout=30).json()
    assert "classifier_url" not in record and "/" not in record["detector"]["model"], record["detector"]


@pytest.fixture(scope="module")
def small_queue(classifier_service, tmp_path_factory):
    """One worker that queues 3 videos at most, 2 per client."""
    jobs = tmp_path_factory.mktemp("queue-jobs")
    env = {"CLASSIFIER_URL": classifier_service.url, "FACEMASK_JOBS_STORE": str(jobs), "MAX_VIDEO_JOBS": "3",
           "MAX_VIDEO_JOBS_PER_CLIENT": "2"}
    with LocalService("detection", workers=1, env=env, log_path=jobs / "detection.log") as service:
        yield service


@pytest.mark.slow  # five 150-frame jobs annotated in full: over 15 s
def test_the_job_queue_is_bounded_per_client_and_in_all(small_queue, face_clip):
    answers = [post_video(small_queue.url, f"mine{i}.mp4", face_clip) for i in range(3)]
    assert [status for status, _, _ in answers] == [202, 202, 429], answers[2]
    assert "limit is 2" in answers[2][1]["error"] and int(answers[2][2]["Retry-After"]) > 0
    other = [post_video(small_queue.url, f"other{i}.mp4", face_clip, "127.0.0.2") for i in range(2)]
    assert [status for status, _, _ in other] == [202, 503], other[1]
    assert "try again later" in other[1][1]["error"] and int(other[1][2]["Retry-After"]) > 0
    accepted = [body for status, body, _ in answers + other if status == 202]
    for body in accepted:  # what was accepted is done in full: nothing valid is lost
        status = wait_for_job(small_queue.url, body["status_url"], timeout=300)
        assert status["state"] == "done" and status["frames_done"] == 150, status
    status, again, _ = post_video(small_queue.url, "again.mp4", face_clip)
    assert status == 202, again  # room again once they are done
    assert wait_for_job(small_queue.url, again["status_url"], timeout=300)["state"] == "done"


@pytest.mark.slow  # a service of its own, a worker killed mid-job and a new one booted
def test_a_killed_workers_job_fails_with_its_reason_and_the_next_one_is_taken_up(small_queue, face_clip):
    """A worker killed mid-job left its job "running" (and the ones queued behind it) for ever. Now the running
    one is failed once its heartbeat is stale, and the queued one is run by the next process that is free."""
    from facemask.jobs.local import HEARTBEAT_STALE_S

    submitted = [post_video(small_queue.url, f"job{i}.mp4", face_clip)[1] for i in range(2)]
    deadline = time.monotonic() + 60
    while requests.get(small_queue.url + submitted[0]["status_url"], timeout=10).json()["state"] != "running":
        assert time.monotonic() < deadline, "the first job never started"
        time.sleep(0.1)
    (worker,) = map(int, subprocess.run(["pgrep", "-P", str(small_queue.process.pid)], capture_output=True,
                                        text=True).stdout.split())
    os.kill(worker, signal.SIGKILL)
    killed_at = time.monotonic()
    # gunicorn starts a new worker; it answers the polls and takes the queued job
    status = wait_for_job(small_queue.url, submitted[0]["status_url"], timeout=HEARTBEAT_STALE_S + 60)
    assert status["state"] == "failed" and "upload it again" in status["error"], status
    assert time.monotonic() - killed_at < HEARTBEAT_STALE_S + 30
    status = wait_for_job(small_queue.url, submitted[1]["status_url"], timeout=300)
    assert status["state"] == "done" and status["frames_done"] == 150, status


@pytest.mark.slow  # the per-client limit: jobs run in full
def test_a_forwarded_header_is_not_trusted_unless_configured(small_queue, tmp_path):
    """FACEMASK_TRUSTED_PROXIES is 0 here: X-Forwarded-For cannot make one client look like many."""
    clip = write_clip(tmp_path / "tiny.mp4", [np.full((48, 64, 3), 90, np.uint8)] * 5)
    answers = [requests.post(small_queue.url + "/videos", files={"video": clip.open("rb")},
                             headers={"X-Forwarded-For": f"10.9.9.{i}"}, timeout=60) for i in range(3)]
    assert [answer.status_code for answer in answers] == [202, 202, 429], [answer.text for answer in answers]
    for answer in answers[:2]:
        assert wait_for_job(small_queue.url, answer.json()["status_url"])["state"] == "done"


@pytest.mark.slow  # a service of its own whose jobs expire in seconds
def test_finished_jobs_expire_when_read_and_on_a_timer(classifier_service, tmp_path):
    """Issue 35: a finished job 3 hours old still answered 200 until the next upload removed it."""
    jobs = tmp_path / "jobs"
    env = {"CLASSIFIER_URL": classifier_service.url, "FACEMASK_JOBS_STORE": str(jobs),
           "FACEMASK_JOBS_RETENTION_H": "0.001"}  # 3.6 s
    clip = write_clip(tmp_path / "tiny.mp4", [np.full((48, 64, 3), 90, np.uint8)] * 5)
    with LocalService("detection", workers=1, env=env, log_path=tmp_path / "detection.log") as service:
        first, second = (requests.post(service.url + "/videos", files={"video": clip.open("rb")}, timeout=60).json()
                         for _ in range(2))
        for job in (first, second):
            done = wait_for_job(service.url, job["status_url"])
            assert done["state"] == "done"
        assert requests.get(service.url + done["video_url"], timeout=10).status_code == 200
        deadline = time.monotonic() + 30
        while (jobs / first["id"]).exists():  # nobody reads it: the timer removes it
            assert time.monotonic() < deadline, "an expired job's files stayed"
            time.sleep(0.2)
        for url in (second["status_url"], done["video_url"]):
            response = requests.get(service.url + url, timeout=10)
            assert response.status_code == 404 and "kept for 0.001 h" in response.json()["error"], response.text
        assert not (jobs / second["id"]).exists()


def test_frames_over_full_hd_are_annotated_at_full_hd(detection_service, tmp_path):
    """A 4K video kept 25 MB frames queued in the worker (over 1 GB, bench.robustness); larger frames are scaled
    to Full HD's pixel count as they are read."""
    import cv2

    clip = raw_stream(tmp_path / "wide.avi", "MJPG", (2400, 1350), 4)
    response = requests.post(detection_service.url + "/videos", files={"video": clip.open("rb")}, timeout=60)
    assert response.status_code == 202, response.text
    status = wait_for_job(detection_service.url, response.json()["status_url"])
    assert status["state"] == "done" and status["frames_done"] == 4, status
    annotated = tmp_path / "annotated.webm"
    annotated.write_bytes(requests.get(detection_service.url + status["video_url"], timeout=30).content)
    capture = cv2.VideoCapture(str(annotated))
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape[:2] == (1080, 1920), frame.shape
