"""HTTP routes of the detection service."""
from __future__ import annotations

import base64

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from facemask.core.drawing import LABEL_STYLE, draw_faces, text_colour_on
from facemask.core.images import ImageError, decode_image, encode_jpeg, encode_png
from facemask.core.pipeline import MaskPipeline
from facemask.serving.service import ApiError, public_detector_config, uploaded_files

blueprint = Blueprint("detection", __name__)
ANNOTATED_FORMATS = {"jpeg": (encode_jpeg, "image/jpeg"), "jpg": (encode_jpeg, "image/jpeg"),
                     "png": (encode_png, "image/png")}


def _pipeline() -> MaskPipeline:
    return current_app.extensions["pipeline"]


def _read_upload() -> tuple[str, bytes]:
    files = uploaded_files()
    if len(files) != 1:
        raise ApiError(400, f"send exactly one image (multipart field 'image' or a raw body), got {len(files)}")
    return files[0]


def _one_image_at_a_time():
    """Held from decoding to the answer. Under the gevent worker a request waiting on the classifier lets others
    run; without this each would decode its own image meanwhile (up to 80 Mpx) and a worker's memory would grow with
    its connections. The body is read before taking it, so a slow upload does not hold it."""
    return current_app.extensions["image_slot"]


def _process_upload(name: str, data: bytes):
    metrics = current_app.extensions["metrics"]
    try:
        with metrics.stage("decode"):
            image = decode_image(data)
    except ImageError as error:
        raise ApiError(400, f"{name}: {error}") from None
    result = _pipeline().process(image)
    metrics.observe_frame(result.timing_ms)
    for face in result.faces:
        metrics.faces.labels(face.label).inc()
    return image, result


@blueprint.post("/detect")
def detect():
    """Faces with box, landmarks, detector score, label and probabilities, as JSON.

    ?annotated=1 adds the annotated JPEG as a data URL (the web page: picture and table from one pipeline run).
    """
    name, data = _read_upload()
    return detect_answer(name, data, annotated=request.args.get("annotated") == "1")


def detect_answer(name: str, data: bytes, annotated: bool):
    """The /detect answer for one photo (also the upload page's photo-from-a-URL). With the jobs store on, an
    annotated answer is kept for a link (share_url)."""
    with _one_image_at_a_time():
        image, result = _process_upload(name, data)
        body = {"filename": name, **result.to_dict()}
        if annotated:
            with current_app.extensions["metrics"].stage("draw"):
                picture = draw_faces(image, result.faces)
            del image  # the encoder makes its own full-size copy: one fewer alive at once
            body["annotated_image"] = "data:image/jpeg;base64," + base64.b64encode(encode_jpeg(picture)).decode()
    shared = current_app.extensions.get("shared_results")
    if annotated and shared is not None:
        # The upload itself too: a link's holder can then download the photo with some faces filtered out.
        original = "data:application/octet-stream;base64," + base64.b64encode(data).decode()
        body["share_url"] = shared_url(shared.keep({"kind": "photo", "name": name, "answer": body,
                                                    "original": original, "classified": not result.error}))
    # Faces are all listed even when the classifier failed (status "unclassified"); 503 says the answer is partial.
    return jsonify(body), (503 if result.error else 200)


def shared_url(result_id: str) -> str:
    return url_for("web.shared_page", result_id=result_id)


@blueprint.post("/annotate")
def annotate():
    """The image with green (mask) / red (no mask) boxes; ?format=png for lossless output."""
    image_format = request.args.get("format", "jpeg").lower()
    if image_format not in ANNOTATED_FORMATS:
        raise ApiError(400, f"unsupported format {image_format!r}: use one of {', '.join(sorted(ANNOTATED_FORMATS))}")
    name, data = _read_upload()
    with _one_image_at_a_time():
        image, result = _process_upload(name, data)
        if result.error:
            raise ApiError(503, result.error, faces=[face.to_dict() for face in result.faces])
        with current_app.extensions["metrics"].stage("draw"):
            annotated = draw_faces(image, result.faces)
        del image  # the encoder makes its own full-size copy: one fewer alive at once
        encode, mimetype = ANNOTATED_FORMATS[image_format]
        response = Response(encode(annotated), mimetype=mimetype)
    response.headers["X-Face-Counts"] = ",".join(f"{k}={v}" for k, v in sorted(result.counts.items()))
    return response


@blueprint.get("/health")
def health():
    return jsonify({"status": "ok"})


@blueprint.get("/ready")
def ready():
    # The classifier's internal address stays out of answers (issue 27); the logs and the settings have it.
    classifier_ready = _pipeline().client.is_ready()
    return jsonify({"status": "ready" if classifier_ready else "waiting for classifier"}), \
        (200 if classifier_ready else 503)


@blueprint.get("/info")
def info():
    return jsonify({"detector": public_detector_config(_pipeline().detector.config()),
                    "max_upload_bytes": current_app.config["MAX_CONTENT_LENGTH"],
                    "max_video_frames": current_app.extensions["settings"].max_video_frames,
                    "max_batch_photos": current_app.extensions["settings"].max_batch_photos,
                    "queue": bool(current_app.extensions["settings"].queue_url),
                    # What drawing.py draws, so that the page's own drawings (a filtered download) look the same.
                    "drawn_labels": {label: {"text": text, "colour": colour, "text_colour": text_colour_on(colour)}
                                     for label, (text, colour) in LABEL_STYLE.items()},
                    # The page says whether its results have links or live in the browser tab only.
                    "results_kept_h": current_app.extensions["settings"].jobs_retention_h
                    if "shared_results" in current_app.extensions else None})
