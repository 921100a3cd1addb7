"""The all-day camera watch (python -m facemask.watch) against real parts: a camera served as MJPEG over HTTP by a
process of its own (killed and brought back), a webhook receiver on loopback (slow, then down, then up), the real
classifier service and models, the recordings it writes and its live view."""
from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from bench.mjpeg_stream import CameraProcess
from bench.synthetic_video import camera_windows, render
from bench.watch_soak import WebhookReceiver, start_watch, wait_for, watch_status
from facemask.cli.watch import parse_args
from facemask.core.detector import RetinaFaceDetector
from facemask.core.drawing import GREEN, RED
from facemask.core.images import decode_image
from facemask.core.paths import REPO_ROOT
from facemask.core.privacy import anonymize
from facemask.serving.local_server import free_port
from facemask.video.loop import VIDEO_DETECT_OPTIONS
from facemask.watch.delivery import record_key
from facemask.watch.metrics import WatchMetrics
from facemask.watch.options import WatchOptions
from facemask.watch.webhook import WebhookSender
from tests.browser import CHROMEDRIVER, CHROMIUM, MISSING, start_chromium

SAMPLES = REPO_ROOT / "sample-images"
ALL_LABELS = "with_mask,without_mask,incorrect"


def write_clip(path: Path, frames: int, fourcc: str = "MJPG") -> list[np.ndarray]:
    """A hand-held camera held on the six people of group_mixed.jpg (3 masked, 3 not); returns the frames (RGB)."""
    photo = decode_image(SAMPLES / "group_mixed.jpg")
    windows = camera_windows(photo.shape[1], photo.shape[0], frames, "shake", seed=3, view=1.0)
    pictures = [render(photo, window, (640, 480)) for window in windows]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, (640, 480))
    for picture in pictures:
        writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    writer.release()
    return pictures


def event_records(path: Path, kind: str) -> list[dict]:
    """The records of one kind ("start" or "end") in a watch's events file."""
    return [record for line in path.read_text().splitlines() if (record := json.loads(line))["type"] == kind]


def mjpeg_frames(url: str, wanted: int, seconds: float = 20.0) -> list[np.ndarray]:
    """JPEG frames read off an MJPEG stream, decoded (BGR)."""
    frames, buffer = [], b""
    with requests.get(url, stream=True, timeout=seconds) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        deadline = time.monotonic() + seconds
        for chunk in response.iter_content(chunk_size=65536):
            buffer += chunk
            while (start := buffer.find(b"\xff\xd8")) >= 0 and (end := buffer.find(b"\xff\xd9", start)) >= 0:
                frames.append(cv2.imdecode(np.frombuffer(buffer[start:end + 2], np.uint8), cv2.IMREAD_COLOR))
                buffer = buffer[end + 2:]
            if len(frames) >= wanted or time.monotonic() > deadline:
                break
    return frames


def stop(process: subprocess.Popen) -> tuple[int, str, str]:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


