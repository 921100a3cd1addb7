"""The upload page (GET /) and the video jobs behind its progress bar.

The page itself is static (detection/app/static: HTML, CSS and JavaScript, no framework, no CDN); photos go to
POST /detect?annotated=1, videos to POST /videos, whose progress is polled at GET /videos/<id>.
"""
from __future__ import annotations

import unicodedata
from pathlib import Path

from flask import Blueprint, current_app, jsonify, request, send_file, send_from_directory, url_for

from detection.app.video_jobs import JobsBusy, VideoJobs, VideoRejected
from facemask.core.paths import REPO_ROOT
from facemask.core.pipeline import ClassifierUnavailable
from facemask.serving.service import ApiError, uploaded_files

STATIC = Path(__file__).parent / "static"
# The bundled sample photos, offered on the page as examples; a checkout has them, an installed package does not (the
# page then shows no examples).
SAMPLES = REPO_ROOT / "sample-images"
MAX_NAME_LENGTH = 200
blueprint = Blueprint("web", __name__)


def _jobs() -> VideoJobs:
    return current_app.extensions["video_jobs"]


@blueprint.get("/")
def page():
    return send_from_directory(STATIC, "index.html", max_age=0)


@blueprint.get("/samples")
def sample_list():
    names = sorted(path.name for path in SAMPLES.glob("*.jpg")) if SAMPLES.is_dir() else []
    return jsonify({"samples": [{"name": name, "url": url_for("web.sample_file", name=name)} for name in names]})


@blueprint.get("/samples/<name>")
def sample_file(name: str):
    if not name.endswith(".jpg") or not SAMPLES.is_dir():
        raise ApiError(404, f"no sample photo {name}")
    return send_from_directory(SAMPLES, name, max_age=3600)


@blueprint.post("/videos")
def submit_video():
    """Queue one video for annotation: 202 with the job's status and where to poll it."""
    files = uploaded_files()
    if len(files) != 1:
        raise ApiError(400, f"send exactly one video (multipart field 'video' or a raw body), got {len(files)}")
    name, data = files[0]
    name = _display_name(name)
    if not data:
        raise ApiError(400, f"{name}: empty file")
    try:
        status = _jobs().submit(name, data, client=request.remote_addr or "")
    except VideoRejected as error:
        raise ApiError(400, f"{name}: {error}") from None
    except JobsBusy as error:
        raise ApiError(error.status, f"{name}: {error}", headers={"Retry-After": str(error.retry_after)}) from None
    except ClassifierUnavailable as error:
        raise ApiError(503, f"{name}: {error}", headers={"Retry-After": "10"}) from None
    return jsonify({**status, "status_url": url_for("web.video_status", job_id=status["id"])}), 202


def _display_name(name: str) -> str:
    """The upload's name as shown and offered back for download: control characters (NUL, \\x01, DEL...) made a
    Content-Disposition header gunicorn refused with an HTML 500 (issue 27); they become "_"."""
    cleaned = "".join("_" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in name)
    return cleaned[:MAX_NAME_LENGTH] or "video"


@blueprint.get("/videos/<job_id>")
def video_status(job_id: str):
    status = _jobs().status(job_id)
    if status is None:
        raise ApiError(404, f"no video job {job_id} (jobs are kept for an hour)")
    if status["state"] == "done":
        status.update(video_url=url_for("web.video_result", job_id=job_id, kind="video"),
                      json_url=url_for("web.video_result", job_id=job_id, kind="json"))
    return jsonify(status)


@blueprint.get("/videos/<job_id>/<any(video, json):kind>")
def video_result(job_id: str, kind: str):
    path, status = _jobs().result_file(job_id, kind), _jobs().status(job_id)
    if path is None or status is None:  # status: None if the job expired in between
        raise ApiError(404, f"video job {job_id} has no finished {kind}")
    stem = Path(status["filename"]).stem or "video"
    return send_file(path, mimetype="video/webm" if kind == "video" else "application/json",
                     download_name=f"{stem}_annotated.{'webm' if kind == 'video' else 'json'}", conditional=True)
