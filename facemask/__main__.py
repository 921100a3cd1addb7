"""python -m facemask: the facemask command (facemask/cli/main.py)."""
from facemask.cli.main import run

run()
