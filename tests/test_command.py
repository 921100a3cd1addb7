"""The one `facemask` command (facemask/cli/main.py): its subcommands, the options annotate and watch share, the
old spelling without a subcommand, and --local, which classifies in this process with no service."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import requests

from facemask.cli import annotate, watch
from facemask.core.paths import REPO_ROOT
from facemask.serving.local_server import free_port, wait_for_health

COMMON = {"--classifier-url", "--local", "--detector", "--threshold", "--detect-every"}


def facemask(*args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facemask", *map(str, args)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_help_lists_the_subcommands():
    result = facemask("--help")
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split("commands:", 1)[1]
    for name in ("annotate", "watch", "serve", "worker"):
        assert f"\n    {name} " in listed, result.stdout


def test_annotate_and_watch_share_one_set_of_options():
    def group(command, argv):
        parsed = command.parse_args(argv)
        return {option: getattr(parsed, option.lstrip("-").replace("-", "_")) for option in COMMON}

    chosen = ["--local", "--detector", "stock", "--threshold", "0.7", "--detect-every", "5"]
    assert group(annotate, ["--in_path", "x", "--out_path", "y", *chosen]) == group(watch, ["--source", "x", *chosen])
    assert group(annotate, ["--in_path", "x", "--out_path", "y"]) == group(watch, ["--source", "x"])  # defaults


def test_local_and_a_classifier_url_exclude_each_other():
    result = facemask("annotate", "--in_path", "x", "--out_path", "y", "--local", "--classifier-url", "http://a")
    assert result.returncode == 2 and "not allowed with argument" in result.stderr


def test_worker_without_the_job_queue_is_one_clear_line():
    # As in an install without facemask/worker.py: importing it fails the way a missing module does.
    result = subprocess.run([sys.executable, "-c", "import sys; sys.modules['facemask.worker'] = None; "
                             "from facemask.cli.main import main; sys.exit(main(['worker']))"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: facemask worker is not available in this install (facemask.worker is missing)"]


def test_local_classifies_in_process_as_the_service_does(classifier_service, sample_paths, tmp_path):
    """--local starts no server and labels every face as the classifier service does, to the last digit."""
    photo = sample_paths[0]
    unreachable = f"http://127.0.0.1:{free_port()}"
    local = facemask("annotate", "--is_image", "--in_path", photo, "--out_path", tmp_path / "local", "--local",
                     env={"CLASSIFIER_URL": unreachable})
    assert local.returncode == 0, local.stderr
    assert "starting one" not in local.stderr  # no classifier service was started for it
    served = facemask("--is_image", "--in_path", photo, "--out_path", tmp_path / "served",  # the old spelling
                      "--classifier-url", classifier_service.url, "--no-local-classifier")
    assert served.returncode == 0, served.stderr
    local_json = json.loads((tmp_path / "local" / f"{photo.stem}.json").read_text())
    served_json = json.loads((tmp_path / "served" / f"{photo.stem}.json").read_text())
    assert local_json["classifier_url"].startswith("local:")
    assert local_json["faces"] and local_json["faces"] == served_json["faces"]
    assert json.loads(local.stdout) == json.loads(served.stdout)


@pytest.mark.slow
def test_serve_runs_a_service_until_sigterm():
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "facemask", "serve", "classification", "--bind",
                                f"127.0.0.1:{port}", "--workers", "1"], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env={k: v for k, v in os.environ.items()
                                                            if k != "PROMETHEUS_MULTIPROC_DIR"})
    try:
        assert wait_for_health(f"http://127.0.0.1:{port}", 90, process), process.stderr
        info = requests.get(f"http://127.0.0.1:{port}/info", timeout=10).json()
        assert info["classes"] == ["incorrect", "with_mask", "without_mask"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
