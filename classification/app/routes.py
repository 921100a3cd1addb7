"""HTTP routes of the classification service."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
from flask import Blueprint, current_app, jsonify, request

from facemask.classifier import MaskClassifier
from facemask.crops import resize_crop
from facemask.images import ImageError, decode_image, declared_pixels
from facemask.service import ApiError, uploaded_files

blueprint = Blueprint("classification", __name__)
MAX_CROPS_PER_REQUEST = int(os.environ.get("MAX_CROPS_PER_REQUEST", "256"))
# Pixel budgets, checked from the image headers before any decoding: a 10 KB PNG can declare 80 Mpx, and 8 such
# crops took 2.6 GB (issue 15). Crops are small (the detector sends 96x96); anything bigger is resized down anyway.
MAX_CROP_PIXELS = int(os.environ.get("MAX_CROP_PIXELS", "4000000"))
MAX_REQUEST_PIXELS = int(os.environ.get("MAX_REQUEST_PIXELS", "64000000"))
# A batch as one uint8 array (N, H, W, 3) in NumPy's .npy format: no PNG encoding, multipart or image decoding.
NPY_MEDIA_TYPE = "application/x-npy"
MAX_ARRAY_CROP_SIDE = 1024
OPENAPI = json.loads((Path(__file__).parent / "openapi.json").read_text())


def _classifier() -> MaskClassifier:
    return current_app.extensions["classifier"]


@blueprint.post("/classify")
def classify():
    """Classify one or many face crops: multipart files (any field name) or one raw image body.

    Every crop gets a result in upload order; a crop that is not an image gets an "error" entry instead, so one
    bad file does not cost the others their answers. 400 only when no crop at all could be read.
    A body of type application/x-npy is one uint8 array (N, H, W, 3) of RGB crops.
    """
    if request.mimetype == NPY_MEDIA_TYPE:
        return _classify_array(request.get_data(cache=False))
    files = uploaded_files()
    if not files:
        raise ApiError(400, "no image received: send multipart files or a raw image body")
    if len(files) > MAX_CROPS_PER_REQUEST:
        raise ApiError(413, f"too many crops in one request: {len(files)} > {MAX_CROPS_PER_REQUEST}")

    classifier = _classifier()
    metrics = current_app.extensions["metrics"]
    results = [{"index": index, "filename": name} for index, (name, _) in enumerate(files)]
    declared = 0
    for _, data in files:
        try:
            pixels = declared_pixels(data)
        except ImageError:
            continue  # reported with its crop below
        if pixels <= MAX_CROP_PIXELS:  # an oversized crop is refused on its own, undecoded
            declared += pixels
    if declared > MAX_REQUEST_PIXELS:
        raise ApiError(413, f"crops declare {declared:,} pixels in all, the limit per request is "
                            f"{MAX_REQUEST_PIXELS:,}: send fewer or smaller crops")

    # One crop decoded at a time and shrunk to the model input at once: memory stays flat whatever the request.
    crops, crop_slots = [], []
    with metrics.stage("decode"):
        for index, (_, data) in enumerate(files):
            try:
                crops.append(resize_crop(decode_image(data, max_pixels=MAX_CROP_PIXELS), classifier.crop_size))
                crop_slots.append(index)
            except ImageError as error:
                results[index]["error"] = str(error)
    if not crops:
        raise ApiError(400, "no readable image in the request", results=results)

    return _classified(results, crops, crop_slots)


def _classified(results: list[dict], crops, crop_slots: list[int]):
    classifier = _classifier()
    metrics = current_app.extensions["metrics"]
    with metrics.stage("classify"):
        predictions = classifier.predict(crops)
    for slot, described in zip(crop_slots, classifier.describe(predictions)):
        results[slot].update(described)
        metrics.faces.labels(described["label"]).inc()
    return jsonify({"model_version": classifier.model_version, "count": len(results),
                    "errors": len(results) - len(crops), "results": results})


def _classify_array(body: bytes):
    if not body:
        raise ApiError(400, "empty body: send one .npy array of shape (N, H, W, 3), dtype uint8")
    try:
        with current_app.extensions["metrics"].stage("decode"):
            # allow_pickle=False: a request can never make the service unpickle objects.
            batch = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ApiError(400, f"not a .npy array: {error}") from None
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
        raise ApiError(400, f"expected a uint8 array of shape (N, H, W, 3), got {batch.dtype} {list(batch.shape)}")
    count, height, width = batch.shape[:3]
    if count == 0 or height == 0 or width == 0:
        raise ApiError(400, f"array holds no crop: shape {list(batch.shape)}")
    if count > MAX_CROPS_PER_REQUEST:
        raise ApiError(413, f"too many crops in one request: {count} > {MAX_CROPS_PER_REQUEST}")
    if max(height, width) > MAX_ARRAY_CROP_SIDE:
        raise ApiError(413, f"crops of {width}x{height} px exceed {MAX_ARRAY_CROP_SIDE} px per side")
    results = [{"index": i, "filename": f"crop_{i}"} for i in range(count)]
    return _classified(results, list(batch), list(range(count)))


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
                    "max_crop_pixels": MAX_CROP_PIXELS, "max_request_pixels": MAX_REQUEST_PIXELS,
                    "max_upload_bytes": current_app.config["MAX_CONTENT_LENGTH"],
                    "crop_formats": ["multipart/form-data", NPY_MEDIA_TYPE]})


@blueprint.get("/openapi.json")
def openapi():
    return jsonify(OPENAPI)
