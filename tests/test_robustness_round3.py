"""Issue 35 (hold up, round three) against the real CLI and the real servers: hard links, a cut-short .npy header,
tiny videos, videos whose headers lie about their length, a video sent as a form field, raw paths."""
from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

import cv2
import pytest
import requests

from facemask.serving.local_server import LocalService, free_port
from facemask.video.source import MIN_FRAME_SIDE
from tests.test_cli_outputs import run_cli, snapshot
from tests.test_cli_video_errors import frame_count, one_error_line
from tests.test_video import run_infer
from tests.test_video_job_limits import raw_stream
from tests.test_video_jobs import wait_for_job, write_clip


def people_clip(path: Path, sample_paths, frames: int = 20) -> Path:
    photo = cv2.resize(cv2.imread(str(sample_paths[0])), (320, 240))
    return write_clip(path, [photo] * frames)


# 1. Files compared by identity, not by name.

def test_a_hard_link_to_the_input_video_is_not_written_over(classifier_service, sample_paths, tmp_path):
    """`ln w.mp4 hard.mp4; infer.py --in_path w.mp4 --out_path hard.mp4` exited 0 and shrank w.mp4: the run read
    its own output."""
    video = people_clip(tmp_path / "w.mp4", sample_paths)
    os.link(video, tmp_path / "hard.mp4")
    before = video.read_bytes()
    result = run_infer("--in_path", video, "--out_path", tmp_path / "hard.mp4", classifier_url=classifier_service.url)
    assert result.returncode == 2, result.stderr
    assert "would overwrite the input" in one_error_line(result.stderr)
    assert video.read_bytes() == before and frame_count(video) == 20