@pytest.mark.slow  # a camera drop waited out, a slow webhook receiver: over 10 s
def test_watch_resumes_after_a_stream_drop_and_delivers_every_event_once(classifier_service, tmp_path):
    write_clip(tmp_path / "door.avi", 40)
    camera, receiver, port = CameraProcess(tmp_path / "door.avi", fps=10.0), WebhookReceiver(), free_port()
    camera.start()
    receiver.delay = 1.0  # slow: one event a second
    receiver.start()
    events = tmp_path / "events.jsonl"
    watch = start_watch(camera.url, classifier_service.url, "--camera", "door", "--events", events,
                        "--webhook", receiver.url, "--event-labels", ALL_LABELS, "--reconnect-max", "1",
                        "--webhook-timeout", "5", listen=port)
    try:
        status = wait_for(lambda: (s := watch_status(port)) and s["people"]["total"] >= 6 and s, 90,
                          "six people counted")
        assert status["connected"] and status["camera"] == "door"
        assert status["people"]["by_label"] == {"with_mask": 3, "without_mask": 3}
        before = status["track_ids_in_view"]
        assert len(before) == 6

        # The live view: a page with the stream, and frames arriving on it, faces blurred, boxes drawn.
        page = requests.get(f"http://127.0.0.1:{port}/", timeout=5).text
        assert '<img id="live" src="/stream.mjpg"' in page
        frames = mjpeg_frames(f"http://127.0.0.1:{port}/stream.mjpg", 3)
        assert len(frames) >= 3 and all(frame.shape == (480, 640, 3) for frame in frames)

        wait_for(lambda: receiver.received, 30, "the first event at the slow receiver")
        receiver.stop()  # down, with events still queued behind the slow ones
        camera.kill()  # and the camera drops off the network
        wait_for(lambda: not watch_status(port).get("connected", True), 20, "the watch to notice the drop")
        assert requests.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 503
        time.sleep(3)
        camera.start()
        back_at = time.monotonic()
        wait_for(lambda: watch_status(port).get("connected"), 15, "the watch to resume")
        resumed_after = time.monotonic() - back_at
        assert resumed_after < 5, f"resumed {resumed_after:.1f} s after the stream came back"
        receiver.delay = 0.0
        receiver.start()  # up again

        status = wait_for(lambda: (s := watch_status(port)) and s["frames"] > status["frames"] + 20
                          and s["events"]["queued"] == 0 and s["events"]["sent"] == s["events"]["raised"] and s,
                          60, "every event delivered")
        assert status["reconnects"] == 1
        assert status["track_ids_in_view"] == before, "track ids carry on across the drop"
        assert status["people"]["total"] == 6, "the same people are not counted again after the drop"
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'facemask_watch_reconnects_total{camera="door"} 1.0' in metrics
        assert 'facemask_watch_people_total{camera="door",label="with_mask"} 3.0' in metrics
        assert 'facemask_watch_events_total{camera="door",outcome="sent"} 6.0' in metrics
        assert 'facemask_watch_connected{camera="door"} 1.0' in metrics
    finally:
        code, out, err = stop(watch)
        camera.kill()
        receiver.stop()
    assert code == 128 + signal.SIGTERM, err
    written = [json.loads(line) for line in events.read_text().splitlines()]
    starts = event_records(events, "start")
    assert len(starts) == 6 and sorted(e["track_id"] for e in starts) == sorted(before)
    assert all(set(e) == {"id", "type", "time", "camera", "track_id", "label", "probability", "probabilities",
                          "frame"} for e in starts), "no thumbnail unless asked"
    ends = event_records(events, "end")  # everyone was still in view: their events end with the watch
    assert sorted(e["id"] for e in ends) == sorted(e["id"] for e in starts)
    assert all(e["reason"] == "stopped" and e["duration_s"] > 5 for e in ends)
    ids = [key for key, _ in receiver.received]
    assert sorted(ids) == sorted(record_key(e) for e in written), "every record (start, end) arrives exactly once"
    assert all(record_key(body) == key for key, body in receiver.received)
    assert "source lost after" in err and "source back after" in err and "track ids and counts carry on" in err
    assert "not delivered" in err and "retrying" in err
    assert json.loads(out.strip().splitlines()[-1])["people"]["total"] == 6


def test_recordings_are_anonymised_segments_within_the_retention(classifier_service, tmp_path):
    pictures = write_clip(tmp_path / "door.avi", 30)
    events = tmp_path / "events.jsonl"
    watch = start_watch(str(tmp_path / "door.avi"), classifier_service.url, "--record", tmp_path / "rec",
                        "--segment-seconds", "0.2", "--keep-segments", "3", "--events", events, "--thumbnails",
                        "--event-labels", "without_mask")
    _, err = watch.communicate(timeout=120)
    assert watch.returncode == 0, err
    segments = sorted((tmp_path / "rec").glob("door_*.mp4"))
    assert len(segments) == 3, "30 frames in segments of 5, the newest 3 kept"
    assert "retention: 3 segments" in err
    detector = RetinaFaceDetector().prepare(**VIDEO_DETECT_OPTIONS)
    recorded = []
    for segment in segments:
        capture = cv2.VideoCapture(str(segment))
        while (frame := capture.read())[0]:
            recorded.append(cv2.cvtColor(frame[1], cv2.COLOR_BGR2RGB))
        capture.release()
    assert len(recorded) == 15
    for original, written in zip(pictures[-15:], recorded):
        assert len(detector.detect(original)) >= 5, "faces in the camera's picture"
        assert detector.detect(written) == [], "no face left in what was written"
        colours = written.reshape(-1, 3).astype(int)
        for colour in (GREEN, RED):  # the label boxes keep their colours
            assert (np.abs(colours - colour).max(axis=1) < 40).sum() > 200
    written_events = event_records(events, "start")
    assert [e["label"] for e in written_events] == ["without_mask"] * 3
    jpeg = base64.b64decode(written_events[0]["thumbnail_jpeg_base64"])
    thumbnail = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert thumbnail is not None and max(thumbnail.shape[:2]) <= 128


def test_blur_and_pixelate_hide_every_face_of_the_sample_photos(sample_paths):
    detector = RetinaFaceDetector().prepare(**VIDEO_DETECT_OPTIONS)
    for path in sample_paths:
        image = decode_image(path)
        faces = detector.detect(image)
        assert faces
        for mode in ("blur", "pixelate"):
            assert detector.detect(anonymize(image, [face.box for face in faces], mode)) == [], (path.name, mode)
    assert anonymize(image, [faces[0].box], "none") is image
    with pytest.raises(ValueError, match="privacy mode"):
        anonymize(image, [], "smudge")


