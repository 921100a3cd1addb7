"""Shared fixtures: real gunicorn servers on loopback ports, the bundled sample images, small test files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from facemask.local_server import LocalService
from facemask.paths import REPO_ROOT

SAMPLES = REPO_ROOT / "sample-images"


@pytest.fixture(scope="session")
def sample_paths() -> list[Path]:
    paths = sorted(SAMPLES.glob("*.jpg"))
    assert len(paths) >= 3, "sample-images/ must hold at least three photos"
    return paths


@pytest.fixture(scope="session")
def sample_labels() -> dict:
    """Hand-checked faces of the sample photos: {file: [{"center": [x, y], "label": ...}]}."""
    return json.loads((SAMPLES / "labels.json").read_text())


@pytest.fixture(scope="session")
def classifier_service(tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "classification.log"
    with LocalService("classification", workers=2, log_path=log) as service:
        yield service


@pytest.fixture(scope="session")
def detection_service(classifier_service, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "detection.log"
    jobs = tmp_path_factory.mktemp("video-jobs")  # the upload page's video jobs stay inside the test run
    with LocalService("detection", workers=1, env={"CLASSIFIER_URL": classifier_service.url,
                                                   "FACEMASK_VIDEO_JOBS_DIR": str(jobs)},
                      log_path=log) as service:
        yield service
