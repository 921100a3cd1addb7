"""Mask classification service: Flask app factory (gunicorn: "classification.app:create_app()")."""
from __future__ import annotations

from flask import Flask

from facemask.classifier import MaskClassifier
from facemask.service import Metrics, configure_upload_limit, install_error_handlers


def create_app(model_path: str | None = None) -> Flask:
    app = Flask(__name__)
    configure_upload_limit(app)
    install_error_handlers(app)
    # Loaded once per worker at start-up; a broken model stops the worker from booting instead of failing requests.
    app.extensions["classifier"] = MaskClassifier(model_path)
    app.extensions["metrics"] = Metrics(app, "classifier", app.extensions["classifier"].classes)

    from classification.app.routes import blueprint

    app.register_blueprint(blueprint)
    return app
