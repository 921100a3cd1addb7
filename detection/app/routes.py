"""HTTP routes of the detection service."""
from __future__ import annotations

import base64

from flask import Blueprint, Response, current_app, jsonify, request

from facemask.drawing import draw_faces
from facemask.images import ImageError, decode_image, encode_jpeg, encode_png
from facemask.pipeline import MaskPipeline
from facemask.service import ApiError, uploaded_files

blueprint = Blueprint("detection", __name__)


def _pipeline() -> MaskPipeline:
    return current_app.extensions["pipeline"]


def _process_upload():
    files = uploaded_files()
    if len(files) != 1:
        raise ApiError(400, f"send exactly one image (multipart field 'image' or a raw body), got {len(files)}")
    name, data = files[0]
    metrics = current_app.extensions["metrics"]
    try:
        with metrics.stage("decode"):
            image = decode_image(data)
    except ImageError as error:
        raise ApiError(400, f"{name}: {error}") from None
    result = _pipeline().process(image)
    metrics.observe_frame(result.timing_ms)
    for face in result.faces:
        metrics.faces.labels(face["label"]).inc()
    return name, image, result


@blueprint.post("/detect")
def detect():
    """Faces with box, landmarks, detector score, label and probabilities, as JSON.

    ?annotated=1 adds the annotated JPEG as a data URL (the web page: picture and table from one pipeline run).
    """
    name, image, result = _process_upload()
    body = {"filename": name, **result.to_dict()}
    if request.args.get("annotated") == "1":
        with current_app.extensions["metrics"].stage("draw"):
            annotated = draw_faces(image, result.faces)
        body["annotated_image"] = "data:image/jpeg;base64," + base64.b64encode(encode_jpeg(annotated)).decode()
    # Faces are all listed even when the classifier failed (status "unclassified"); 503 says the answer is partial.
    return jsonify(body), (503 if result.error else 200)


@blueprint.post("/annotate")
def annotate():
    """The image with green (mask) / red (no mask) boxes; ?format=png for lossless output."""
    name, image, result = _process_upload()
    if result.error:
        raise ApiError(503, result.error, faces=result.faces)
    with current_app.extensions["metrics"].stage("draw"):
        annotated = draw_faces(image, result.faces)
    as_png = request.args.get("format", "jpeg").lower() == "png"
    response = Response(encode_png(annotated) if as_png else encode_jpeg(annotated),
                        mimetype="image/png" if as_png else "image/jpeg")
    response.headers["X-Face-Counts"] = ",".join(f"{k}={v}" for k, v in sorted(result.counts.items()))
    return response


@blueprint.get("/health")
def health():
    return jsonify({"status": "ok"})


@blueprint.get("/ready")
def ready():
    classifier_ready = _pipeline().client.is_ready()
    body = {"status": "ready" if classifier_ready else "waiting for classifier",
            "classifier_url": _pipeline().client.url}
    return jsonify(body), (200 if classifier_ready else 503)


@blueprint.get("/info")
def info():
    pipeline = _pipeline()
    return jsonify({"detector": pipeline.detector.config(), "classifier_url": pipeline.client.url,
                    "max_upload_bytes": current_app.config["MAX_CONTENT_LENGTH"]})
