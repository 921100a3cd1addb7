"""The classification service under gunicorn on a loopback port, driven over HTTP."""
from __future__ import annotations

import pytest
import requests

from facemask.core.crops import crop_face
from facemask.core.detector import RetinaFaceDetector
from facemask.core.images import decode_image, encode_png


def sample_crops(sample_paths, sample_labels, name="group_mixed.jpg"):
    """Aligned crops of one sample photo with their true labels, in the detector's order."""
    path = next(p for p in sample_paths if p.name == name)
    image = decode_image(path)
    faces = RetinaFaceDetector().detect(image)
    labels = []
    for face in faces:
        cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
        truth = min(sample_labels[name], key=lambda t: (t["center"][0] - cx) ** 2 + (t["center"][1] - cy) ** 2)
        labels.append(truth["label"])
    return [crop_face(image, f.landmarks, f.box) for f in faces], labels


def body_classes(service) -> list[str]:
    return requests.get(service.url + "/info", timeout=5).json()["classes"]


def test_batch_of_crops_gets_one_result_each_in_order(classifier_service, sample_paths, sample_labels):
    crops, labels = sample_crops(sample_paths, sample_labels)
    files = [("crops", (f"c{i}.png", encode_png(c), "image/png")) for i, c in enumerate(crops)]
    response = requests.post(classifier_service.url + "/classify", files=files, timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == len(crops) == len(body["results"]) and body["errors"] == 0
    for index, (result, truth) in enumerate(zip(body["results"], labels)):
        assert result["index"] == index and result["filename"] == f"c{index}.png"
        assert set(result["probabilities"]) == set(body_classes(classifier_service))
        assert abs(sum(result["probabilities"].values()) - 1) < 1e-3
        assert result["score"] == max(result["probabilities"].values())
        assert result["label"] == truth, f"face {index}"


def test_raw_body_is_one_crop(classifier_service, sample_paths, sample_labels):
    crops, labels = sample_crops(sample_paths, sample_labels)
    response = requests.post(classifier_service.url + "/classify", data=encode_png(crops[0]),
                             headers={"Content-Type": "image/png"}, timeout=30)
    assert response.status_code == 200
    assert response.json()["results"][0]["label"] == labels[0]


def test_a_bad_file_in_a_batch_does_not_cost_the_others(classifier_service, sample_paths, sample_labels):
    crops, _ = sample_crops(sample_paths, sample_labels)
    files = [("crops", ("good.png", encode_png(crops[0]), "image/png")),
             ("crops", ("bad.png", b"not an image at all", "image/png"))]
    body = requests.post(classifier_service.url + "/classify", files=files, timeout=30).json()
    assert body["errors"] == 1
    assert "label" in body["results"][0]
    assert "not an image" in body["results"][1]["error"] and "label" not in body["results"][1]


def test_bad_requests_get_json_4xx(classifier_service):
    url = classifier_service.url + "/classify"
    cases = [
        (requests.post(url, data=b"", timeout=10), 400),
        (requests.post(url, data=b"plain text", headers={"Content-Type": "text/plain"}, timeout=10), 400),
        (requests.post(url, files=[("crops", ("x.png", b"\x89PNG\r\n\x1a\n", "image/png"))], timeout=10), 400),
        (requests.post(url, data=b"\0" * 21_000_000, headers={"Content-Type": "image/png"}, timeout=30), 413),
        (requests.get(url, timeout=10), 405),
        (requests.get(classifier_service.url + "/nope", timeout=10), 404),
    ]
    for response, status in cases:
        assert response.status_code == status
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json()["error"]


def test_health_ready_info_and_metrics(classifier_service):
    base = classifier_service.url
    assert requests.get(base + "/health", timeout=5).json() == {"status": "ok"}
    ready = requests.get(base + "/ready", timeout=5)
    assert ready.status_code == 200 and ready.json()["model_version"]
    info = requests.get(base + "/info", timeout=5).json()
    assert {"with_mask", "without_mask"} <= set(info["classes"]) and info["input_size"] == [96, 96]
    assert info["model_bytes"] <= 25_000_000
    requests.post(base + "/classify", data=b"", timeout=5)
    metrics = requests.get(base + "/metrics", timeout=5).text
    assert 'classifier_http_requests_total{endpoint="/classify",status="400"}' in metrics
    for label in info["classes"]:  # every class is counted from the start, so dashboards see all of them
        assert f'classifier_faces_total{{label="{label}"}}' in metrics


def test_clients_cut_crops_at_the_geometry_the_service_lists(classifier_service):
    """The model owns its input: detection asks /info, so a model trained at another face fraction (or an older
    one) gets the crops it was trained on."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from facemask.core.crops import LEGACY_FACE_FRACTION, SERVED, CropGeometry
    from facemask.core.pipeline import ClassifierClient

    info = requests.get(classifier_service.url + "/info", timeout=5).json()
    assert ClassifierClient(classifier_service.url).crop_geometry() == \
        CropGeometry(info["input_size"][0], info["face_fraction"]) == SERVED

    class OlderService(BaseHTTPRequestHandler):  # /info as services answered before the face fraction was listed
        def do_GET(self):
            body = json.dumps({"classes": ["with_mask", "without_mask"], "input_size": [96, 96]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), OlderService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        older = ClassifierClient(f"http://127.0.0.1:{server.server_address[1]}")
        # Every model from before the field was trained at 0.78: the literal guards the constant.
        assert older.crop_geometry() == CropGeometry(96, 0.78) == CropGeometry(96, LEGACY_FACE_FRACTION)
    finally:
        server.shutdown()


def test_client_splits_a_crowd_into_requests_the_service_accepts(classifier_service, sample_paths, sample_labels):
    from facemask.core.pipeline import CROPS_PER_REQUEST, ClassifierClient

    crops, labels = sample_crops(sample_paths, sample_labels)
    crowd = (crops * (2 * CROPS_PER_REQUEST // len(crops) + 2))[: 2 * CROPS_PER_REQUEST + 5]
    results = ClassifierClient(classifier_service.url).classify(crowd)
    assert len(results) == len(crowd)
    assert [r.label for r in results[:len(labels)]] == labels
    assert [r.label for r in results[-len(labels):]] == [labels[(len(crowd) - len(labels) + i) % len(labels)]
                                                           for i in range(len(labels))]


@pytest.mark.slow  # a service of its own, started and stopped
def test_the_metrics_folder_a_service_makes_goes_with_it(tmp_path):
    import glob
    import os

    from facemask.serving.local_server import LocalService

    before = set(glob.glob("/tmp/facemask-metrics-*"))
    with LocalService("classification", workers=1, log_path=tmp_path / "log") as service:
        assert requests.get(f"{service.url}/health", timeout=10).status_code == 200
        made = set(glob.glob("/tmp/facemask-metrics-*")) - before
        assert len(made) == 1
    assert not any(os.path.exists(path) for path in made)
