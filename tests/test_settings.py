"""One Settings object from the environment: parsed and checked once, documented in README.md, used everywhere."""
from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import pytest

from facemask.core.paths import REPO_ROOT
from facemask.core.settings import Settings, SettingsError, markdown_table


def _readme_block() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    start, end = text.index("<!-- settings:start -->\n"), text.index("<!-- settings:end -->")
    return text[start + len("<!-- settings:start -->\n"):end].strip()


def test_readme_settings_table_is_generated_from_settings():
    assert _readme_block() == markdown_table(), "README.md is stale: paste `python -m facemask.core.settings` into it"
    rows = _readme_block().splitlines()[2:]
    names = [row.split("|")[1].strip().strip("`") for row in rows]
    assert names == [f.metadata["env"] for f in fields(Settings)]  # every setting, and nothing undocumented
    assert all(row.split("|")[2].strip() and row.split("|")[3].strip() for row in rows)  # a default and a meaning


def test_every_variable_the_code_names_is_a_setting():
    """No environment variable of ours is read anywhere but in Settings (third-party ones excepted)."""
    ours = {f.metadata["env"] for f in fields(Settings)}
    third_party = {"PROMETHEUS_MULTIPROC_DIR", "MALLOC_MMAP_THRESHOLD_", "OPENCV_FFMPEG_LOGLEVEL", "OPENCV_LOG_LEVEL"}
    for path in [*REPO_ROOT.glob("*.py"), *(p for d in ("facemask", "training", "bench", "classification",
                                                        "detection") for p in (REPO_ROOT / d).rglob("*.py"))]:
        if path.name == "settings.py":
            continue
        text = path.read_text()
        assert "getenv(" not in text and "os.environ.get(" not in text, path
        for name in third_party | ours:
            text = text.replace(f'os.environ.setdefault("{name}"', "").replace(f'"{name}" in os.environ', "")
            text = text.replace(f'"{name}" not in os.environ', "").replace(f'os.environ["{name}"] =', "")
        assert "os.environ[" not in text, path


def test_defaults_and_parsing():
    assert Settings.from_env({}) == Settings()
    settings = Settings.from_env({"MAX_UPLOAD_MB": "5", "ACCESS_LOG": "1", "FACEMASK_JOBS_STORE": "/srv/jobs",
                                  "CLASSIFIER_URL": " http://a:1,http://b:2 ", "WEB_CONCURRENCY": "",
                                  "FACEMASK_DETECTOR_MODEL": "stock"})
    assert settings.max_upload_bytes == 5_000_000 and settings.access_log is True
    assert settings.jobs_folder == Path("/srv/jobs") and settings.classifier_url == "http://a:1,http://b:2"
    assert settings.web_concurrency == 2  # empty counts as unset
    assert settings.service_bind(8000) == "0.0.0.0:8000" and Settings(port=9000).service_bind(8000) == "0.0.0.0:9000"
    with pytest.raises(FrozenInstanceError):
        settings.port = 1


@pytest.mark.parametrize("name, value, message", [
    ("WEB_CONCURRENCY", "two", "WEB_CONCURRENCY must be a whole number, got 'two'"),
    ("MAX_UPLOAD_MB", "lots", "MAX_UPLOAD_MB must be a number, got 'lots'"),
    ("MAX_CROPS_PER_REQUEST", "0", "MAX_CROPS_PER_REQUEST must be at least 1, got '0'"),
    ("ACCESS_LOG", "maybe", "ACCESS_LOG must be 1 or 0, got 'maybe'"),
])
def test_a_bad_value_is_one_line_naming_the_variable(name, value, message):
    with pytest.raises(SettingsError) as error:
        Settings.from_env({name: value})
    assert str(error.value) == message


def test_the_cli_refuses_a_bad_setting_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, "infer.py", "--is_image", "--in_path", "sample-images",
                             "--out_path", str(tmp_path / "out")], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "CLASSIFY_DEADLINE_S": "soon"}, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: CLASSIFY_DEADLINE_S must be a number, got 'soon'"
    assert not (tmp_path / "out").exists()


def test_the_service_uses_the_settings_it_is_given():
    from classification.app import create_app

    app = create_app(Settings(max_upload_mb=1, max_crops_per_request=3))
    info = app.test_client().get("/info").get_json()
    assert info["max_upload_bytes"] == 1_000_000 and info["max_crops_per_request"] == 3
    photo = (REPO_ROOT / "sample-images" / "group_mixed.jpg").read_bytes()
    too_many = app.test_client().post("/classify", data={f"c{i}": (io.BytesIO(photo), f"{i}.jpg") for i in range(4)})
    assert too_many.status_code == 413 and "4 > 3" in too_many.get_json()["error"]
