"""Mask classification service: Flask app factory (gunicorn: "classification.app:create_app()")."""
from __future__ import annotations

from flask import Flask

from classification.app.routes import blueprint
from facemask.core.classifier import MaskClassifier
from facemask.core.errors import LOGGER, configure_logging
from facemask.core.sessions import session_providers
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
    # Loaded once per worker at start-up; a broken model stops the worker from booting instead of failing requests.
    app.extensions["classifier"] = MaskClassifier.from_settings(settings)
    app.extensions["metrics"] = Metrics(app, "classifier", app.extensions["classifier"].classes)

    app.register_blueprint(blueprint)
    classifier = app.extensions["classifier"]
    LOGGER.info("classification service: model %s on %s, classes %s, ONNX Runtime threads %s, upload limit %g MB",
                classifier.model_path, ", ".join(session_providers(classifier.session)), ", ".join(classifier.classes),
                settings.ort_threads or "default",
                settings.max_upload_mb)
    return app
