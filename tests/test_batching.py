"""The detector's batches (issue 38): the tiles of a large photo and the frames of several streams in one network
run give exactly the faces one run each gives, on the CPU provider; the stream batcher gathers frames from threads."""
from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from facemask.core.detector import GPU_MAX_BATCH, GPU_SHAPE_MULTIPLE, create_detector
from facemask.core.errors import OptionError
from facemask.core.images import decode_image
from facemask.core.paths import REPO_ROOT
from facemask.core.results import Face
from facemask.video.batcher import DetectorBatcher
from facemask.video.loop import VIDEO_DETECT_OPTIONS

SAMPLE = REPO_ROOT / "sample-images" / "group_mixed.jpg"


@pytest.fixture(scope="module")
def detector():
    return create_detector()


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """640x480 views of a group photo, as a panning camera sees it."""
    photo = decode_image(SAMPLE)
    return [cv2.resize(photo[i * 20:i * 20 + 300, i * 30:i * 30 + 400], (640, 480)) for i in range(6)]


def _same(faces: list[Face], others: list[Face]) -> bool:
    return len(faces) == len(others) and all(
        np.array_equal(a.box, b.box) and a.det_score == b.det_score and np.array_equal(a.landmarks, b.landmarks)
        for a, b in zip(faces, others))


def test_frames_in_one_batch_find_exactly_what_one_run_each_finds(detector, frames):
    one_by_one = detector.batched(1, GPU_SHAPE_MULTIPLE).with_options(**VIDEO_DETECT_OPTIONS)
    together = detector.batched(GPU_MAX_BATCH, GPU_SHAPE_MULTIPLE).with_options(**VIDEO_DETECT_OPTIONS)
    alone = [one_by_one.detect(frame) for frame in frames]
    assert sum(map(len, alone)) >= 6
    assert all(_same(a, b) for a, b in zip(alone, together.detect_batch(frames)))


def test_the_tiles_of_a_large_photo_in_batches_find_exactly_what_one_run_each_finds(detector):
    photo = decode_image(SAMPLE)
    large = cv2.resize(np.tile(photo, (2, 2, 1)), (2600, 1800))  # 6 tiles beside the two pyramid passes
    assert len(detector.options.tiles(*large.shape[:2])) >= 4
    default = detector.detect(large)
    assert len(default) >= 12
    assert _same(default, detector.batched(4, 32).detect(large))  # the default padding, batches of 4 tiles
    assert _same(detector.batched(1, GPU_SHAPE_MULTIPLE).detect(large),
                 detector.batched(GPU_MAX_BATCH, GPU_SHAPE_MULTIPLE).detect(large))


def test_the_cpu_default_runs_one_pass_at_a_time_as_before(detector):
    assert (detector.max_batch, detector.shape_multiple) == (1, 32)
    with pytest.raises(OptionError):
        detector.batched(0)
    with pytest.raises(OptionError):
        detector.batched(8, 100)


def test_the_stream_batcher_gathers_frames_of_many_streams_into_fewer_runs(detector, frames):
    expected = [detector.with_options(**VIDEO_DETECT_OPTIONS).detect(frame) for frame in frames]
    results: dict[tuple[int, int], list[Face]] = {}
    streams, rounds = 6, 3
    start = threading.Barrier(streams)
    with DetectorBatcher(detector, max_batch=GPU_MAX_BATCH, max_wait_s=0.05) as batcher:
        def stream(number: int) -> None:
            camera = batcher.stream_detector(**VIDEO_DETECT_OPTIONS)
            for round_ in range(rounds):
                start.wait()
                results[number, round_] = camera.detect(frames[number])

        threads = [threading.Thread(target=stream, args=(number,)) for number in range(streams)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert batcher.frames_run == streams * rounds == len(results)
    assert batcher.batches_run < streams * rounds  # frames asked for together ran together
    assert all(_same(faces, expected[number]) for (number, _), faces in results.items())
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(frames[0])


def test_a_stream_detector_is_a_detector_for_a_pipeline(detector, frames):
    with DetectorBatcher(detector) as batcher:
        camera = batcher.stream_detector(long_side=320)
        assert camera.config()["long_side"] == 320 and camera.model_source == detector.model_source
        assert _same(camera.detect(frames[0]), detector.with_options(long_side=320).detect(frames[0]))
        half = camera.with_options(score_threshold=0.9)  # a copy, still batched, the stream's own left as it was
        assert half.batcher is batcher and camera.options.score_threshold == detector.options.score_threshold
        with pytest.raises(ValueError, match="expected an RGB image"):  # the caller's error, the batcher serves on
            camera.detect(frames[0][..., 0])
        assert _same(camera.detect(frames[1]), detector.with_options(long_side=320).detect(frames[1]))


@pytest.mark.gpu
def test_on_cuda_batches_find_what_single_runs_find_and_the_batcher_serves_streams(frames):
    """On the GPU the detector batches by default; the batched faces match one run each (GPU kernels may pick other
    algorithms per batch size: boxes within a pixel, scores within 1e-3) and the batcher's match direct calls."""
    detector = create_detector(providers=("cuda", "cpu")).with_options(**VIDEO_DETECT_OPTIONS)
    assert detector.max_batch == GPU_MAX_BATCH
    alone = [detector.batched(1, GPU_SHAPE_MULTIPLE).detect(frame) for frame in frames]
    together = detector.detect_batch(frames)
    for faces, others in zip(alone, together):
        assert len(faces) == len(others)
        for a, b in zip(faces, others):
            assert np.abs(a.box - b.box).max() < 1.0 and abs(a.det_score - b.det_score) < 1e-3
    with DetectorBatcher(detector, max_wait_s=0.02) as batcher:
        futures = [batcher.submit(frame) for frame in frames]
        served = [future.result() for future in futures]
    assert batcher.batches_run < len(frames) and [len(f) for f in served] == [len(f) for f in together]
