"""The code passes `ruff check` with the rules and line length in pyproject.toml (pyflakes, pycodestyle, bugbear)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from facemask.paths import REPO_ROOT


def test_ruff_check_passes():
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (pip install -r requirements-dev.txt)")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
