"""python -m facemask.watch: the camera watch's command (facemask/cli/watch.py, also `facemask watch`)."""
import sys

from facemask.cli.watch import main

sys.exit(main())