@pytest.mark.parametrize("arguments, message", [
    (["--source", "nope.mp4"], "error: input video not found: nope.mp4"),
    (["--source", "0", "--camera", "a b"], "camera names are letters"),
    (["--source", "0", "--listen", "here"], "expected HOST:PORT"),
    (["--source", "0", "--keep-segments", "0"], "--keep-segments must be at least 1"),
    (["--source", "0", "--webhook", "ftp://user:pw@host/x"], "--webhook must be an http:// or https:// URL"),
    (["--source", "0", "--live-max-connections", "0"], "--live-max-connections must be at least 1"),
])
def test_bad_arguments_are_one_line_errors(arguments, message):
    result = subprocess.run([sys.executable, "-m", "facemask.watch", "--listen", "none", *arguments],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr.strip().splitlines()[-1]


@pytest.mark.slow  # a browser, as in tests/test_web_page.py
def test_live_view_in_a_browser(classifier_service, tmp_path):
    """Headless Chromium (skips without it, as tests/test_web_page.py does) opens the live view and sees frames
    arrive: the picture changes between two looks, and the counts fill in."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (requirements-dev.txt)")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(MISSING)
    from selenium.webdriver.support.ui import WebDriverWait

    write_clip(tmp_path / "door.avi", 40)
    camera, port = CameraProcess(tmp_path / "door.avi", fps=10.0), free_port()
    camera.start()
    watch = start_watch(camera.url, classifier_service.url, "--camera", "door", listen=port)
    browser = start_chromium(webdriver, "1000,900")
    try:
        wait_for(lambda: watch_status(port).get("frames"), 90, "the watch's first frame")
        browser.set_page_load_timeout(30)
        browser.get(f"http://127.0.0.1:{port}/")
        image = browser.find_element("id", "live")
        WebDriverWait(browser, 30).until(lambda b: b.execute_script("return arguments[0].naturalWidth", image) == 640)
        snapshot = """const image = arguments[0], canvas = document.createElement("canvas");
            canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
            const context = canvas.getContext("2d"); context.drawImage(image, 0, 0);
            return Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data.filter(
                (_, i) => i % 4096 === 0));"""
        first = browser.execute_script(snapshot, image)
        WebDriverWait(browser, 30).until(lambda b: b.execute_script(snapshot, image) != first)
        WebDriverWait(browser, 30).until(
            lambda b: b.find_element("id", "state").text.startswith("Watching")
            and b.find_elements("css selector", "#people li"))
        assert "people" in browser.find_element("id", "state").text
    finally:
        browser.quit()
        stop(watch)
        camera.kill()


def test_the_kubernetes_example_is_valid_and_runs_this_cli():
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    yaml = pytest.importorskip("yaml")
    documents = [doc for doc in yaml.safe_load_all((REPO_ROOT / "k8s" / "examples" / "watch.yaml").read_text())
                 if doc]
    for doc in documents:
        for version in ("1.27.0", kubernetes_validate.latest_version()):
            kubernetes_validate.validate(doc, version, strict=True)
    deployment, service = documents
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "facemask.watch"]
    args = parse_args([argument.replace("$(CAMERA_URL)", "rtsp://camera/stream") for argument in container["args"]])
    assert args.listen == ("0.0.0.0", container["ports"][0]["containerPort"])
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    assert container["image"] == compose["services"]["detection"]["image"], "runs in the detection image"


def test_a_full_webhook_queue_drops_new_events_without_waiting_and_delivers_the_rest_once():
    receiver = WebhookReceiver()  # not started yet: connections are refused
    options = WatchOptions(webhook_queue=2, webhook_retry_min_s=0.05, webhook_retry_max_s=0.2, webhook_timeout_s=2)
    sender = WebhookSender(receiver.url, options, WatchMetrics("door"))
    started = time.monotonic()
    for number in range(6):
        sender.submit({"id": f"event-{number}"})
    assert time.monotonic() - started < 0.5, "submitting never waits for the receiver"
    assert sender.dropped in (3, 4)  # one may already be in flight, two wait in the queue
    receiver.start()
    try:
        wait_for(lambda: sender.sent == 6 - sender.dropped, 20, "the queued events")
        sender.close()
    finally:
        receiver.stop()
    ids = [key for key, _ in receiver.received]
    assert len(ids) == len(set(ids)) == 6 - sender.dropped and ids[0] == "event-0"
    assert sender.failed == 0
