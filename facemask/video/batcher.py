"""Several video streams on one detector: each stream's thread asks for its frame's faces, and one thread runs the
detector once for all the frames asked for meanwhile (issue 38).

    batcher = DetectorBatcher(create_detector(providers=("cuda", "cpu")))   # batched() on a GPU provider
    pipelines = [MaskPipeline(batcher.stream_detector(**VIDEO_DETECT_OPTIONS), client) for _ in cameras]
    ...                                                                        # one VideoAnnotator per camera
    batcher.close()

On a GPU a batch of 16 640x480 frames costs little more than one frame (the card is mostly idle on one small
image); on a CPU batching gains nothing, so the CPU detector runs a batch's frames one after another, and the
batcher only spares the streams' threads from competing for the detector. Batches form by themselves: while one
runs, the frames asked for meanwhile queue up and become the next (max_wait_s > 0 also waits for more, adding that
much latency to a lone frame).
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from facemask.core.detector import GPU_MAX_BATCH, DetectOptions, PyramidFaceDetector
from facemask.core.results import Face


@dataclass
class _Request:
    image: np.ndarray
    options: DetectOptions
    result: Future = field(default_factory=Future)


class DetectorBatcher:
    """Runs `detector` on one thread of its own for the frames of many streams, up to max_batch frames a run."""

    def __init__(self, detector: PyramidFaceDetector, max_batch: int = GPU_MAX_BATCH, max_wait_s: float = 0.0):
        self.detector, self.max_batch, self.max_wait_s = detector, max_batch, max_wait_s
        self.batches_run = self.frames_run = 0
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="detector-batcher", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, image_rgb: np.ndarray, options: DetectOptions | None = None) -> Future:
        """A Future of the faces in one RGB frame (detect()'s answer), run with the next batch."""
        if self._closed:
            raise RuntimeError("the detector batcher is closed")
        request = _Request(image_rgb, options or self.detector.options)
        self._requests.put(request)
        return request.result

    def stream_detector(self, **options) -> "StreamDetector":
        """A detector for one stream's pipeline (these DetectOptions fields changed) whose frames join the batches."""
        return StreamDetector(self, self.detector.with_options(**options).options)

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        batch, deadline = [first], time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                wait = deadline - time.monotonic()
                request = self._requests.get(timeout=wait) if wait > 0 else self._requests.get_nowait()
            except queue.Empty:
                break
            if request is None:
                return batch, True
            batch.append(request)
        return batch, False

    def _serve(self) -> None:
        closing = False
        while not closing:
            first = self._requests.get()
            if first is None:
                return
            batch, closing = self._gather(first)
            by_options: dict[DetectOptions, list[_Request]] = {}
            for request in batch:
                by_options.setdefault(request.options, []).append(request)
            for options, requests in by_options.items():
                try:
                    found = self.detector.detect_batch([request.image for request in requests], options)
                except Exception as error:  # handed to each caller, whose stream decides; the batcher serves on
                    for request in requests:
                        request.result.set_exception(error)
                    continue
                self.batches_run, self.frames_run = self.batches_run + 1, self.frames_run + len(requests)
                for request, faces in zip(requests, found):
                    request.result.set_result(faces)

    def close(self) -> None:
        """Finish the frames already asked for, then stop the thread."""
        if not self._closed:
            self._closed = True
            self._requests.put(None)
            self._thread.join()

    def __enter__(self) -> "DetectorBatcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StreamDetector(PyramidFaceDetector):
    """One stream's detector: detect() hands the frame to a DetectorBatcher and waits for its batch."""

    def __init__(self, batcher: DetectorBatcher, options: DetectOptions):
        self.batcher, self.options = batcher, options
        self.model_source, self.session = batcher.detector.model_source, batcher.detector.session

    def detect_batch(self, images_rgb: list[np.ndarray], options: DetectOptions | None = None) -> list[list[Face]]:
        results = [self.batcher.submit(image, options or self.options) for image in images_rgb]
        return [result.result() for result in results]
