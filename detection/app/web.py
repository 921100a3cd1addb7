"""The upload page (GET /) and the video and batch jobs behind its progress bars.

The page itself is static (detection/app/static: HTML, CSS and JavaScript, no framework, no CDN); photos go to
POST /detect?annotated=1, videos to POST /videos, whose progress is polled at GET /videos/<id>, and many photos at
once (files or a zip) to POST /batches, polled at GET /batches/<id>, whose result is a zip. A photo from a URL
goes to POST /fetch-photo (fetched here, detection/app/url_fetch.py). With the jobs store on, results have links
(GET /r/<id>, read by the page from GET /results/<id>).
"""
from __future__ import annotations

import contextlib
import json
import os
import unicodedata
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request, send_file, send_from_directory, url_for

from detection.app.routes import detect_answer, shared_url
from detection.app.shared_results import SharedResults
from detection.app.url_fetch import PhotoFetcher, UrlRefused
from detection.app.video_jobs import Jobs, JobsBusy, VideoRejected
from detection.app.video_people import person_thumbnails
from facemask.core.paths import REPO_ROOT
from facemask.core.pipeline import ClassifierUnavailable
from facemask.serving.service import ApiError, uploaded_files

STATIC = Path(__file__).parent / "static"
# The bundled sample photos, offered on the page as examples; a checkout has them, an installed package does not (the
# page then shows no examples).
SAMPLES = REPO_ROOT / "sample-images"
SAMPLE_SUFFIXES = (".jpg", ".webm")
MAX_NAME_LENGTH = 200
blueprint = Blueprint("web", __name__)


def _jobs() -> Jobs:
    return current_app.extensions["jobs"]


@blueprint.get("/")
def page():
    return send_from_directory(STATIC, "index.html", max_age=0)


@blueprint.get("/samples")
def sample_list():
    names = sorted(path.name for path in SAMPLES.iterdir() if path.suffix in SAMPLE_SUFFIXES) \
        if SAMPLES.is_dir() else []
    return jsonify({"samples": [{"name": name, "url": url_for("web.sample_file", name=name),
                                 "kind": "video" if name.endswith(".webm") else "photo"} for name in names]})


@blueprint.get("/samples/<name>")
def sample_file(name: str):
    if not name.endswith(SAMPLE_SUFFIXES) or not SAMPLES.is_dir():
        raise ApiError(404, f"no sample {name}")
    return send_from_directory(SAMPLES, name, max_age=3600)


@blueprint.post("/fetch-photo")
def fetch_photo():
    """{"url": "https://..."}: the service fetches the photo (public addresses only) and answers as
    POST /detect?annotated=1 does."""
    url = (request.get_json(silent=True) or {}).get("url")
    if not isinstance(url, str) or not url.strip():
        raise ApiError(400, 'send JSON {"url": "https://..."} with the address of a photo')
    settings = current_app.extensions["settings"]
    fetcher = PhotoFetcher(max_bytes=settings.max_upload_bytes, timeout_s=settings.url_fetch_timeout_s,
                           allow_loopback=settings.url_fetch_allow_loopback)
    try:
        name, data = fetcher.fetch(url)
    except UrlRefused as error:
        raise ApiError(400, str(error)) from None
    return detect_answer(_display_name(name), data, annotated=True)


def _shared() -> SharedResults | None:
    return current_app.extensions.get("shared_results")


@blueprint.get("/r/<result_id>")
def shared_page(result_id: str):
    """A result's link: the page itself, which reads the result from /results/<id>."""
    return send_from_directory(STATIC, "index.html", max_age=0)


@blueprint.get("/results/<result_id>")
def shared_result(result_id: str):
    shared = _shared()
    result = shared.get(result_id) if shared is not None else None
    if result is None:
        raise ApiError(404, "This link has expired or never existed: results are kept for "
                            f"{current_app.extensions['settings'].jobs_retention_h:g} hours, and the oldest go "
                            "first when the store is full.")
    return jsonify(result)


@blueprint.post("/results")
def share_video():
    """{"video_job": id}: a link to a finished video's card (photos get theirs with the answer)."""
    shared = _shared()
    if shared is None:
        raise ApiError(404, "results are not kept on this service (FACEMASK_JOBS_STORE is not set)")
    job_id = str((request.get_json(silent=True) or {}).get("video_job", ""))
    status = _jobs().status(job_id, "video")
    if status is None or status["state"] != "done":
        raise ApiError(404, f"no finished video job {job_id}")
    status = {**status, "video_url": url_for("web.video_result", job_id=job_id, kind="video"),
              "json_url": url_for("web.video_result", job_id=job_id, kind="json")}
    return jsonify({"share_url": shared_url(shared.keep({"kind": "video", "name": status["filename"],
                                                         "status": status}))})


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
    status = _submitted(name, lambda: _jobs().submit_video(name, data, client=_client()))
    return jsonify({**status, "status_url": url_for("web.video_status", job_id=status["id"])}), 202


