"""Issue 27's CLI defects: a video written onto itself, a video that cannot be written, unwritable outputs, and a
signal while the CLI's own classifier starts. Each error is one line with the README's exit code."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bench.common import frame_count
from facemask.core.paths import REPO_ROOT
from facemask.serving.local_server import free_port
from tests.test_video import _alive, _children, run_infer
from tests.test_video_job_limits import raw_stream
from tests.test_video_jobs import write_clip


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert lines and lines[-1].startswith("error: "), stderr
    return lines[-1]


def test_a_video_is_never_written_over_its_input(classifier_service, tmp_path):
    video = write_clip(tmp_path / "v.mp4", [np.full((48, 64, 3), i * 4, np.uint8) for i in range(60)])
    before = video.read_bytes()
    for out in (video, tmp_path / "." / "v.mp4"):
        result = run_infer("--in_path", video, "--out_path", out, classifier_url=classifier_service.url)
        assert result.returncode == 2, result.stderr
        assert "would overwrite the input" in one_error_line(result.stderr)
    assert video.read_bytes() == before and frame_count(video) == 60


@pytest.mark.parametrize("size, message", [
    ((20000, 16), "cannot write a 20000x16 video"),  # MPEG-4 refuses it: the run wrote only the JSON and exited 0
    ((2, 2), "2x2 pixels cannot be annotated"),  # too small for a face (issue 35): the run exited 0
])
def test_a_video_that_cannot_be_written_is_an_error_not_a_success(classifier_service, tmp_path, size, message):
    video = raw_stream(tmp_path / "strip.mjpg", "MJPG", size, 2)
    out = tmp_path / "strip.mp4"
    result = run_infer("--in_path", video, "--out_path", out, classifier_url=classifier_service.url)
    assert result.returncode == 2, result.stderr
    assert message in one_error_line(result.stderr)
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_an_unwritable_output_is_one_line_and_exit_2(classifier_service, tmp_path):
    video = write_clip(tmp_path / "clip.mp4", [np.full((48, 64, 3), 80, np.uint8)] * 5)
    (tmp_path / "x.json").mkdir()  # the JSON record cannot be created, even by root
    result = run_infer("--in_path", video, "--out_path", tmp_path / "x.mp4", classifier_url=classifier_service.url)
    assert result.returncode == 2, result.stderr
    assert "cannot write" in one_error_line(result.stderr)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_one_line_and_exit_2(classifier_service, tmp_path):
    video = write_clip(tmp_path / "clip.mp4", [np.full((48, 64, 3), 80, np.uint8)] * 5)
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    result = run_infer("--in_path", video, "--out_path", folder / "x.mp4", classifier_url=classifier_service.url)
    assert result.returncode == 2, result.stderr
    assert "permission denied" in one_error_line(result.stderr)


# Slow: when the SIGTERM reaches gunicorn while its workers boot, they keep serving and the master waits out its
# 30 s graceful_timeout before it kills them (1 s or 31 s a run, depending on that race).
@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_local_classifier_starts_leaves_nothing_running(stop_signal, sample_paths):
    """The classifier the CLI starts takes 1-2 s to answer; a signal then left its gunicorn running (5 of 5)."""
    env = {**os.environ, "CLASSIFIER_URL": f"http://127.0.0.1:{free_port()}"}  # nothing there: the CLI starts one
    env.pop("PYTEST_CURRENT_TEST", None)
    process = subprocess.Popen([sys.executable, "infer.py", "--is_image", "--in_path", str(sample_paths[0]),
                                "--out_path", "/tmp/never-written"], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (servers := _children(process.pid)):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    time.sleep(0.3)  # gunicorn is booting: its master is up, its worker is loading the model
    servers |= {child for server in servers for child in _children(server)}
    process.send_signal(stop_signal)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + stop_signal, stderr
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in servers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in servers), "the classifier the CLI was starting is still running"
