"""python -m facemask.watch: the camera watch (facemask/watch/cli.py)."""
import sys

from facemask.watch.cli import main

sys.exit(main())
