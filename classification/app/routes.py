"""HTTP routes of the classification service."""
from __future__ import annotations

import json
import os
from pathlib import Path

from flask import Blueprint, current_app, jsonify

from facemask.classifier import MaskClassifier
from facemask.images import ImageError, decode_image
from facemask.service import ApiError, uploaded_files

blueprint = Blueprint("classification", __name__)
MAX_CROPS_PER_REQUEST = int(os.environ.get("MAX_CROPS_PER_REQUEST", "256"))
OPENAPI = json.loads((Path(__file__).parent / "openapi.json").read_text())


def _classifier() -> MaskClassifier:
    return current_app.extensions["classifier"]


@blueprint.post("/classify")
def classify():
    """Classify one or many face crops: multipart files (any field name) or one raw image body.

    Every crop gets a result in upload order; a crop that is not an image gets an "error" entry instead, so one
    bad file does not cost the others their answers. 400 only when no crop at all could be read.
    """
    files = uploaded_files()
    if not files:
        raise ApiError(400, "no image received: send multipart files or a raw image body")
    if len(files) > MAX_CROPS_PER_REQUEST:
        raise ApiError(413, f"too many crops in one request: {len(files)} > {MAX_CROPS_PER_REQUEST}")

    metrics = current_app.extensions["metrics"]
    results, crops, crop_slots = [], [], []
    with metrics.stage("decode"):
        for index, (name, data) in enumerate(files):
            results.append({"index": index, "filename": name})
            try:
                crops.append(decode_image(data))
                crop_slots.append(index)
            except ImageError as error:
                results[index]["error"] = str(error)
    if not crops:
        raise ApiError(400, "no readable image in the request", results=results)

    classifier = _classifier()
    with metrics.stage("classify"):
        predictions = classifier.predict(crops)
    for slot, described in zip(crop_slots, classifier.describe(predictions)):
        results[slot].update(described)
        metrics.faces.labels(described["label"]).inc()
    return jsonify({"model_version": classifier.model_version, "count": len(results),
                    "errors": len(results) - len(crops), "results": results})


@blueprint.get("/health")
def health():
    return jsonify({"status": "ok"})


@blueprint.get("/ready")
def ready():
    classifier = current_app.extensions.get("classifier")
    if classifier is None:
        return jsonify({"status": "loading"}), 503
    return jsonify({"status": "ready", "model_version": classifier.model_version})


@blueprint.get("/info")
def info():
    return jsonify({**_classifier().info(), "max_crops_per_request": MAX_CROPS_PER_REQUEST,
                    "max_upload_bytes": current_app.config["MAX_CONTENT_LENGTH"]})


@blueprint.get("/openapi.json")
def openapi():
    return jsonify(OPENAPI)
