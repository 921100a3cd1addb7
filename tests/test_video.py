"""Video: tracks, steady labels, people counts, live sources, signals, unreadable frames, and the .npy transport
of /classify, against the real classifier server and real models."""
from __future__ import annotations

import http.server
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from bench.synthetic_video import camera_windows, render
from facemask.core.boxes import iou
from facemask.core.crops import crop_face
from facemask.core.detector import RetinaFaceDetector
from facemask.core.images import decode_image, encode_png
from facemask.core.paths import REPO_ROOT
from facemask.core.pipeline import ClassifierClient, MaskPipeline
from facemask.core.results import UNCLASSIFIED
from facemask.video.loop import VideoAnnotator
from facemask.video.tracking import LabelSmoother, TrackedFace, follow_faces, to_gray
from facemask.video.tracks import VideoSettings

SAMPLES = REPO_ROOT / "sample-images"


def run_infer(*args, classifier_url=None, timeout=300):
    env = {**os.environ, **({"CLASSIFIER_URL": classifier_url} if classifier_url else {})}
    return subprocess.run([sys.executable, "infer.py", *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def write_pan(path: Path, frames: int, motion: str = "pan", size=(640, 480), name="group_mixed.jpg",
              fourcc="mp4v", view: float = 0.8) -> np.ndarray:
    """A camera moving over a sample photo; returns the windows, so true face positions follow."""
    photo = decode_image(SAMPLES / name)
    windows = camera_windows(photo.shape[1], photo.shape[0], frames, motion, seed=1, aspect=size[0] / size[1],
                             view=view)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, size)
    for window in windows:
        writer.write(cv2.cvtColor(render(photo, window, size), cv2.COLOR_RGB2BGR))
    writer.release()
    return windows


def true_centres(labels: list[dict], window, width: int) -> np.ndarray:
    x0, y0, window_width = window
    scale = width / window_width
    return (np.array([t["center"] for t in labels]) - [x0, y0]) * scale


def crops_of(name="group_mixed.jpg") -> list[np.ndarray]:
    image = decode_image(SAMPLES / name)
    return [crop_face(image, f.landmarks, f.box) for f in RetinaFaceDetector().detect(image)]


# ----------------------------------------------------------------------------------------- /classify transport
def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_npy_batch_gets_the_same_answers_as_multipart(classifier_service):
    crops = crops_of()
    url = classifier_service.url + "/classify"
    as_array = requests.post(url, data=npy_bytes(np.stack(crops)), headers={"Content-Type": "application/x-npy"},
                             timeout=30)
    files = [("crops", (f"c{i}.png", encode_png(c), "image/png")) for i, c in enumerate(crops)]
    as_files = requests.post(url, files=files, timeout=30)
    assert as_array.status_code == as_files.status_code == 200
    array_results, file_results = as_array.json()["results"], as_files.json()["results"]
    assert [r["filename"] for r in array_results] == [f"crop_{i}" for i in range(len(crops))]
    assert [r["label"] for r in array_results] == [r["label"] for r in file_results]
    for a, b in zip(array_results, file_results):
        for name, value in a["probabilities"].items():
            assert value == pytest.approx(b["probabilities"][name], abs=1e-4)
    assert "application/x-npy" in requests.get(classifier_service.url + "/info", timeout=10).json()["crop_formats"]


@pytest.mark.parametrize("body, status, message", [
    (b"", 400, "empty body"),
    (b"definitely not numpy", 400, "not a .npy array"),
    (npy_bytes(np.zeros((2, 96, 96, 3), dtype=np.float32)), 400, "expected a uint8 array"),
    (npy_bytes(np.zeros((96, 96, 3), dtype=np.uint8)), 400, "expected a uint8 array"),
    (npy_bytes(np.zeros((0, 96, 96, 3), dtype=np.uint8)), 400, "holds no crop"),
    (npy_bytes(np.array([{"a": 1}], dtype=object)), 400, "not a .npy array"),  # pickles are refused
    (npy_bytes(np.zeros((257, 8, 8, 3), dtype=np.uint8)), 413, "too many crops"),
    (npy_bytes(np.zeros((1, 1100, 8, 3), dtype=np.uint8)), 413, "exceed"),
])
def test_bad_npy_bodies_get_json_4xx(classifier_service, body, status, message):
    response = requests.post(classifier_service.url + "/classify", data=body,
                             headers={"Content-Type": "application/x-npy"}, timeout=30)
    assert response.status_code == status and message in response.json()["error"]


def test_client_sends_arrays_when_the_service_offers_them(classifier_service, caplog):
    crops = crops_of()
    client = ClassifierClient(classifier_service.url)
    results = client.classify(crops)
    assert client.transport == "npy" and len(results) == len(crops)
    multipart = ClassifierClient(classifier_service.url, transport="multipart").classify(crops)
    assert [r.label for r in results] == [r.label for r in multipart]
    # Crops of different sizes cannot share one array: the client falls back to files for that call.
    with caplog.at_level(logging.DEBUG, logger="facemask.core.pipeline"):
        mixed = client.classify([crops[0], cv2.resize(crops[1], (64, 64))])
    assert "sent as PNG files" in caplog.text
    assert [r.label for r in mixed] == [results[0].label, multipart[1].label]


def test_photos_and_video_frames_share_one_policy_for_an_unreachable_classifier(caplog):
    """The crop -> classify step (FaceClassifier) of both paths: every face kept, unclassified with the reason,
    the reason recorded, the attempts logged; a classifier found down is not waited for again on every frame."""
    image = decode_image(SAMPLES / "group_mixed.jpg")
    client = ClassifierClient("http://127.0.0.1:9", retries=2, backoff=0.05, deadline=5)  # nothing listens
    pipeline = MaskPipeline(RetinaFaceDetector(), client)
    with caplog.at_level(logging.INFO, logger="facemask"):
        photo = pipeline.process(image)
    assert len(photo.faces) >= 5 and photo.error and "attempt" in photo.error
    assert all(face.status == UNCLASSIFIED and face.error == photo.error for face in photo.faces)
    assert [r.getMessage().split("attempt ")[1][0] for r in caplog.records if "attempt" in r.getMessage()
            and r.levelno == logging.INFO] == ["1", "2", "3"]

    annotator = VideoAnnotator(pipeline, fps=25.0, settings=VideoSettings(classify_lag=0))
    started = time.monotonic()
    frames = [frame for _ in range(6) for frame in annotator.push(image)] + annotator.flush()
    assert time.monotonic() - started < 10  # the circuit is open: no frame waits out retries again
    faces = [face for frame in frames for face in frame.record["faces"]]
    assert len(frames) == 6 and len(faces) >= 30 and all(face.status == UNCLASSIFIED and face.error for face in faces)
    assert annotator.errors and all("classifier" in reason for reason in annotator.errors.values())


def test_a_camera_back_after_an_outage_keeps_the_track_ids_of_faces_that_stood_still():
    """A hand-held camera on six people drops and comes back seconds later at another point of its shake. Optical
    flow between the last frame before and the first after sent boxes astray, and the tracker started new tracks on
    faces that had not moved (at these two drop points it did). After `gap()` every face keeps its track."""
    import facemask

    photo = decode_image(SAMPLES / "group_mixed.jpg")
    frames = [render(photo, window, (640, 480))
              for window in camera_windows(photo.shape[1], photo.shape[0], 40, "shake", seed=3, view=1.0)]
    pipeline = facemask.load().pipeline  # the classifier in this process: no server needed for tracks
    for dropped_at in (20, 35):
        annotator = VideoAnnotator(pipeline, fps=10.0)
        for frame in frames[:dropped_at]:
            annotator.push(frame)
        before = {face.track_id for face in annotator.faces if face.track_id is not None}
        annotator.gap()
        finished = [done for frame in frames[:12] for done in annotator.push(frame)] + annotator.flush()
        after = {face.track_id for done in finished[-10:] for face in done.record["faces"]}
        assert len(after) >= 6 and after <= before, f"new tracks after a drop at frame {dropped_at}: {after - before}"


# ----------------------------------------------------------------------------------------- tracking pieces
def test_label_smoother_holds_its_label_through_one_doubtful_vote_any_classes():
    smoother = LabelSmoother(window=5, margin=0.2)
    votes = [{"with_mask": 0.9, "without_mask": 0.05, "incorrect": 0.05}] * 3
    for vote in votes:
        smoother.add(vote)
    assert smoother.label == "with_mask"
    smoother.add({"with_mask": 0.1, "without_mask": 0.1, "incorrect": 0.8})  # one odd crop
    assert smoother.label == "with_mask"
    for _ in range(4):  # the person pulled the mask below the nose: a sustained change
        smoother.add({"with_mask": 0.1, "without_mask": 0.1, "incorrect": 0.8})
    assert smoother.label == "incorrect"
    label, mean = smoother.overall()
    assert set(mean) == {"with_mask", "without_mask", "incorrect"} and label == "incorrect"


def test_optical_flow_keeps_boxes_on_faces_between_detector_runs(tmp_path):
    video = tmp_path / "shake.mp4"
    write_pan(video, 60, motion="pan+zoom+shake")  # 60 frames of camera motion, the first 8 used
    capture = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < 8:
        ok, frame = capture.read()
        assert ok
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    detector = RetinaFaceDetector().prepare(long_side=1024, upscale=False)
    faces = [TrackedFace(f.box, f.landmarks, f.det_score, True, i) for i, f in enumerate(detector.detect(frames[0]))]
    assert len(faces) >= 5
    for previous, frame in zip(frames, frames[1:]):
        faces = follow_faces(to_gray(previous), to_gray(frame), faces)
    truth = {f.box.tobytes(): f.box for f in detector.detect(frames[-1])}
    inside = [f for f in faces if f.box[0] > 2 and f.box[1] > 2 and f.box[2] < 638 and f.box[3] < 478]
    assert len(inside) >= 4
    for face in inside:  # every followed face still sits on a detected face 7 frames later (cut faces aside)
        best = max(truth.values(), key=lambda box: iou(box, face.box))
        assert iou(best, face.box) > 0.5


# ----------------------------------------------------------------------------------------- the CLI on video
@pytest.mark.slow
def test_video_tracks_keep_identities_and_count_people(classifier_service, sample_labels, tmp_path):
    video = tmp_path / "pan.mp4"
    windows = write_pan(video, 45, motion="pan+shake", view=1.0)  # a hand-held camera; all six stay in view
    result = run_infer("--in_path", video, "--out_path", tmp_path / "out", classifier_url=classifier_service.url)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "out" / "pan_annotated.json").read_text())
    assert record["frames_total"] == 45 and len(record["frames"]) == 45
    truth = sample_labels["group_mixed.jpg"]
    identity = {}  # track id -> true face index
    for frame, window in zip(record["frames"], windows):
        centres = true_centres(truth, window, 640)
        assert frame["faces"], f"frame {frame['frame']} has no boxes"
        for face in frame["faces"]:
            assert {"box", "landmarks", "det_score", "label", "score", "probabilities", "status",
                    "track_id"} <= set(face)
            x1, y1, x2, y2 = face["box"]
            inside = [i for i, (x, y) in enumerate(centres) if x1 <= x <= x2 and y1 <= y <= y2]
            if face["confirmed"] and inside:
                assert identity.setdefault(face["track_id"], inside[0]) == inside[0], "a track changed person"
                assert face["label"] == truth[inside[0]]["label"], f"frame {frame['frame']}"
    assert len(set(identity.values())) == len(identity), "a person got two tracks"
    summary = record["summary"]
    assert summary["people"]["by_label"] == {"with_mask": 3, "without_mask": 3}
    assert all(t["label_changes"] == 0 for t in summary["tracks"] if t["counted"])
    assert summary["detector_runs"] < 45 and summary["crops_classified"] < 45 * 6 / 2
    counted = [t for t in summary["tracks"] if t["counted"]]
    assert all(t["last_frame"] >= t["first_frame"] and t["seconds_on_screen"] > 0 for t in counted)
    assert "people seen: 6 (with_mask 3, without_mask 3)" in result.stderr
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert printed["people"]["total"] == 6 and printed["unreadable_frames"] == 0
    capture = cv2.VideoCapture(str(tmp_path / "out" / "pan_annotated.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 45
    capture.release()


@pytest.mark.slow
def test_a_person_who_leaves_the_view_and_comes_back_is_one_person(classifier_service, sample_labels, tmp_path):
    """The camera pans right, holds there for 1.4 s (longer than the tracker waits for a lost face) and pans back:
    the two faces on the left leave the view and come back, and are re-identified, not counted twice."""
    photo = decode_image(SAMPLES / "group_mixed.jpg")
    left, right = 0.0, photo.shape[1] - 900.0
    xs = np.concatenate([np.full(15, left), np.linspace(left, right, 15), np.full(35, right),
                         np.linspace(right, left, 15), np.full(15, left)])
    windows = [(x, 50.0, 900.0) for x in xs]
    video = tmp_path / "away_and_back.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (640, 480))
    for window in windows:
        writer.write(cv2.cvtColor(render(photo, window, (640, 480)), cv2.COLOR_RGB2BGR))
    writer.release()
    result = run_infer("--in_path", video, "--out_path", tmp_path / "out", classifier_url=classifier_service.url)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "out" / "away_and_back_annotated.json").read_text())
    truth = sample_labels["group_mixed.jpg"]
    tracks_of_person: dict[int, set] = {}
    away = 0
    for frame, window in zip(record["frames"], windows):
        centres = true_centres(truth, window, 640)
        away += not any(0 <= x < 640 for x, _ in centres[:2])
        for face in frame["faces"]:
            x1, y1, x2, y2 = face["box"]
            inside = [i for i, (x, y) in enumerate(centres) if x1 <= x <= x2 and y1 <= y <= y2]
            if face["confirmed"] and inside:
                tracks_of_person.setdefault(inside[0], set()).add(face["track_id"])
    assert away >= 30, "the two left faces were not out of view long enough to test re-identification"
    assert set(tracks_of_person) == set(range(6))
    assert all(len(ids) == 1 for ids in tracks_of_person.values()), tracks_of_person
    summary = record["summary"]
    assert summary["people"]["total"] == 6
    assert sum(t["fragments"] > 1 for t in summary["tracks"] if t["counted"]) >= 2


