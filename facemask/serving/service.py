"""Pieces both Flask services share: JSON errors, upload parsing, Prometheus wiring."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

from flask import Flask, Response, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge
from werkzeug.formparser import MultiPartParser
from werkzeug.sansio.multipart import Field

from facemask.core.errors import FacemaskError
from facemask.core.settings import Settings

DEFAULT_MAX_UPLOAD_MB = Settings.max_upload_mb
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ApiError(FacemaskError):
    """An error the client caused or should know about; rendered as JSON with its status code."""

    def __init__(self, status: int, message: str, headers: dict | None = None, **details):
        super().__init__(message)
        self.status, self.message, self.details, self.headers = status, message, details, headers or {}


def json_error(status: int, message: str, headers: dict | None = None, **details):
    response = jsonify({"error": message, "status": status, **details})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def public_detector_config(config: dict) -> dict:
    """A detector's config for responses: its model file by name, never the server's folders."""
    return {**config, "model": Path(config["model"]).name} if "model" in config else config


def install_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return json_error(error.status, error.message, error.headers, **error.details)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        message, status = error.description or error.name, error.code or 500
        limit = app.config.get("MAX_CONTENT_LENGTH") or 0
        if error.code == 413 and (field := _oversized_form_field(error)) is not None:
            # a form of the wrong shape (400), whatever its size: a file sent properly may be up to the upload limit
            message, status = _file_expected(field), 400
        elif error.code == 413 and request.content_length is not None and request.content_length <= limit:
            # werkzeug refuses a form of more than max_form_parts parts with the same 413 as a large body
            message = f"too many parts in one form: the limit is {request.max_form_parts}"
        elif error.code == 413:
            message = f"upload too large: the limit is {limit / 1e6:.0f} MB"
        # A 405 names the allowed methods (Allow), as HTTP asks; werkzeug puts it in the error's own headers.
        headers = {name: value for name, value in error.get_headers() if name.lower() == "allow"}
        return json_error(status, message, headers)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        app.logger.exception("unhandled error")
        return json_error(500, f"internal error: {type(error).__name__}")


def _oversized_form_field(error: HTTPException) -> str | None:
    """The name of the form field (a part without a file name) whose size made werkzeug raise this 413, else None.

    werkzeug raises the same RequestEntityTooLarge for a body over the limit, too many parts and a field over
    max_form_memory_size; the last one is raised by its multipart parser while that field is the part being read.
    `curl -F "video=<clip.mp4"` sends the video that way, and the answer said "too many parts" (issue 35)."""
    trace = error.__traceback__
    while trace is not None and trace.tb_next is not None:
        trace = trace.tb_next
    if trace is None or trace.tb_frame.f_code is not MultiPartParser.parse.__code__:
        return None
    part = trace.tb_frame.f_locals.get("current_part")
    return part.name if isinstance(part, Field) else None


def _file_expected(field: str) -> str:
    return (f"a file was expected in the '{field}' field, which came as a plain form field without a file name: send "
            f"it as a file (curl -F '{field}=@<file>', or as the raw body)")


def configure_upload_limit(app: Flask, settings: Settings) -> None:
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.config["BODY_IDLE_TIMEOUT_S"] = settings.body_idle_timeout_s

    @app.before_request
    def _limit_body_idle_time():
        # A client that sent its headers and stops sending its body held a connection for ever (issue 27: 2,100 such
        # connections took a service down). gunicorn hands the client socket over; a read that waits longer than this
        # raises, and the request ends with a 408 instead of waiting.
        client = request.environ.get("gunicorn.socket")
        if client is not None and request.content_length != 0:
            client.settimeout(settings.body_idle_timeout_s)


# Both services answer JSON and one static page that loads only its own script and stylesheet; the annotated photo
# is shown from a data: URL and the annotated video from this service.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def install_security_headers(app: Flask) -> None:
    @app.after_request
    def _security_headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def request_body() -> bytes:
    """The raw body; a body that stalls past BODY_IDLE_TIMEOUT_S (or a client that went away) is a 408."""
    try:
        return request.get_data(cache=False)
    except ClientDisconnected as error:
        raise _stalled(error) from None


def _stalled(error: Exception) -> ApiError:
    seconds = current_app.config.get("BODY_IDLE_TIMEOUT_S", 0)
    # werkzeug raises ClientDisconnected while handling the socket's own error, which stays its context
    reason = (f"nothing received for {seconds:g} s" if isinstance(error.__context__, TimeoutError)
              else "the client disconnected")
    return ApiError(408, f"request body incomplete: {reason}", headers={"Connection": "close"})


def uploaded_files() -> list[tuple[str, bytes]]:
    """(name, bytes) of every uploaded file: multipart parts in order, or the raw body as one file."""
    try:
        if request.files:
            files = [(f.filename or key, f.read()) for key in request.files for f in request.files.getlist(key)]
        elif request.mimetype and request.mimetype.startswith("multipart/"):
            if request.form:  # the data came as text fields (curl -F "video=<clip.mp4" leaves out the file name)
                raise ApiError(400, _file_expected(next(iter(request.form))))
            files = []
        else:
            body = request.get_data(cache=False)
            files = [("body", body)] if body else []
    except ClientDisconnected as error:
        raise _stalled(error) from None
    # werkzeug stops reading a chunked body (no Content-Length) at MAX_CONTENT_LENGTH without an error: a cut image
    # would be answered as if whole. A body that reached the limit is refused instead.
    if request.content_length is None and getattr(request.stream, "is_exhausted", False):
        raise RequestEntityTooLarge()
    return files


class Metrics:
    """Request counters and latency histograms, correct under several gunicorn workers.

    With PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py does), every worker writes its samples there and /metrics
    aggregates them; without it (tests, flask run) the default in-process registry is used.
    """

    _collectors: dict[str, tuple] = {}  # one set per process: an app factory may run more than once (tests)
    STAGES = {"detection": ("decode", "detect", "classify", "draw"), "classifier": ("decode", "classify")}

    def __init__(self, app: Flask, service: str, face_labels: tuple[str, ...] | list[str] = ()):
        if service not in self._collectors:
            self._collectors[service] = (
                Counter(f"{service}_http_requests_total", "HTTP requests", ["endpoint", "status"]),
                Histogram(f"{service}_http_request_seconds", "Request latency", ["endpoint"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)),
                Counter(f"{service}_faces_total", "Faces classified, by label", ["label"]),
                Histogram(f"{service}_stage_seconds", "Time per processing stage (decode, detect, classify, draw)",
                          ["stage"], buckets=STAGE_BUCKETS),
            )
        self.requests, self.latency, self.faces, self.stages = self._collectors[service]
        self.extra_collectors: list = []  # read at every scrape (add_collector)
        for label in face_labels:  # every class is listed from the start, at 0, so dashboards see all of them
            self.faces.labels(label)

        @app.before_request
        def _start_timer():
            g.started = time.perf_counter()

        @app.after_request
        def _record(response):
            endpoint = request.url_rule.rule if request.url_rule else "unmatched"
            if endpoint != "/metrics":
                self.requests.labels(endpoint, str(response.status_code)).inc()
                self.latency.labels(endpoint).observe(time.perf_counter() - g.get("started", time.perf_counter()))
            return response

        # Stage histograms exist from the start, so dashboards see every stage before its first request.
        for stage in self.STAGES.get(service, ()):
            self.stages.labels(stage)

        @app.get("/metrics")
        def metrics():
            if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
                registry = CollectorRegistry()
                multiprocess.MultiProcessCollector(registry)
                text = generate_latest(registry)
            else:
                text = generate_latest()
            if self.extra_collectors:
                extra = CollectorRegistry()
                for collector in self.extra_collectors:
                    extra.register(collector)
                text += generate_latest(extra)
            # content_type, not mimetype: CONTENT_TYPE_LATEST names its charset already
            return Response(text, content_type=CONTENT_TYPE_LATEST)

    def add_collector(self, collector) -> None:
        """A collector whose values are read when /metrics is (e.g. a queue's length from its store)."""
        self.extra_collectors.append(collector)

    @contextmanager
    def stage(self, name: str):
        """Time a block as one observation of the per-stage histogram: `with metrics.stage("decode"): ...`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stages.labels(name).observe(time.perf_counter() - started)

    def observe_frame(self, timing_ms: dict) -> None:
        """A FrameResult's detect and classify times, measured inside MaskPipeline.process."""
        for stage in ("detect", "classify"):
            if stage in timing_ms:
                self.stages.labels(stage).observe(timing_ms[stage] / 1e3)
