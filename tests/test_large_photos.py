"""Large photos at full resolution (issue 23): the tile pass, its merging across tiles, and a 12 MP photo through the
service and the CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import requests

from bench.large_photos import PEAK_OF_CHILD, TWELVE_MP, build_mosaic, crowd_photo, crowd_scores
from facemask.core.detector import (
    TILE_ABOVE,
    TILE_EDGE_MARGIN,
    DetectOptions,
    RetinaFaceDetector,
    off_inner_edges,
    tile_spans,
)
from facemask.core.images import decode_image, encode_jpeg
from facemask.core.paths import REPO_ROOT
from facemask.core.results import FaceResult, NotClassified

GIB = 1024 ** 3


@pytest.fixture(scope="module")
def detector():
    return RetinaFaceDetector()


@pytest.fixture(scope="module")
def crowd():
    """The 6x6 crowd of sample-images/group_small_faces.jpg (3360x2328, 216 faces 35-50 px wide)."""
    return crowd_photo()


def test_tiles_cover_a_large_photo_with_overlap_and_leave_ordinary_ones_alone():
    options = DetectOptions()
    tiles = options.tiles(3000, 4000)
    covered = np.zeros((3000, 4000), bool)
    for x1, y1, x2, y2 in tiles:
        assert x2 - x1 <= options.tile_size and y2 - y1 <= options.tile_size
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    for spans in (tile_spans(4000, 1280, 192), tile_spans(3000, 1280, 192)):
        assert all(end - next_start >= 192 for (_, end), (next_start, _) in zip(spans, spans[1:]))
    assert len(tiles) == 12  # 4 x 3: the fewest that fit, not a grid of full tiles and slivers
    assert options.tiles(TILE_ABOVE, TILE_ABOVE) == [] and options.tiles(886, 1280) == []
    assert DetectOptions(tile_size=None).tiles(3000, 4000) == []
    assert DetectOptions(long_side=1024).tiles(3000, 4000) == []  # a fixed single pass (video) is never tiled
    with pytest.raises(ValueError):
        DetectOptions(tile_size=256, tile_overlap=200)


def test_photos_beyond_the_pixel_cap_are_tiled_shrunk_to_it():
    options = DetectOptions()
    assert options.tile_scale(3000, 4000) == 1.0
    scale = options.tile_scale(8900, 8900)  # the decoding limit, 80 Mpx
    assert scale == pytest.approx((options.tile_max_pixels / 8900 ** 2) ** 0.5)
    tiles = options.tiles(8900, 8900)
    network_pixels = sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in tiles) * scale ** 2
    assert network_pixels < 1.5 * options.tile_max_pixels  # the cost stops growing at the cap
    assert all(max(x2 - x1, y2 - y1) * scale <= options.tile_size + 1 for x1, y1, x2, y2 in tiles)


def test_boxes_on_a_tiles_inner_edges_are_left_to_its_neighbours():
    tile = (1000, 0, 2000, 1000)  # inner edges: left (x 1000), right (x 2000), bottom (y 1000); top is the border
    boxes = np.array([[1002, 100, 1060, 160],    # touches the left inner edge: maybe a cut face
                      [1500, 0, 1560, 50],       # on the photo's top border: kept
                      [1940, 500, 1996, 560],    # touches the right inner edge
                      [1500, 950, 1560, 998],    # touches the bottom inner edge
                      [1500, 500, 1560, 560]],   # well inside
                     np.float32)
    assert off_inner_edges(boxes, tile, 3000, 4000).tolist() == [False, True, False, False, True]
    assert TILE_EDGE_MARGIN > 0


def test_ordinary_photos_take_the_path_they_took_before(detector, sample_paths):
    photo = decode_image(sample_paths[0])  # 1280x886
    before = detector.detect(photo, DetectOptions(tile_size=None))
    now = detector.detect(photo)
    assert [f.box.tolist() for f in now] == [f.box.tolist() for f in before]


def test_every_face_of_a_crowd_is_one_box_faces_on_tile_edges_included(detector, crowd):
    image, centres, labels = crowd
    faces = detector.detect(image)
    unclassified = [FaceResult.from_prediction(f.box, f.landmarks, f.det_score, NotClassified("-")) for f in faces]
    scores = crowd_scores(unclassified, centres, labels)
    assert scores["found"] >= 0.95 * len(labels)
    assert scores["faces with several boxes"] == 0 and scores["boxes on no face"] == 0
    # Faces that a tile edge cuts: each is still exactly one box (crowd_scores counts one box per centre).
    edges = {x for x1, _, x2, _ in DetectOptions().tiles(*image.shape[:2]) for x in (x1, x2)} - {0, image.shape[1]}
    on_edges = [f for f in faces if any(f.box[0] < edge < f.box[2] for edge in edges)]
    assert len(on_edges) >= 5
    # Before issue 23 the same crowd lost most of its faces.
    assert len(detector.detect(image, DetectOptions(tile_size=None))) < 0.5 * len(labels)


def test_the_benchmarks_mosaic_puts_each_photo_where_its_offset_says(sample_paths):
    photo = decode_image(sample_paths[0])
    photos = [photo[:300 + 40 * i, :400 + 30 * (i % 3)] for i in range(9)]  # several sizes, tall ones among them
    mosaic, offsets = build_mosaic(photos, 3)
    for piece, (x, y) in zip(photos, offsets):
        assert np.array_equal(mosaic[y:y + piece.shape[0], x:x + piece.shape[1]], piece)
    assert mosaic.shape[0] * mosaic.shape[1] < 1.3 * sum(p.shape[0] * p.shape[1] for p in photos)


@pytest.fixture(scope="module")
def twelve_megapixels():
    image, centres, labels = crowd_photo(TWELVE_MP)
    assert 11.9e6 <= image.shape[0] * image.shape[1] <= 12.1e6
    return encode_jpeg(image), centres, labels


@pytest.mark.slow  # a 12 MP photo: seconds of tiled detection
def test_a_12_mp_photo_through_the_service_within_its_limits(detection_service, twelve_megapixels):
    body, centres, labels = twelve_megapixels
    response = requests.post(detection_service.url + "/detect", params={"annotated": "1"},
                             files={"image": ("crowd.jpg", body, "image/jpeg")}, timeout=120)
    assert response.status_code == 200, response.text[:300]
    result = response.json()
    assert (result["width"], result["height"]) == (4162, 2883)
    faces = [FaceResult.from_dict(face) for face in result["faces"]]
    assert all(face.status == "classified" for face in faces)
    assert crowd_scores(faces, centres, labels)["found"] >= 0.95 * len(labels)
    assert result["annotated_image"].startswith("data:image/jpeg;base64,")
    assert max(detection_service.worker_peak_rss()) < 1 * GIB


@pytest.mark.slow  # a 12 MP photo: seconds of tiled detection
def test_a_12_mp_photo_through_the_cli_within_1_gb(classifier_service, twelve_megapixels, tmp_path):
    body, centres, labels = twelve_megapixels
    photo = tmp_path / "crowd.jpg"
    photo.write_bytes(body)
    run = subprocess.run([sys.executable, "-c", PEAK_OF_CHILD, sys.executable, "infer.py", "--is_image",
                          "--no-local-classifier", "--classifier-url", classifier_service.url, "--in_path", str(photo),
                          "--out_path", str(tmp_path / "out")], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-500:]
    assert int(run.stdout.strip().splitlines()[-1]) * 1024 < 1 * GIB  # peak resident memory of infer.py
    faces = [FaceResult.from_dict(face) for face in json.loads((tmp_path / "out" / "crowd.json").read_text())["faces"]]
    assert crowd_scores(faces, centres, labels)["found"] >= 0.95 * len(labels)
    assert decode_image(tmp_path / "out" / "crowd.jpg").shape[:2] == (2883, 4162)