def test_unreadable_frames_are_skipped_and_counted(classifier_service, tmp_path):
    video = tmp_path / "damaged.avi"
    write_pan(video, 20, size=(320, 240), fourcc="MJPG")
    data = bytearray(video.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    for frame in (5, 6, 12):  # wipe the start of three JPEG frames
        data[starts[frame]:starts[frame] + 400] = bytes(400)
    video.write_bytes(bytes(data))
    result = run_infer("--in_path", video, "--out_path", tmp_path / "out.mp4", classifier_url=classifier_service.url)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["unreadable_frames"] == 3 and record["frames_total"] == 17
    assert "3 unreadable frame(s) skipped" in result.stderr


@pytest.mark.slow  # a second video run, from a server of its own; test_infer_video covers the video CLI fast
def test_http_stream_source(classifier_service, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    # An MJPEG AVI reads front to back: Python's test server has no byte ranges, which an mp4 (index at the end)
    # would need; cameras serve MJPEG or RTSP the same way.
    write_pan(served / "entrance.avi", 12, fourcc="MJPG")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/entrance.avi"
        result = run_infer("--in_path", url, "--out_path", tmp_path / "out", classifier_url=classifier_service.url)
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "out" / "entrance_annotated.json").read_text())
    assert record["source_kind"] == "stream" and record["frames_total"] == 12


