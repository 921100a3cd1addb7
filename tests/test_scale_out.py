"""Several classifier replicas share the detection service's work; per-stage latency histograms on both services.

Three real classifier processes (gunicorn, one worker each) on loopback ports; each replica's share is read from
its own /metrics, as an operator would.
"""
from __future__ import annotations

import socket
import threading
from contextlib import ExitStack

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from facemask.core.crops import crop_face
from facemask.core.detector import RetinaFaceDetector
from facemask.core.images import decode_image
from facemask.core.pipeline import ClassifierClient
from facemask.core.results import Classification
from facemask.serving.local_server import LocalService

pytestmark = pytest.mark.slow  # minutes: several service replicas

REPLICAS = 3
# gunicorn's default sync workers close every connection after one response; threaded workers keep connections
# alive (as would nginx or a service mesh in front), which is where a client could get pinned to one replica.
KEEPALIVE_WORKERS = {"GUNICORN_CMD_ARGS": "--worker-class gthread --threads 2"}


def metric_value(base_url: str, sample_name: str, **labels) -> float:
    """Sum of the samples called sample_name whose labels include `labels`, from a service's /metrics."""
    text = requests.get(base_url + "/metrics", timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()))


def classify_requests(base_url: str) -> float:
    return metric_value(base_url, "classifier_http_requests_total", endpoint="/classify", status="200")


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    logs = tmp_path_factory.mktemp("replica-logs")
    with ExitStack() as stack:
        yield [stack.enter_context(LocalService("classification", workers=1, env=KEEPALIVE_WORKERS,
                                                   log_path=logs / f"replica{i}.log"))
               for i in range(REPLICAS)]


@pytest.fixture(scope="module")
def some_crops(sample_paths):
    image = decode_image(sample_paths[0])
    faces = RetinaFaceDetector().detect(image)
    assert faces, "the first sample photo must hold faces"
    return [crop_face(image, face.landmarks, face.box) for face in faces]


def test_detection_service_spreads_classify_requests_over_replicas(replicas, sample_paths, tmp_path):
    before = [classify_requests(replica.url) for replica in replicas]
    url_list = ",".join(replica.url for replica in replicas)
    frames = 4 * REPLICAS
    with LocalService("detection", workers=1, env={"CLASSIFIER_URL": url_list},
                      log_path=tmp_path / "detection.log") as detection:
        assert requests.get(detection.url + "/ready", timeout=10).status_code == 200
        for _ in range(frames):
            response = requests.post(detection.url + "/detect", data=sample_paths[0].read_bytes(), timeout=60)
            assert response.status_code == 200, response.text
            assert all(face["status"] == "classified" for face in response.json()["faces"])
    shares = [classify_requests(replica.url) - already for replica, already in zip(replicas, before)]
    assert sum(shares) == frames, shares
    # One detection worker takes turns over the list: every replica gets exactly its share.
    assert shares == [frames / REPLICAS] * REPLICAS, shares


def test_a_replica_that_is_down_costs_no_frame(replicas, some_crops):
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    client = ClassifierClient(",".join([replicas[0].url, dead, replicas[1].url]), backoff=0.05)
    assert client.is_ready()
    for _ in range(6):
        results = client.classify(some_crops)
        assert len(results) == len(some_crops) and all(isinstance(r, Classification) for r in results)


class RoundRobinBalancer:
    """A per-connection TCP balancer on a loopback port, as kube-proxy or Docker's DNS behave for one Service name."""

    def __init__(self, backends: list[int]):
        self.backends, self.turn = backends, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            backend = socket.create_connection(("127.0.0.1", self.backends[self.turn % len(self.backends)]))
            self.turn += 1
            for source, target in ((client, backend), (backend, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket):
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


def test_one_balanced_url_is_not_pinned_to_one_replica(replicas, some_crops):
    """One CLASSIFIER_URL behind a per-connection balancer: a kept-alive connection would send everything to one."""
    balancer = RoundRobinBalancer([int(replica.url.rsplit(":", 1)[1]) for replica in replicas])
    try:
        before = [classify_requests(replica.url) for replica in replicas]
        client = ClassifierClient(balancer.url)
        requests_sent = 2 * REPLICAS
        for _ in range(requests_sent):
            assert all(isinstance(r, Classification) for r in client.classify(some_crops))
        shares = [classify_requests(replica.url) - already for replica, already in zip(replicas, before)]
    finally:
        balancer.close()
    assert shares == [requests_sent / REPLICAS] * REPLICAS, shares


def test_stage_histograms_on_both_services(detection_service, classifier_service, sample_paths):
    response = requests.post(detection_service.url + "/annotate", data=sample_paths[0].read_bytes(), timeout=60)
    assert response.status_code == 200
    for stage in ("decode", "detect", "classify", "draw"):
        assert metric_value(detection_service.url, "detection_stage_seconds_count", stage=stage) >= 1, stage
        assert metric_value(detection_service.url, "detection_stage_seconds_sum", stage=stage) > 0, stage
    for stage in ("decode", "classify"):
        assert metric_value(classifier_service.url, "classifier_stage_seconds_count", stage=stage) >= 1, stage
