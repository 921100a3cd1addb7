# gunicorn -c detection/gunicorn.conf.py "detection.app:create_app()"
import os

os.environ.setdefault("PORT", "8000")
from facemask.serving.gunicorn_conf import *  # noqa: E402,F401,F403
