"""HTTP routes of the classification service."""
from __future__ import annotations

import io
import json
import tokenize
from pathlib import Path

import numpy as np
from flask import Blueprint, current_app, jsonify, request

from facemask.core.classifier import MaskClassifier
from facemask.core.crops import resize_crop
from facemask.core.images import ImageError, declared_pixels, decode_image
from facemask.core.settings import Settings
from facemask.serving.service import ApiError, request_body, uploaded_files

blueprint = Blueprint("classification", __name__)
# Pixel budgets (Settings.max_crop_pixels, max_request_pixels) are checked from the image headers before any
# decoding: a 10 KB PNG can declare 80 Mpx, and 8 such crops took 2.6 GB (issue 15). Crops are small (the detector
# sends 96x96); anything bigger is resized down anyway.
# A batch as one uint8 array (N, H, W, 3) in NumPy's .npy format: no PNG encoding, multipart or image decoding.
NPY_MEDIA_TYPE = "application/x-npy"
MAX_ARRAY_CROP_SIDE = 1024
OPENAPI = json.loads((Path(__file__).parent / "openapi.json").read_text())


def _classifier() -> MaskClassifier:
    return current_app.extensions["classifier"]


def _settings() -> Settings:
    return current_app.extensions["settings"]


@blueprint.post("/classify")
def classify():
    """Classify one or many face crops: multipart files (any field name) or one raw image body.

    Every crop gets a result in upload order; a crop that is not an image gets an "error" entry instead, so one
    bad file does not cost the others their answers. 400 only when no crop at all could be read.
    A body of type application/x-npy is one uint8 array (N, H, W, 3) of RGB crops.
    """
    if request.mimetype == NPY_MEDIA_TYPE:
        return _classify_array(request_body())
    limits = _settings()
    files = uploaded_files()
    if not files:
        raise ApiError(400, "no image received: send multipart files or a raw image body")
    if len(files) > limits.max_crops_per_request:
        raise ApiError(413, f"too many crops in one request: {len(files)} > {limits.max_crops_per_request}")

    classifier = _classifier()
    metrics = current_app.extensions["metrics"]
    results = [{"index": index, "filename": name} for index, (name, _) in enumerate(files)]
    declared = 0
    for _, data in files:
        try:
            pixels = declared_pixels(data)
        except ImageError:
            continue  # reported with its crop below
        if pixels <= limits.max_crop_pixels:  # an oversized crop is refused on its own, undecoded
            declared += pixels
    if declared > limits.max_request_pixels:
        raise ApiError(413, f"crops declare {declared:,} pixels in all, the limit per request is "
                            f"{limits.max_request_pixels:,}: send fewer or smaller crops")

    # One crop decoded at a time and shrunk to the model input at once: memory stays flat whatever the request.
    crops, crop_slots = [], []
    with metrics.stage("decode"):
        for index, (_, data) in enumerate(files):
            try:
                crops.append(resize_crop(decode_image(data, max_pixels=limits.max_crop_pixels), classifier.crop_size))
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
    for slot, classification in zip(crop_slots, classifier.describe(predictions)):
        results[slot].update(classification.to_dict())
        metrics.faces.labels(classification.label).inc()
    return jsonify({"model_version": classifier.model_version, "count": len(results),
                    "errors": len(results) - len(crops), "results": results})


def _classify_array(body: bytes):
    if not body:
        raise ApiError(400, "empty body: send one .npy array of shape (N, H, W, 3), dtype uint8")
    stream = io.BytesIO(body)
    try:
        # The header alone first: np.load allocates what the header declares, and a 100-byte body declaring
        # (1, 100000, 100000, 3) raised MemoryError (a 500). The array is then read only when it is all there.
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(np.lib.format.read_magic(stream))
        if read_header is None:
            raise ValueError("unsupported .npy format version (1.0 and 2.0 are read)")
        shape, fortran_order, dtype = read_header(stream)
    except (ValueError, OSError, EOFError) as error:
        raise ApiError(400, f"not a .npy array: {error}") from None
    except (SyntaxError, tokenize.TokenError):  # NumPy tokenizes the header text: one cut short raised TokenError
        raise ApiError(400, "not a .npy array: the header is malformed (its text is not a complete Python dict "
                            "literal, e.g. cut short)") from None
    if dtype.hasobject:
        raise ApiError(400, "not a .npy array of numbers: pickled objects are refused")
    if dtype != np.uint8 or len(shape) != 4 or shape[3] != 3 or fortran_order:
        order = " (Fortran order)" if fortran_order else ""
        raise ApiError(400, f"expected a uint8 array of shape (N, H, W, 3) in C order, got {dtype} "
                            f"{list(shape)}{order}")
    count, height, width = shape[:3]
    if min(count, height, width) <= 0:
        raise ApiError(400, f"array holds no crop: shape {list(shape)}")
    limit = _settings().max_crops_per_request
    if count > limit:
        raise ApiError(413, f"too many crops in one request: {count} > {limit}")
    if max(height, width) > MAX_ARRAY_CROP_SIDE:
        raise ApiError(413, f"crops of {width}x{height} px exceed {MAX_ARRAY_CROP_SIDE} px per side")
    declared = count * height * width * 3
    if len(body) - stream.tell() != declared:
        raise ApiError(400, f"not a .npy array: the header declares {list(shape)} ({declared:,} bytes), the body "
                            f"holds {len(body) - stream.tell():,}")
    with current_app.extensions["metrics"].stage("decode"):
        batch = np.frombuffer(body, dtype=np.uint8, offset=stream.tell()).reshape(shape)
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
    limits = _settings()
    return jsonify({**_classifier().info(), "max_crops_per_request": limits.max_crops_per_request,
                    "max_crop_pixels": limits.max_crop_pixels, "max_request_pixels": limits.max_request_pixels,
                    "max_upload_bytes": current_app.config["MAX_CONTENT_LENGTH"],
                    "crop_formats": ["multipart/form-data", NPY_MEDIA_TYPE]})


@blueprint.get("/openapi.json")
def openapi():
    return jsonify(OPENAPI)
