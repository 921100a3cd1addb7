"""Detection service: Flask app factory (gunicorn: "detection.app:create_app()")."""
from __future__ import annotations

import threading

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from detection.app.routes import blueprint
from detection.app.shared_results import SharedResults
from detection.app.video_jobs import Jobs
from detection.app.web import blueprint as web_blueprint
from facemask.core.classes import CLASSES
from facemask.core.detector import create_detector
from facemask.core.errors import LOGGER, configure_logging
from facemask.core.pipeline import ClassifierClient, MaskPipeline
from facemask.core.results import UNCLASSIFIED
from facemask.core.sessions import session_providers
from facemask.core.settings import Settings
from facemask.jobs.metrics import QueueCollector
from facemask.serving.service import (
    Metrics,
    configure_upload_limit,
    install_error_handlers,
    install_security_headers,
    json_error,
)


def create_app(settings: Settings | None = None) -> Flask:
    """settings: None reads them from the environment, once, here (gunicorn calls create_app() per worker)."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level or "INFO")
    app = Flask(__name__)
    app.extensions["settings"] = settings
    configure_upload_limit(app, settings)
    install_error_handlers(app)
    install_security_headers(app)
    app.extensions["pipeline"] = MaskPipeline(create_detector(settings.detector_model, settings.ort_threads,
                                                              settings.ort_providers),
                                              ClassifierClient.from_settings(settings))
    app.extensions["metrics"] = Metrics(app, "detection", (*CLASSES, UNCLASSIFIED))
    app.extensions["image_slot"] = threading.Lock()  # gevent-aware: gunicorn patches threading before the app loads

    app.register_blueprint(blueprint)
    jobs = app.extensions["jobs"] = Jobs(app.extensions["pipeline"], app.extensions["metrics"], settings)
    app.extensions["metrics"].add_collector(QueueCollector(jobs.backend.counts))
    if settings.jobs_store is not None:
        app.extensions["shared_results"] = SharedResults(
            settings.jobs_store, settings.jobs_retention_h, settings.shared_results_max_mb * 1e6)
    app.register_blueprint(web_blueprint)
    if settings.queue_url:
        _answer_503_while_the_queue_is_away(app)
    if settings.trusted_proxies:  # the client (per-client job limit) from X-Forwarded-For, as far as trusted
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    detector = app.extensions["pipeline"].detector
    LOGGER.info("detection service: detector %s on %s, classifier %s, upload limit %g MB, jobs in %s run %s (videos of "
                "at most %d frames), %d trusted proxies", detector.model_source,
                ", ".join(session_providers(detector.session)), settings.classifier_url, settings.max_upload_mb,
                settings.jobs_folder, "by the queue's workers" if settings.queue_url else "here",
                settings.max_video_frames, settings.trusted_proxies)
    return app


def _answer_503_while_the_queue_is_away(app: Flask) -> None:
    """Redis down or unreachable: the job endpoints answer a JSON 503 that says so (photos are not affected)."""
    from redis.exceptions import RedisError

    @app.errorhandler(RedisError)
    def _queue_away(error: RedisError):
        LOGGER.warning("job queue: %s", error)
        return json_error(503, "the job queue is not answering: try again in a minute", {"Retry-After": "30"})