@blueprint.post("/batches")
def submit_batch():
    """Queue many photos (files in any multipart field, or one zip of them) as one job whose result is a zip of the
    annotated photos with faces.csv and faces.json: 202 with the job's status and where to poll it."""
    files = [(_display_name(name), data) for name, data in uploaded_files() if data]
    if not files:
        raise ApiError(400, "send photos (multipart fields, any name) or one zip of them")
    status = _submitted("batch", lambda: _jobs().submit_batch(files, client=_client()))
    return jsonify({**status, "status_url": url_for("web.batch_status", job_id=status["id"])}), 202


def _client() -> str:
    """The peer address, or the forwarded one where FACEMASK_TRUSTED_PROXIES says how many proxies to trust
    (werkzeug's ProxyFix, installed by create_app, has already put it in remote_addr)."""
    return request.remote_addr or ""


def _submitted(name: str, submit) -> dict:
    try:
        return submit()
    except VideoRejected as error:
        raise ApiError(400, f"{name}: {error}") from None
    except JobsBusy as error:
        raise ApiError(error.status, f"{name}: {error}", headers={"Retry-After": str(error.retry_after)}) from None
    except ClassifierUnavailable as error:
        raise ApiError(503, f"{name}: {error}", headers={"Retry-After": "10"}) from None


def _display_name(name: str) -> str:
    """The upload's name as shown and offered back for download: control characters (NUL, \\x01, DEL...) made a
    Content-Disposition header gunicorn refused with an HTML 500 (issue 27); they become "_"."""
    cleaned = "".join("_" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in name)
    return cleaned[:MAX_NAME_LENGTH] or "video"


def _status_or_404(job_id: str, kind: str) -> dict:
    status = _jobs().status(job_id, kind)
    if status is None:
        hours = current_app.extensions["settings"].jobs_retention_h
        raise ApiError(404, f"no {kind} job {job_id} (finished jobs are kept for {hours:g} h)")
    return status


@blueprint.get("/videos/<job_id>")
def video_status(job_id: str):
    status = _status_or_404(job_id, "video")
    if status["state"] == "done":
        status.update(video_url=url_for("web.video_result", job_id=job_id, kind="video"),
                      json_url=url_for("web.video_result", job_id=job_id, kind="json"))
    return jsonify(status)


@blueprint.get("/videos/<job_id>/<any(video, json):kind>")
def video_result(job_id: str, kind: str):
    status = _status_or_404(job_id, "video")
    path = _jobs().result_file(job_id, "video", kind)
    if path is None:
        raise ApiError(404, f"video job {job_id} has no finished {kind}")
    stem = Path(status["filename"]).stem or "video"
    return send_file(path, mimetype="video/webm" if kind == "video" else "application/json",
                     download_name=f"{stem}_annotated.{'webm' if kind == 'video' else 'json'}", conditional=True)


@blueprint.get("/videos/<job_id>/people/<int:track_id>")
def person_thumbnail(job_id: str, track_id: int):
    """A person's face, from the frame where it is largest: blurred unless ?privacy=none."""
    mode = request.args.get("privacy", "blur")
    if mode not in ("blur", "none"):
        raise ApiError(400, f"privacy must be blur or none, got {mode!r}")
    video, record_path = _jobs().result_file(job_id, "video", "video"), _jobs().result_file(job_id, "video", "json")
    if video is None or record_path is None:
        raise ApiError(404, f"video job {job_id} has no finished video")
    cache = video.parent / f"people-{mode}"
    if not cache.is_dir():  # every person in one pass over the video, kept with the job
        thumbnails = person_thumbnails(video, json.loads(record_path.read_text()), blur=mode == "blur")
        partial = cache.with_name(f".{cache.name}.{os.getpid()}")
        partial.mkdir(exist_ok=True)
        for track, jpeg in thumbnails.items():
            (partial / f"{track}.jpg").write_bytes(jpeg)
        with contextlib.suppress(OSError):  # another worker got there first
            partial.rename(cache)
    path = cache / f"{track_id}.jpg"
    if not path.is_file():
        raise ApiError(404, f"no person #{track_id} in video job {job_id}")
    return Response(path.read_bytes(), mimetype="image/jpeg", headers={"Cache-Control": "max-age=3600"})


@blueprint.get("/batches/<job_id>")
def batch_status(job_id: str):
    status = _status_or_404(job_id, "batch")
    if status["state"] == "done":
        status["zip_url"] = url_for("web.batch_result", job_id=job_id)
    return jsonify(status)


@blueprint.get("/batches/<job_id>/zip")
def batch_result(job_id: str):
    status = _status_or_404(job_id, "batch")
    path = _jobs().result_file(job_id, "batch", "zip")
    if path is None:
        raise ApiError(404, f"batch job {job_id} has no finished zip")
    stem = Path(status["filename"]).stem.replace(" ", "_") or "photos"
    return send_file(path, mimetype="application/zip", download_name=f"{stem}_annotated.zip", as_attachment=True,
                     conditional=True)