def test_an_output_image_that_is_a_hard_link_to_an_input_is_refused(classifier_service, sample_paths, tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir(), out.mkdir()
    for path in sample_paths[:2]:
        (photos / path.name).write_bytes(path.read_bytes())
    os.link(photos / sample_paths[1].name, out / sample_paths[1].name)  # where that photo's output would go
    before = snapshot(photos)
    result = run_cli(classifier_service, "--in_path", photos, "--out_path", out)
    assert result.returncode == 2, result.stderr
    assert "would overwrite the input" in one_error_line(result.stderr)
    assert snapshot(photos) == before


@pytest.fixture
def bind_mounted(tmp_path):
    """(folder, the same folder mounted at a second path): one folder under two names no link resolves."""
    folder, other = tmp_path / "photos", tmp_path / "mounted"
    folder.mkdir(), other.mkdir()
    if subprocess.run(["mount", "--bind", str(folder), str(other)], capture_output=True).returncode != 0:
        pytest.skip("bind mounts need root (CAP_SYS_ADMIN)")
    try:
        yield folder, other
    finally:
        subprocess.run(["umount", str(other)], check=True)


def test_an_output_folder_that_is_the_input_folder_under_another_name_is_refused(classifier_service, sample_paths,
                                                                                 bind_mounted):
    photos, same_folder = bind_mounted
    for path in sample_paths[:2]:
        (photos / path.name).write_bytes(path.read_bytes())
    before = snapshot(photos)
    for out, message in ((same_folder, "replace the originals"), (same_folder / "annotated", "--allow-nested-output")):
        result = run_cli(classifier_service, "--in_path", photos, "--out_path", out)
        assert result.returncode == 2, result.stderr
        assert message in one_error_line(result.stderr)
    assert snapshot(photos) == before


# 2. A .npy header cut short.

def test_a_cut_short_npy_header_is_a_400_that_says_so(classifier_service):
    """The issue's body: the header's 62 bytes end before the dict closes; NumPy's tokenizer raised TokenError."""
    body = b"\x93NUMPY\x01\x00\x3e\x00{'descr': '|u1', 'fortran_order': False, 'shape': (1, 2, 2, 3)"
    response = requests.post(classifier_service.url + "/classify", data=body, timeout=30,
                             headers={"Content-Type": "application/x-npy"})
    assert response.status_code == 400, response.text[:300]
    assert response.headers["Content-Type"] == "application/json"
    assert "header is malformed" in response.json()["error"], response.json()


# 3. Frames too small to hold a face, or to be written as a video anyone can play.

@pytest.mark.parametrize("side", [2, 6, 14])  # OpenCV's MJPG writer crashes on 4x4 and odd sides
def test_tiny_videos_are_refused_at_upload(detection_service, tmp_path, side):
    """A 5-frame 2x2 MJPG AVI ended "done" with a 436-byte WebM no player reads."""
    clip = raw_stream(tmp_path / "tiny.avi", "MJPG", (side, side), 5)
    response = requests.post(detection_service.url + "/videos", files={"video": clip.open("rb")}, timeout=60)
    assert response.status_code == 400, response.text
    assert f"{side}x{side} pixels cannot be annotated" in response.json()["error"], response.json()
    assert f"must be {MIN_FRAME_SIDE} to 16383" in response.json()["error"]


def test_the_smallest_accepted_video_gives_a_playable_download(detection_service, tmp_path):
    clip = raw_stream(tmp_path / "small.avi", "MJPG", (MIN_FRAME_SIDE, MIN_FRAME_SIDE), 5)
    response = requests.post(detection_service.url + "/videos", files={"video": clip.open("rb")}, timeout=60)
    assert response.status_code == 202, response.text
    status = wait_for_job(detection_service.url, response.json()["status_url"])
    assert status["state"] == "done", status
    video = tmp_path / "annotated.webm"
    video.write_bytes(requests.get(detection_service.url + status["video_url"], timeout=30).content)
    assert frame_count(video) == 5


def test_an_output_no_player_reads_is_not_a_result(tmp_path):
    """The second guard, behind the size check: every video is read back before it counts as written."""
    from facemask.video.output import decodes  # the CLI's and the service's jobs' check

    assert not decodes(raw_stream(tmp_path / "two.webm", "VP80", (2, 2), 5))  # VP8 takes 2x2, writes no frame
    assert decodes(raw_stream(tmp_path / "sixteen.webm", "VP80", (16, 16), 5))


# 8. A video sent as a form field, not a file.

def multipart_field(name: str, data: bytes, boundary: str = "fieldboundary") -> tuple[bytes, dict]:
    """What `curl -F "video=<clip.mp4"` sends: the file's bytes as a text field, with no file name."""
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.mark.parametrize("size", [600_000, 20_000])  # over and under werkzeug's 500 KB for a form field
def test_a_video_sent_as_a_form_field_is_told_a_file_was_expected(detection_service, tmp_path, sample_paths, size):
    clip = people_clip(tmp_path / "clip.mp4", sample_paths).read_bytes()
    data = (clip * (size // len(clip) + 1))[:size]
    body, headers = multipart_field("video", data)
    response = requests.post(detection_service.url + "/videos", data=body, headers=headers, timeout=60)
    assert response.status_code == 400, response.text[:300]  # was 413 "too many parts in one form" over 500 KB
    error = response.json()["error"]
    assert "a file was expected in the 'video' field" in error and "too many parts" not in error, error



# 9. A header that lies about the frame count.

def lying_avi(path: Path, frames: int, says: int, size=(32, 24)) -> Path:
    """An MJPG AVI of `frames` frames whose headers (avih's total frames, strh's length) say `says`."""
    raw_stream(path, "MJPG", size, frames)
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, data.find(b"avih") + 8 + 16, says)  # dwTotalFrames
    struct.pack_into("<I", data, data.find(b"strh") + 8 + 32, says)  # dwLength
    path.write_bytes(data)
    capture = cv2.VideoCapture(str(path))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == says  # what OpenCV believes
    capture.release()
    return path


def test_a_video_whose_header_lies_is_read_to_its_end(detection_service, tmp_path):
    """The issue's AVI of 5,000 frames patched to say 10 was done after 10 frames, without a warning."""
    clip = lying_avi(tmp_path / "liar.avi", 60, says=10)
    response = requests.post(detection_service.url + "/videos", files={"video": clip.open("rb")}, timeout=60)
    assert response.status_code == 202, response.text
    status = wait_for_job(detection_service.url, response.json()["status_url"])
    assert status["state"] == "done", status
    assert status["frames_total"] == status["frames_done"] == 60, status
    assert any("header says 10 frames, 60 were read" in warning for warning in status["warnings"]), status
    video = tmp_path / "annotated.webm"
    video.write_bytes(requests.get(detection_service.url + status["video_url"], timeout=30).content)
    assert frame_count(video) == 60
    record = requests.get(detection_service.url + status["json_url"], timeout=30).json()
    assert record["frames_total"] == len(record["frames"]) == 60 and record["warnings"], record.keys()


@pytest.fixture(scope="module")
def short_video_limit(classifier_service, tmp_path_factory):
    """A detection service that takes videos of 40 frames at most."""
    jobs = tmp_path_factory.mktemp("short-jobs")
    env = {"CLASSIFIER_URL": classifier_service.url, "FACEMASK_JOBS_STORE": str(jobs), "MAX_VIDEO_FRAMES": "40"}
    with LocalService("detection", workers=1, env=env, log_path=jobs / "detection.log") as service:
        yield service


def test_the_frame_limit_holds_while_reading_a_video_whose_header_lies(short_video_limit, tmp_path):
    clip = lying_avi(tmp_path / "liar.avi", 90, says=10)
    response = requests.post(short_video_limit.url + "/videos", files={"video": clip.open("rb")}, timeout=60)
    assert response.status_code == 202, response.text  # the header passes the check at upload
    status = wait_for_job(short_video_limit.url, response.json()["status_url"])
    assert status["state"] == "failed", status
    assert "video too long: more than 40 frames (its header says 10)" in status["error"], status


def test_the_cli_reads_a_lying_video_to_its_end_and_warns(classifier_service, tmp_path):
    clip = lying_avi(tmp_path / "liar.avi", 60, says=10)
    out = tmp_path / "liar_annotated.mp4"
    result = run_infer("--in_path", clip, "--out_path", out, classifier_url=classifier_service.url)
    assert result.returncode == 0, result.stderr
    assert "warning: the file's header says 10 frames, 60 were read" in result.stderr
    assert json.loads(result.stdout)["warnings"], result.stdout
    assert frame_count(out) == 60 and json.loads(out.with_suffix(".json").read_text())["frames_total"] == 60


# 4. Secrets in source URLs (the watch's side is in tests/test_watch_robustness.py).

SECRET_SOURCE = "rtsp://admin:S3cr3tPw@127.0.0.1:{port}/s?token=ABCSECRET"
SECRETS = ("admin", "S3cr3tPw", "ABCSECRET")


def test_the_cli_never_repeats_a_source_urls_user_info_or_query(classifier_service, tmp_path):
    source = SECRET_SOURCE.format(port=free_port())  # nothing listens there
    result = run_infer("--in_path", source, "--out_path", tmp_path, classifier_url=classifier_service.url,
                       timeout=120)
    assert result.returncode == 2, result.stderr
    line = one_error_line(result.stderr)
    assert "cannot open stream rtsp://***@127.0.0.1:" in line and "/s?token=***" in line, line
    assert not any(secret in result.stderr + result.stdout for secret in SECRETS), result.stderr


def test_redact_url_hides_user_info_and_query_values_only():
    from facemask.core.privacy import redact_url

    assert redact_url(SECRET_SOURCE.format(port=4199)) == "rtsp://***@127.0.0.1:4199/s?token=***"
    assert redact_url("http://cam.local:8080/video.mjpg") == "http://cam.local:8080/video.mjpg"
    assert redact_url("http://user@cam/v?a=1&flag&b=#key") == "http://***@cam/v?a=***&***&b=***#***"
    for not_a_url in ("0", "clip.mp4", "/videos/a?b=c.mp4"):
        assert redact_url(not_a_url) == not_a_url
