"""Slow clients must not take a service down (issue 15): real gunicorn servers, real slow sockets on loopback."""
from __future__ import annotations

import time

import pytest

from bench.slow_clients import SlowClients, probe, service_probes
from bench.speed import sample_crops

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
