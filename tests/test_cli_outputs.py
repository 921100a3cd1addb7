"""The real CLI never writes over an input and never loses an output silently (issue 15, item 4)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facemask.core.paths import REPO_ROOT


def run_cli(classifier_service, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLASSIFIER_URL": classifier_service.url}
    return subprocess.run([sys.executable, "infer.py", "--is_image", "--no-local-classifier", *map(str, args)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def photos(sample_paths, tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sample_paths[:2]:
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def test_output_folder_equal_to_the_input_folder_is_refused(classifier_service, photos):
    before = snapshot(photos)
    result = run_cli(classifier_service, "--in_path", photos, "--out_path", photos)
    assert result.returncode == 2 and "replace the originals" in one_line_error(result)
    assert snapshot(photos) == before


def test_single_image_written_onto_itself_is_refused(classifier_service, photos):
    image = next(photos.iterdir())
    before = image.read_bytes()
    for out in (image, photos):  # the same file, or its own folder (the output would take the same name)
        result = run_cli(classifier_service, "--in_path", image, "--out_path", out)
        assert result.returncode == 2 and "overwrite the input" in one_line_error(result)
    assert image.read_bytes() == before


def test_nested_output_needs_a_flag_and_is_not_reread(classifier_service, photos):
    nested = photos / "annotated"
    refused = run_cli(classifier_service, "--in_path", photos, "--out_path", nested)
    assert refused.returncode == 2 and "--allow-nested-output" in one_line_error(refused)
    assert not nested.exists()
    for _ in range(2):  # the second run must not take the first run's outputs as inputs
        result = run_cli(classifier_service, "--in_path", photos, "--out_path", nested, "--allow-nested-output")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout.splitlines()[-1])["processed"] == 2
    assert sorted(p.name for p in nested.iterdir()) == sorted(
        n for p in photos.glob("*.jpg") for n in (p.name, p.with_suffix(".json").name))


def test_names_that_differ_only_in_extension_get_distinct_outputs(classifier_service, sample_paths, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    photo = sample_paths[0].read_bytes()
    for name in ("x.jpg", "x.png", "x.JPEG", "x_png.jpg"):  # x_png.jpg: a real file with a generated-looking name
        (folder / name).write_bytes(photo)
    result = run_cli(classifier_service, "--in_path", folder, "--out_path", out)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["processed"] == 4
    images = sorted(p.name for p in out.glob("*.jpg"))
    assert len(images) == 4 and len(list(out.glob("*.json"))) == 4, images
    sources = {json.loads(p.read_text())["source"] for p in out.glob("*.json")}
    assert sources == {str(p) for p in folder.iterdir()}


def test_broken_image_links_are_listed_as_failed(classifier_service, photos):
    (photos / "dangling.jpg").symlink_to(photos / "missing.jpg")
    (photos / "loop.png").symlink_to(photos / "loop.png")
    result = run_cli(classifier_service, "--in_path", photos, "--out_path", photos.parent / "out")
    assert result.returncode == 1
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["processed"] == 2
    assert sorted(Path(p).name for p in summary["failed"]) == ["dangling.jpg", "loop.png"]
    assert "broken link" in result.stderr


def test_an_output_folder_that_cannot_be_written_gives_one_line_and_exit_2(classifier_service, photos, tmp_path):
    if os.geteuid() == 0:
        # root writes through permission bits; sysfs refuses new files even to root
        unwritable = Path("/sys")
    else:
        unwritable = tmp_path / "read-only"
        unwritable.mkdir()
        unwritable.chmod(0o555)
    single = photos / "facemask_cli_probe.jpg"
    single.write_bytes(next(photos.glob("*.jpg")).read_bytes())
    result = run_cli(classifier_service, "--in_path", single, "--out_path", unwritable)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "cannot write" in result.stderr and "denied" in result.stderr.lower()
    assert not (unwritable / "facemask_cli_probe.jpg").exists()


def test_ctrl_c_keeps_what_was_written_and_says_what_was_left(classifier_service, sample_paths, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for index in range(30):
        (folder / f"p{index:02d}.jpg").write_bytes(sample_paths[index % len(sample_paths)].read_bytes())
    env = {**os.environ, "CLASSIFIER_URL": classifier_service.url}
    process = subprocess.Popen([sys.executable, "infer.py", "--is_image", "--no-local-classifier", "--in_path",
                                str(folder), "--out_path", str(out)], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob("*.json")) and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "interrupted" in stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["interrupted"] and summary["processed"] >= 1
    assert summary["processed"] + summary["not_processed"] == 30
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.startswith(".")], "a temporary file was left behind"
    for json_file in out.glob("*.json"):
        assert json_file.with_suffix(".jpg").is_file() and json.loads(json_file.read_text())["faces"]
