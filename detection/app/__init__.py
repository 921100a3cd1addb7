"""Detection service: Flask app factory (gunicorn: "detection.app:create_app()")."""
from __future__ import annotations

import threading

from flask import Flask

from detection.app.video_jobs import VideoJobs
from facemask.classes import CLASSES
from facemask.detector import create_detector
from facemask.pipeline import ClassifierClient, MaskPipeline
from facemask.results import UNCLASSIFIED
from facemask.service import Metrics, configure_upload_limit, install_error_handlers


def create_app(classifier_url: str | None = None) -> Flask:
    app = Flask(__name__)
    configure_upload_limit(app)
    install_error_handlers(app)
    app.extensions["pipeline"] = MaskPipeline(create_detector(), ClassifierClient(classifier_url))
    app.extensions["metrics"] = Metrics(app, "detection", (*CLASSES, UNCLASSIFIED))
    app.extensions["image_slot"] = threading.Lock()  # gevent-aware: gunicorn patches threading before the app loads

    from detection.app.routes import blueprint
    from detection.app.web import blueprint as web_blueprint

    app.register_blueprint(blueprint)
    app.extensions["video_jobs"] = VideoJobs(app.extensions["pipeline"], app.extensions["metrics"])
    app.register_blueprint(web_blueprint)
    return app
