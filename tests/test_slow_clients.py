"""Slow clients must not take a service down (issue 15): real gunicorn servers, real slow sockets on loopback."""
from __future__ import annotations

import time

import numpy as np
import pytest
import requests

from bench.slow_clients import SlowClients, probe, service_probes
from bench.speed import sample_crops

pytestmark = pytest.mark.slow  # minutes: held connections and time-outs

SLOW_CLIENTS = 8  # more than every worker of both services together: enough to starve sync workers


@pytest.fixture(scope="module")
def probes(detection_service, classifier_service, sample_paths):
    photo = next(p for p in sample_paths if p.name == "group_mixed.jpg").read_bytes()
    return service_probes(detection_service.url, classifier_service.url, photo, sample_crops(sample_paths))


@pytest.mark.parametrize("service", ["detection", "classification"])
def test_health_and_requests_answer_while_slow_clients_hold_connections(service, probes, detection_service,
                                                                        classifier_service):
    server = detection_service if service == "detection" else classifier_service
    path = "/detect" if service == "detection" else "/classify"
    rows = probe(server.url, server.port, probes[service], SLOW_CLIENTS, seconds=4.0, slow_path=path)
    for row in rows:
        assert row["slow connections opened"] >= SLOW_CLIENTS
        assert row["failures"] == 0, row
        assert row["target met"], row


def test_a_client_that_never_finishes_its_headers_is_dropped(detection_service):
    """The header read has a deadline (gunicorn's keepalive under the gevent worker): no connection is held forever."""
    with SlowClients(detection_service.port, 1, "/detect") as slow:  # one client: header trickle
        time.sleep(8)
        assert slow.dropped_by_server >= 1 and slow.connections >= 2


def test_health_answers_while_a_faceless_video_job_runs(detection_service, tmp_path):
    """Under the gevent worker a video job is a greenlet; frames without faces never wait on the classifier, so the
    job must yield between frames or it holds the worker (its requests and gunicorn's heartbeat) to the end."""
    from tests.test_video_jobs import wait_for_job, write_clip

    blank = np.full((480, 640, 3), 90, dtype=np.uint8)
    clip = write_clip(tmp_path / "empty corridor.mp4", [blank] * 150)
    submitted = requests.post(detection_service.url + "/videos", files={"video": clip.open("rb")}, timeout=60)
    assert submitted.status_code == 202, submitted.text
    status_url = submitted.json()["status_url"]
    latencies, states = [], set()
    while len(latencies) < 200:
        started = time.perf_counter()
        state = requests.get(detection_service.url + status_url, timeout=10).json()["state"]
        requests.get(detection_service.url + "/health", timeout=10).raise_for_status()
        latencies.append(time.perf_counter() - started)
        states.add(state)
        if state in ("done", "failed"):
            break
        time.sleep(0.1)
    assert "running" in states, states  # the health checks overlapped the job
    assert wait_for_job(detection_service.url, status_url)["state"] == "done"
    # Without the yield each round trip waited for dozens of frames (10 s and more here); 3 s leaves room for a
    # busy shared machine.
    assert max(latencies) < 3.0, f"worst status + health round trip {max(latencies):.2f} s"