def test_missing_camera_is_a_one_line_error(classifier_service, tmp_path):
    result = run_infer("--in_path", "63", "--out_path", tmp_path, classifier_url=classifier_service.url)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: cannot open camera 63"


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.slow
def test_signal_finishes_the_files_and_stops_the_local_classifier(stop_signal, tmp_path):
    video = tmp_path / "long.mp4"
    write_pan(video, 400, size=(320, 240))
    out = tmp_path / "out.mp4"
    env = {**os.environ, "CLASSIFIER_URL": "http://127.0.0.1:9"}  # nothing there: the CLI starts its own
    env.pop("PYTEST_CURRENT_TEST", None)
    process = subprocess.Popen([sys.executable, "infer.py", "--in_path", str(video), "--out_path", str(out)],
                               cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    servers, deadline = set(), time.monotonic() + 120
    json_path = out.with_suffix(".json")
    while time.monotonic() < deadline:  # wait until frames are being written
        servers |= _children(process.pid)
        if json_path.is_file() and json_path.read_text().count('"frame"') >= 10:
            break
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    servers |= _children(process.pid)
    process.send_signal(stop_signal)
    stdout, stderr = process.communicate(timeout=90)
    assert process.returncode == 128 + stop_signal, stderr
    record = json.loads(json_path.read_text())
    assert record["interrupted"] == signal.Signals(stop_signal).name
    assert 10 <= record["frames_total"] < 400 and len(record["frames"]) == record["frames_total"]
    assert [f["frame"] for f in record["frames"]] == list(range(record["frames_total"]))
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == record["frames_total"]
    capture.release()
    assert json.loads(stdout.strip().splitlines()[-1])["interrupted"] == signal.Signals(stop_signal).name
    assert servers and not any(_alive(pid) for pid in servers), "the classifier the CLI started is still running"


# ----------------------------------------------------------------------------------------- benchmarks
def test_synthetic_video_ground_truth_follows_the_camera():
    from bench.synthetic_video import ground_truth

    photo = np.zeros((300, 400, 3), dtype=np.uint8)
    photo[100:140, 200:230] = 255  # one "face": x 200-230, y 100-140
    boxes = np.array([[200, 100, 230, 140]], dtype=np.float32)
    for window in camera_windows(400, 300, 12, "pan+zoom+shake", seed=3):
        frame = render(photo, window, (320, 240))
        truth = ground_truth(boxes, ["with_mask"], window, (320, 240), min_face=0)
        ys, xs = np.nonzero(frame[..., 0] > 127)
        if not truth.ids:
            assert len(xs) == 0
            continue
        x1, y1, x2, y2 = truth.boxes[0]
        assert abs(xs.min() - x1) <= 1.5 and abs(xs.max() + 1 - x2) <= 1.5
        assert abs(ys.min() - y1) <= 1.5 and abs(ys.max() + 1 - y2) <= 1.5


@pytest.mark.skipif(not (REPO_ROOT / ".." / "shared" / "datasets" / "face-mask-scenes-andrewmvd").is_dir(),
                    reason="scene dataset not found")
@pytest.mark.slow
def test_tracking_benchmark_small_run(tmp_path):
    from bench import video_tracking

    report = video_tracking.main(["--limit", "2", "--frames", "15", "--detect-every", "3", "--out-dir",
                                  str(tmp_path), "--name", "tracking_small"])
    row = report.tables["Tracking quality, all videos together"][0]
    assert 0.0 <= row["IDF1"] <= 1.0 and row["people (truth)"] >= 1
    assert (tmp_path / "tracking_small.md").is_file() and (tmp_path / "tracking_small.json").is_file()
