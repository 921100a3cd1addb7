"""One package logger and one error base: retries, start-up configuration and the CLI's error handling."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from detection.app.video_jobs import VideoRejected
from facemask.cli.runner import InputError
from facemask.core.classifier import ModelMismatchError
from facemask.core.errors import FacemaskError, ModelError, ModelNotFoundError, OptionError
from facemask.core.images import ImageError
from facemask.core.paths import REPO_ROOT
from facemask.core.pipeline import ClassifierClient, ClassifierUnavailable
from facemask.core.sessions import ProviderError
from facemask.core.settings import Settings, SettingsError
from facemask.serving.local_server import ServiceStartError, free_port
from facemask.serving.service import ApiError
from facemask.video.source import VideoSourceError
from training.annotations import DatasetError

SAMPLE = REPO_ROOT / "sample-images" / "group_mixed.jpg"


@pytest.mark.parametrize("error, builtin", [
    (DatasetError, ValueError), (ImageError, ValueError), (InputError, ValueError), (SettingsError, ValueError),
    (VideoSourceError, ValueError), (VideoRejected, ValueError), (OptionError, ValueError), (ModelError, ValueError),
    (ModelNotFoundError, FileNotFoundError), (ModelMismatchError, RuntimeError), (ClassifierUnavailable, RuntimeError),
    (ServiceStartError, RuntimeError), (ProviderError, RuntimeError), (ApiError, Exception)])
def test_every_error_type_shares_the_base_and_keeps_its_builtin_type(error, builtin):
    assert issubclass(error, FacemaskError) and issubclass(error, builtin)


def test_classifier_retries_are_logged(caplog):
    client = ClassifierClient(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.01, timeout=2)
    with caplog.at_level(logging.INFO, logger="facemask"), pytest.raises(ClassifierUnavailable):
        client.classify([np.zeros((64, 64, 3), np.uint8)])  # nothing listens: /info fails on every attempt
    attempts = [r for r in caplog.records if r.name == "facemask.core.pipeline" and r.levelno == logging.INFO]
    assert [r.getMessage().split("attempt ")[1][0] for r in attempts] == ["1", "2", "3"]
    (gave_up,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "unavailable after 3 attempt(s)" in gave_up.getMessage()


def test_log_level_setting():
    assert Settings.from_env({"FACEMASK_LOG_LEVEL": "info"}).log_level == "INFO"
    with pytest.raises(SettingsError, match="FACEMASK_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR"):
        Settings.from_env({"FACEMASK_LOG_LEVEL": "loud"})


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "infer.py", *args], cwd=REPO_ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def test_cli_logs_its_configuration_at_info_and_is_quiet_by_default(tmp_path):
    args = ("--is_image", "--in_path", str(SAMPLE), "--out_path", str(tmp_path),
            "--classifier-url", f"http://127.0.0.1:{free_port()}", "--no-local-classifier")
    verbose = _cli(*args, FACEMASK_LOG_LEVEL="INFO")
    assert verbose.returncode == 3
    assert "INFO facemask: CLI: detector " in verbose.stderr and "classifier http://127.0.0.1:" in verbose.stderr
    quiet = _cli(*args)
    assert quiet.returncode == 3 and quiet.stderr.startswith("error: no classifier answers")
    assert len(quiet.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--detector", str(SAMPLE)], "error: cannot load detector model"),  # a JPEG is no ONNX graph: ModelError
    (["--detector", "missing.onnx"], "error: detector model not found"),
    (["--threshold", "2"], "error: score_threshold must be in [0, 1]"),
])
def test_cli_reports_a_facemask_error_as_one_line_with_exit_2(tmp_path, args, message):
    result = _cli("--is_image", "--in_path", str(SAMPLE), "--out_path", str(tmp_path), *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_cli_bad_log_level_is_exit_2():
    result = _cli("--is_image", "--in_path", str(SAMPLE), "--out_path", "out", FACEMASK_LOG_LEVEL="loud")
    assert result.returncode == 2 and result.stderr.startswith("error: FACEMASK_LOG_LEVEL must be one of")


def test_services_log_their_configuration_at_start_up(classifier_service):
    # The session's server (tests/conftest.py) writes its log to a file: no server of its own needed.
    assert "INFO facemask: classification service: model " in classifier_service.log_path.read_text()
