"""infer.py and the detection service against the real classifier server: what a user runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import requests

from facemask.core.drawing import style_for
from facemask.core.images import decode_image
from facemask.core.paths import REPO_ROOT
from facemask.serving.local_server import LocalService


def run_infer(*args, classifier_url=None, timeout=300):
    env = {**os.environ}
    if classifier_url:
        env["CLASSIFIER_URL"] = classifier_url
    return subprocess.run([sys.executable, "infer.py", *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def match_truth(faces, truth):
    """For each true face, the detected face whose box contains its centre (or None)."""
    matched = []
    for face_truth in truth:
        x, y = face_truth["center"]
        inside = [f for f in faces if f["box"][0] <= x <= f["box"][2] and f["box"][1] <= y <= f["box"][3]]
        matched.append(inside[0] if inside else None)
    return matched


@pytest.fixture(scope="module")
def annotated_samples(classifier_service, tmp_path_factory):
    out = tmp_path_factory.mktemp("annotated")
    result = run_infer("--is_image", "--in_path", "sample-images", "--out_path", out,
                       classifier_url=classifier_service.url)
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout.strip().splitlines()[-1])


def test_infer_annotates_every_sample_and_labels_faces_correctly(annotated_samples, sample_paths, sample_labels):
    out, summary = annotated_samples
    assert summary["processed"] == len(sample_paths) and not summary["failed"]
    correct = total = 0
    for path in sample_paths:
        annotated, record = out / (path.stem + ".jpg"), json.loads((out / (path.stem + ".json")).read_text())
        original, drawn = decode_image(path), decode_image(annotated)
        assert drawn.shape == original.shape
        assert record["width"] == original.shape[1] and record["height"] == original.shape[0]
        faces = record["faces"]
        assert len(faces) == len(sample_labels[path.name])
        for face, truth in zip(match_truth(faces, sample_labels[path.name]), sample_labels[path.name]):
            assert face is not None, f"{path.name}: face at {truth['center']} not found"
            assert len(face["landmarks"]) == 5 and 0 < face["det_score"] <= 1
            assert face["status"] == "classified" and face["label"] in face["probabilities"]
            if truth["label"] in face["probabilities"]:  # a two-class model cannot know a mask worn below the nose
                total += 1
                correct += face["label"] == truth["label"]
            # The box is drawn in the colour of the label the JSON reports, where the JSON says it is.
            x1, y1, x2, y2 = (int(round(v)) for v in face["box"])
            expected = np.array(style_for(face["label"])[1])
            edge = drawn[(y1 + y2) // 2, max(0, x1 - 1):x1 + 2].astype(int)
            assert np.abs(edge - expected).sum(axis=1).min() < 90, f"{path.name}: box colour at {x1},{y1}"
    assert correct / total >= 0.9, f"{correct}/{total} sample faces labelled correctly"


def test_infer_single_image_to_a_file(classifier_service, sample_paths, tmp_path):
    target = tmp_path / "one.jpg"
    result = run_infer("--is_image", "True", "--in_path", sample_paths[0], "--out_path", target,
                       classifier_url=classifier_service.url)
    assert result.returncode == 0, result.stderr
    assert target.is_file() and json.loads(target.with_suffix(".json").read_text())["faces"]


def test_infer_folder_with_a_bad_file_keeps_the_good_ones(classifier_service, sample_paths, tmp_path):
    folder = tmp_path / "in"
    (folder / "nested").mkdir(parents=True)
    (folder / "nested" / "good.jpg").write_bytes(sample_paths[0].read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "out"
    result = run_infer("--is_image", "--in_path", folder, "--out_path", out, classifier_url=classifier_service.url)
    assert result.returncode == 1
    assert (out / "nested" / "good.jpg").is_file() and (out / "nested" / "good.json").is_file()
    assert "broken.jpg" in result.stderr and not (out / "broken.jpg").exists()


@pytest.mark.parametrize("args, message", [
    (["--is_image", "--in_path", "no/such/file.jpg", "--out_path", "x"], "input not found"),
    (["--is_image", "--in_path", "sample-images", "--out_path", "no/such/folder/out"], "output folder does not exist"),
    (["--in_path", "{tmp}/broken.mp4", "--out_path", "{tmp}/v.mp4"], "cannot open video"),
    (["--in_path", "{tmp}/empty.mp4", "--out_path", "{tmp}/v.mp4"], "cannot open video"),
    (["--in_path", "sample-images/group_mixed.jpg", "--out_path", "{tmp}/v.mp4"], "is an image: add --is_image"),
    (["--is_image", "maybe", "--in_path", "sample-images", "--out_path", "{tmp}/o"], "expected True or False"),
])
def test_infer_bad_paths_give_one_line_errors(args, message, classifier_service, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not really a video" * 50)
    (tmp_path / "empty.mp4").write_bytes(b"")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = run_infer(*args, classifier_url=classifier_service.url)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and message in lines[-1]
    assert len(lines) == 1 or lines[0].startswith("usage:")  # argparse puts its usage before the error line


def test_infer_video(classifier_service, sample_paths, tmp_path):
    source = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"mp4v"), 10, (640, 480))
    for index in range(12):
        frame = cv2.resize(cv2.imread(str(sample_paths[index % 2])), (640, 480))
        writer.write(frame)
    writer.release()
    target = tmp_path / "clip_annotated.mp4"
    result = run_infer("--in_path", source, "--out_path", target, "--detect-every", "2",
                       classifier_url=classifier_service.url)
    assert result.returncode == 0, result.stderr
    capture = cv2.VideoCapture(str(target))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    capture.release()
    record = json.loads(target.with_suffix(".json").read_text())
    # Every frame carries boxes with track ids; the picture changes completely every frame here (two photos in
    # turn), so each frame is a scene cut and runs the detector despite --detect-every 2.
    assert record["frames_total"] == 12 and [f["frame"] for f in record["frames"]] == list(range(12))
    assert all(len(f["faces"]) >= 5 and f["detected"] for f in record["frames"])
    assert all(isinstance(face["track_id"], int) for f in record["frames"] for face in f["faces"])


def test_detection_service_json_and_annotated_image(detection_service, sample_paths, sample_labels):
    path = next(p for p in sample_paths if p.name == "group_mixed.jpg")
    with open(path, "rb") as handle:
        response = requests.post(detection_service.url + "/detect", files={"image": handle}, timeout=60)
    assert response.status_code == 200
    body = response.json()
    assert body["filename"] == path.name and len(body["faces"]) == len(sample_labels[path.name])
    labels = [f["label"] if f else None for f in match_truth(body["faces"], sample_labels[path.name])]
    assert labels == [t["label"] for t in sample_labels[path.name]]

    response = requests.post(detection_service.url + "/annotate", data=path.read_bytes(), timeout=60)
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/jpeg"
    assert decode_image(response.content).shape == decode_image(path).shape
    assert "with_mask=3" in response.headers["X-Face-Counts"]


def test_detection_service_rejects_bad_uploads(detection_service):
    url = detection_service.url
    for response, status in [(requests.post(url + "/detect", data=b"nope", timeout=10), 400),
                             (requests.post(url + "/detect", timeout=10), 400),
                             (requests.post(url + "/annotate", data=b"\0" * 21_000_000, timeout=30), 413)]:
        assert response.status_code == status and response.json()["error"]
    assert requests.get(url + "/ready", timeout=10).status_code == 200


@pytest.mark.slow  # waits out a time-out by design
def test_classifier_down_gives_503_and_keeps_every_face(sample_paths, tmp_path):
    dead_url = "http://127.0.0.1:9"  # discard port: nothing listens
    with LocalService("detection", workers=1, env={"CLASSIFIER_URL": dead_url},
                      log_path=tmp_path / "det.log") as service:
        assert requests.get(service.url + "/ready", timeout=10).status_code == 503
        response = requests.post(service.url + "/detect", data=sample_paths[0].read_bytes(), timeout=60)
    assert response.status_code == 503
    faces = response.json()["faces"]
    assert len(faces) >= 5 and all(f["status"] == "unclassified" and f["error"] for f in faces)

    result = run_infer("--is_image", "--in_path", sample_paths[0], "--out_path", tmp_path / "o",
                       "--no-local-classifier", classifier_url=dead_url)
    assert result.returncode == 3 and "no classifier answers" in result.stderr
