"""The package installs outside the checkout: its dependencies, the models as package data, the `facemask` command."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import tomllib

from facemask.core.classes import CLASSES
from facemask.core.paths import REPO_ROOT
from facemask.serving.local_server import free_port

# What the Dockerfiles copy into the image before `pip install`: the package needs nothing else of the checkout.
PACKAGE_SOURCES = ("pyproject.toml", "README.md", "infer.py", "facemask", "classification", "detection")


def _requirements(path: Path) -> list[str]:
    """Requirement lines of a requirements file, `-r` includes followed, comments dropped."""
    lines = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            lines += _requirements(path.parent / line[3:].strip())
        elif line:
            lines.append(line)
    return lines


def _project() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def test_declared_dependencies_are_the_requirements_files():
    """pyproject.toml and the requirements files (Dockerfiles, CI, the README's commands) name the same pins."""
    project = _project()
    assert project["dependencies"] == _requirements(REPO_ROOT / "requirements.txt")
    runtime = set(project["dependencies"])
    train = [line for line in _requirements(REPO_ROOT / "requirements-train.txt") if line not in runtime]
    assert project["optional-dependencies"]["train"] == train
    dev = [line for line in _requirements(REPO_ROOT / "requirements-dev.txt") if line not in runtime | set(train)]
    assert project["optional-dependencies"]["dev"] == ["facemask[train]", *dev]
    assert "serve" in project["optional-dependencies"]
    assert project["scripts"]["facemask"] == "facemask.cli.main:run"


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_venv_and_annotates_a_photo(tmp_path, sample_paths):
    """Build the wheel from the package's sources only, install it in a venv outside the checkout (offline: the
    dependencies come from this machine's site-packages, which the venv can see), then use the `facemask` command."""
    source = tmp_path / "source"
    source.mkdir()
    for name in PACKAGE_SOURCES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO_ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("facemask-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"facemask", "classification", "detection", "infer.py",
                                                      wheel.name.split("-py3")[0] + ".dist-info"}
    assert "classification/model/mask_classifier.onnx" in names and "detection/gunicorn.conf.py" in names

    environment = tmp_path / "venv"
    venv.create(environment, system_site_packages=True, with_pip=False)
    python, command = environment / "bin" / "python", environment / "bin" / "facemask"
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "CLASSIFIER_URL")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # --no-index: every declared dependency must already be satisfied, or the install fails here.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=300, cwd=tmp_path, env=env)

    where = subprocess.run([str(python), "-c", "import facemask, infer; print(facemask.__file__, infer.__file__)"],
                           check=True, capture_output=True, text=True, cwd=tmp_path, env=env).stdout.split()
    assert all(Path(path).is_relative_to(environment) for path in where), where
    for repository_only in ("bench", "training"):
        found = subprocess.run([str(python), "-c", f"import {repository_only}"], capture_output=True, cwd=tmp_path,
                               env=env)
        assert found.returncode != 0, f"{repository_only} must not be installed"

    usage = subprocess.run([str(command), "--help"], capture_output=True, text=True, cwd=tmp_path, env=env,
                           timeout=60)
    assert usage.returncode == 0 and re.match(r"usage: facemask ", usage.stdout), usage.stderr

    photo = tmp_path / "photo.jpg"
    photo.write_bytes((REPO_ROOT / "sample-images" / "group_mixed.jpg").read_bytes())
    # A classifier URL where nothing answers: the command starts the installed classifier service for the run.
    result = subprocess.run([str(command), "--is_image", "--in_path", str(photo), "--out_path", str(tmp_path / "out"),
                             "--classifier-url", f"http://127.0.0.1:{free_port()}"], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "photo.jpg").stat().st_size > 0
    faces = json.loads((tmp_path / "out" / "photo.json").read_text())["faces"]
    assert len(faces) >= 3 and all(face["label"] in CLASSES for face in faces)
