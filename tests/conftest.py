"""Shared fixtures: real gunicorn servers on loopback ports, the bundled sample images, small test files."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from facemask.core.paths import REPO_ROOT
from facemask.serving.local_server import LocalService

SAMPLES = REPO_ROOT / "sample-images"


def _slow_as_a_whole(path: Path) -> bool:
    """The module sets `pytestmark` to pytest.mark.slow, alone or in a list."""
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.Assign) and any(getattr(target, "id", None) == "pytestmark" for target in node.targets):
            marks = node.value.elts if isinstance(node.value, (ast.List, ast.Tuple)) else [node.value]
            return any(ast.unparse(mark) == "pytest.mark.slow" for mark in marks)
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked gpu are skipped unless ONNX Runtime offers the CUDA provider (bench/gpu/device_bench.sh runs
    them on a lent GPU machine)."""
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        skip = pytest.mark.skip(reason="needs onnxruntime-gpu and a GPU (CUDAExecutionProvider)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With -m "not slow" (the inner loop), a module marked slow as a whole is not even imported: torch, onnx2torch,
    pandas and selenium cost about 3 s of its collection. Its tests are then left out of the "deselected" count."""
    if (" ".join(config.option.markexpr.split()) == "not slow" and collection_path.suffix == ".py"
            and collection_path.name.startswith("test_") and _slow_as_a_whole(collection_path)):
        return True
    return None


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
    # No FACEMASK_JOBS_STORE: the default service, without result links; its jobs go to the system temp folder's
    # store, kept apart from any other service's there by its address.
    with LocalService("detection", workers=1, env={"CLASSIFIER_URL": classifier_service.url},
                      log_path=log) as service:
        yield service
