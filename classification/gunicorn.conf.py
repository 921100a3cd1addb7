# gunicorn -c classification/gunicorn.conf.py "classification.app:create_app()"
import os

os.environ.setdefault("PORT", "3000")
from facemask.serving.gunicorn_conf import *  # noqa: E402,F401,F403
