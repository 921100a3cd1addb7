"""The package installs outside the checkout: its dependencies, the models as package data, the `facemask` command."""
from __future__ import annotations

import importlib.metadata
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
from packaging.requirements import Requirement

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
    """pyproject.toml and the requirements files (Dockerfiles, CI, the README's commands) name the same pins: the
    base install and the cli, serve and watch extras together are requirements.txt."""
    project, extras = _project(), _project()["optional-dependencies"]
    applications = [line for name in ("cli", "serve", "watch") for line in extras[name] if line != "facemask[cli]"]
    assert sorted({*project["dependencies"], *applications}) == sorted(_requirements(REPO_ROOT / "requirements.txt"))
    runtime = set(_requirements(REPO_ROOT / "requirements.txt"))
    train = [line for line in _requirements(REPO_ROOT / "requirements-train.txt") if line not in runtime]
    assert extras["train"] == train
    dev = [line for line in _requirements(REPO_ROOT / "requirements-dev.txt") if line not in runtime | set(train)]
    assert extras["dev"] == ["facemask[serve,watch,train]", *dev]
    web = {"flask", "gunicorn", "gevent"}
    assert not {_name(line) for line in project["dependencies"]} & web  # the base install is the library
    assert web <= {_name(line) for line in extras["serve"]}
    assert extras["gpu"] == _requirements(REPO_ROOT / "requirements-gpu.txt")
    assert project["scripts"]["facemask"] == "facemask.cli.main:run"


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _closure(requirements: list[str]) -> list[importlib.metadata.Distribution]:
    """The installed distributions these requirements need, theirs included (markers evaluated, no extras)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [Requirement(line) for line in requirements]
    while todo:
        requirement = todo.pop()
        name = _name(requirement.name)
        if name in found or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
            continue
        found[name] = importlib.metadata.distribution(requirement.name)
        todo += [Requirement(line) for line in found[name].requires or []]
    return list(found.values())


def _venv_with(environment: Path, requirements: list[str]) -> Path:
    """A fresh venv, without system site-packages, holding exactly the installed distributions `requirements` need:
    each one's files are linked from where this interpreter has them (its venv, user or system site-packages alike),
    so nothing is downloaded and nothing else is importable there."""
    venv.create(environment, system_site_packages=False, with_pip=False)
    python = environment / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    for distribution in _closure(requirements):
        top_level = {Path(str(file)).parts[0] for file in distribution.files or [] if not str(file).startswith("..")}
        for name in top_level:
            origin = Path(str(distribution.locate_file(name)))
            if (site / name).exists():  # a namespace folder two distributions share (zope), linked with the first
                continue
            if origin.is_dir():
                shutil.copytree(origin, site / name, copy_function=_link_or_copy,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                _link_or_copy(origin, site / name)
    return python


def _link_or_copy(origin, target) -> None:
    """A hard link, instant and free; a copy where there can be none (another file system, a file not ours). Not a
    symbolic link: OpenCV's loader follows one back to this interpreter's cv2 and refuses to load."""
    try:
        os.link(origin, target)
    except OSError:
        shutil.copy2(origin, target)


def _pip_install(python: Path, wheel: Path, extras: str, env: dict, cwd: Path) -> None:
    # --no-index: every declared dependency must already be satisfied, or the install fails here.
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "-q",
                                f"{wheel}{extras}"], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)
    assert installed.returncode == 0, installed.stderr


def test_a_test_venv_gets_exactly_the_declared_dependencies_from_wherever_they_are_installed():
    """The wheel test's venvs take each dependency (and theirs) from where this interpreter finds it, not from the
    base interpreter's site-packages: under a virtualenv those hold nothing (the README's test command failed
    there), under the system interpreter everything."""
    base = {_name(d.metadata["Name"]) for d in _closure(_project()["dependencies"])}
    assert {"onnxruntime", "numpy", "opencv-python-headless", "pillow", "requests", "urllib3"} <= base
    assert not base & {"flask", "gunicorn", "gevent", "werkzeug", "tqdm", "norfair-enough", "scipy"}
    serve = {_name(d.metadata["Name"]) for d in _closure(["flask>=3.0", "gevent>=24.2"])}
    assert {"flask", "werkzeug", "jinja2", "gevent", "greenlet"} <= serve


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_venv_and_annotates_a_photo(tmp_path, sample_paths):
    """Build the wheel from the package's sources only and install it in venvs outside the checkout, offline: each
    venv holds exactly the declared dependencies, linked from wherever this interpreter has them (so the test passes
    under a virtualenv as under the system interpreter). The base install runs facemask.load().detect() with no web
    stack; with [serve] the `facemask` command annotates a photo, starting the installed classifier service."""
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

    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "CLASSIFIER_URL")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    project = _project()

    # The base install: the library, in a venv with only its declared dependencies. No web stack, no tracker.
    base = _venv_with(tmp_path / "base", project["dependencies"])
    _pip_install(base, wheel, "", env, tmp_path)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes((REPO_ROOT / "sample-images" / "group_mixed.jpg").read_bytes())
    library = subprocess.run([str(base), "-c", "import importlib.util, facemask; faces = facemask.load().detect("
                              f"{str(photo)!r}); print(len(faces), [m for m in ('flask', 'gunicorn', 'gevent', "
                              "'tqdm', 'norfair') if importlib.util.find_spec(m)])"],
                             capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert library.returncode == 0, library.stderr
    assert library.stdout.split(maxsplit=1) == ["6", "[]\n"], library.stdout
    command = subprocess.run([str(tmp_path / "base" / "bin" / "facemask"), "annotate", "--is_image", "--in_path",
                              str(photo), "--out_path", str(tmp_path / "none")], capture_output=True, text=True,
                             cwd=tmp_path, env=env, timeout=120)
    assert command.returncode == 2 and command.stderr == "error: facemask annotate needs tqdm, which is not installed\n"

    # With the serve extra (and the cli extra it brings): the command, and the classifier service it starts.
    environment = tmp_path / "venv"
    extras = project["optional-dependencies"]
    python = _venv_with(environment, [*project["dependencies"], *extras["cli"],
                                      *(line for line in extras["serve"] if not line.startswith("facemask"))])
    command = environment / "bin" / "facemask"
    _pip_install(python, wheel, "[serve]", env, tmp_path)

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

    # A classifier URL where nothing answers: the command starts the installed classifier service for the run.
    result = subprocess.run([str(command), "--is_image", "--in_path", str(photo), "--out_path", str(tmp_path / "out"),
                             "--classifier-url", f"http://127.0.0.1:{free_port()}"], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "photo.jpg").stat().st_size > 0
    faces = json.loads((tmp_path / "out" / "photo.json").read_text())["faces"]
    assert len(faces) >= 3 and all(face["label"] in CLASSES for face in faces)
