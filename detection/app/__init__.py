"""Detection service: Flask app factory (gunicorn: "detection.app:create_app()")."""
from __future__ import annotations

import threading

from flask import Flask

from detection.app.routes import blueprint
from detection.app.shared_results import SharedResults
from detection.app.video_jobs import VideoJobs
from detection.app.web import blueprint as web_blueprint
from facemask.core.classes import CLASSES
from facemask.core.detector import create_detector
from facemask.core.errors import LOGGER, configure_logging
from facemask.core.pipeline import ClassifierClient, MaskPipeline
from facemask.core.results import UNCLASSIFIED
from facemask.core.settings import Settings
from facemask.serving.service import Metrics, configure_upload_limit, install_error_handlers, install_security_headers


def create_app(settings: Settings | None = None) -> Flask:
    """settings: None reads them from the environment, once, here (gunicorn calls create_app() per worker)."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level or "INFO")
    app = Flask(__name__)
    app.extensions["settings"] = settings
    configure_upload_limit(app, settings)
    install_error_handlers(app)
    install_security_headers(app)
    app.extensions["pipeline"] = MaskPipeline(create_detector(settings.detector_model, settings.ort_threads),
                                              ClassifierClient.from_settings(settings))
    app.extensions["metrics"] = Metrics(app, "detection", (*CLASSES, UNCLASSIFIED))
    app.extensions["image_slot"] = threading.Lock()  # gevent-aware: gunicorn patches threading before the app loads

    app.register_blueprint(blueprint)
    app.extensions["video_jobs"] = VideoJobs(app.extensions["pipeline"], app.extensions["metrics"],
                                             settings.video_jobs_folder, settings.max_video_frames, settings)
    if settings.jobs_store is not None:
        app.extensions["shared_results"] = SharedResults(settings.jobs_store, settings.jobs_retention_h)
    app.register_blueprint(web_blueprint)
    LOGGER.info("detection service: detector %s, classifier %s, upload limit %g MB, video jobs in %s (at most %d "
                "frames)", app.extensions["pipeline"].detector.model_source, settings.classifier_url,
                settings.max_upload_mb, settings.video_jobs_folder, settings.max_video_frames)
    return app
