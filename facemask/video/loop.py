"""Video files, cameras and streams: faces with identities, steady labels and a per-video people count.

Per frame: the detector runs on every k-th frame (and whenever the picture changes abruptly, e.g. a cut); in
between, optical flow moves the faces along (facemask.video.tracking). Every face is handed to the tracker every frame,
so each one carries a track_id. Tracks are classified when they appear, while they have fewer than a few votes,
periodically, and when their crop changes a lot (facemask.video.tracks); classification runs on a background thread
and overlaps with the next frames' detection, and a frame is written once the classifications it asked for are
back, so output labels are deterministic for a given input.

The units: video_source (files, cameras, streams; decoding ahead), video_tracks (people, when to classify, labels,
counts), this module (the frame analysis and the stream loop), video_output (the video file and its JSON record),
video_summary (what a run reports).
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from facemask.core.crops import CropGeometry
from facemask.core.pipeline import Classified, FaceClassifier, MaskPipeline
from facemask.core.results import Faces
from facemask.video.output import FinishedFrame, FrameWriter, JsonFramesWriter, VideoOutputError
from facemask.video.source import ReadAhead, VideoSource, VideoSourceError, describe_source
from facemask.video.summary import StageTimes, VideoRun, VideoSummary
from facemask.video.tracking import FaceTracker, TrackedFace, follow_faces, to_gray
from facemask.video.tracks import FrameTracks, Track, TrackBook, VideoSettings

# Callers import these from here, as from the one module this was.
__all__ = ["VIDEO_DETECT_OPTIONS", "VIDEO_LONG_SIDE", "FinishedFrame", "JsonFramesWriter", "Track", "VideoAnnotator",
           "VideoOutputError", "VideoSettings", "VideoSource", "VideoSourceError", "annotate_stream",
           "describe_source"]

# Video frames are analysed at their own size up to this long side, never upscaled: measured on the synthetic
# videos (bench/video_tracking.py), upscaling 640x480 frames to 1024 px found 3 % more faces but tripled the false
# positives (large boxes on clothing and backgrounds) and cost 3x the time.
VIDEO_LONG_SIDE = 1024
VIDEO_DETECT_OPTIONS: dict[str, Any] = {"long_side": VIDEO_LONG_SIDE, "upscale": False}  # DetectOptions fields


@dataclass
class _Pending:
    """A frame analysed but not yet written: it waits for the classifications it asked for."""

    index: int
    image: np.ndarray
    tracks: FrameTracks  # its faces by person, whether each was confirmed then, the people it asked about
    detected: bool
    job: Future | None = None


class FrameGeometry:
    """The crop geometry of one frame, asked of the classifier (FaceClassifier.geometry) only when the frame's first
    crop is cut; `unavailable` then says why the classifier cannot be reached (None when it can, or when no crop was
    cut). TrackBook.observe calls it; the annotator reads `unavailable` from it, not from state of its own."""

    def __init__(self, classifier: FaceClassifier):
        self.classifier = classifier
        self.answer: tuple[CropGeometry, str | None] | None = None

    def __call__(self) -> CropGeometry:
        if self.answer is None:
            self.answer = self.classifier.geometry()
        return self.answer[0]

    @property
    def unavailable(self) -> str | None:
        return self.answer[1] if self.answer else None


class VideoAnnotator:
    """Feed frames in order with `push`; finished frames come back in order (annotated image + frame record, whose
    faces are Faces)."""

    def __init__(self, pipeline: MaskPipeline, fps: float, settings: VideoSettings | None = None):
        self.pipeline, self.fps = pipeline, fps
        self.settings = settings or VideoSettings()
        self.tracker = FaceTracker(max_missing_frames=max(2, round(self.settings.max_missing_s * fps)))
        self.book = TrackBook(self.settings, fps)
        self.pending: deque[_Pending] = deque()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="classify")
        self.index, self.detector_runs, self.crops_classified = 0, 0, 0
        self.previous_gray: np.ndarray | None = None
        self.previous_small: np.ndarray | None = None
        self.faces: list[TrackedFace] = []
        self.errors: dict[str, str] = {}  # why the classifier gave no answer, by frame ("frame 12")
        self.timing = StageTimes()

    def push(self, image_rgb: np.ndarray) -> list[FinishedFrame]:
        self.pending.append(self._analyse(image_rgb))
        finished = []
        while len(self.pending) > self.settings.classify_lag or (self.pending and self._ready(self.pending[0])):
            finished.append(self._finish(self.pending.popleft()))
        return finished

    def gap(self) -> None:
        """The next frame does not follow the last one (a camera came back after an outage, seconds later, perhaps
        moved): optical flow between the two would send boxes astray and start new tracks on faces that stood
        still. The next frame is detected afresh and each face matched to a track by where it was last seen."""
        self.previous_gray = self.previous_small = None

    def flush(self) -> list[FinishedFrame]:
        finished = [self._finish(self.pending.popleft()) for _ in range(len(self.pending))]
        self.executor.shutdown(wait=True)
        return finished

    @staticmethod
    def _ready(pending: _Pending) -> bool:
        return pending.job is None or pending.job.done()

    def _analyse(self, image: np.ndarray) -> _Pending:
        settings, index = self.settings, self.index
        self.index += 1
        started = time.perf_counter()
        gray = to_gray(image)
        small = cv2.resize(gray, (64, 48), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        cut = self.previous_small is None or small.shape != self.previous_small.shape or \
            float(np.abs(small - self.previous_small).mean()) > settings.scene_change
        detect = cut or index % settings.detect_every == 0
        if self.previous_gray is not None and self.previous_gray.shape != gray.shape:
            self.faces = []  # the picture changed size: nothing to follow, the detector starts afresh
        followed = follow_faces(self.previous_gray, gray, self.faces) if self.previous_gray is not None \
            and self.faces else []
        self.timing.follow += time.perf_counter() - started
        started = time.perf_counter()
        if detect:
            faces = [TrackedFace(box=f.box, landmarks=f.landmarks, det_score=f.det_score, detected=True)
                     for f in self.pipeline.detector.detect(image)]
            self.detector_runs += 1
            self.timing.detect += time.perf_counter() - started
        else:
            faces = followed
        started = time.perf_counter()
        self.tracker.update(faces, predicted={face.track_id: face.box for face in followed
                                              if face.track_id is not None})
        if detect:
            faces += self.book.coasting(followed, faces)
        self.previous_gray, self.previous_small, self.faces = gray, small, faces

        geometry = FrameGeometry(self.pipeline.classifier)
        frame = self.book.observe(faces, image, index, geometry)
        job = None
        if frame.crops:
            job = self.executor.submit(self.pipeline.classifier.classify, frame.crops, geometry.unavailable)
            self.crops_classified += len(frame.crops)
        self.timing.track += time.perf_counter() - started
        return _Pending(index, image, frame, detect, job)

    def _finish(self, pending: _Pending) -> FinishedFrame:
        started = time.perf_counter()
        if pending.job is not None:
            classified: Classified = pending.job.result()
            if classified.error is not None:
                self.errors[f"frame {pending.index}"] = classified.error
            for track_id, prediction in zip(pending.tracks.targets, classified.predictions):
                self.book.classified(track_id, prediction)
        self.timing.classify_wait += time.perf_counter() - started
        faces = Faces.from_rows(self.book.face_result(face, confirmed)
                                for face, confirmed in zip(pending.tracks.faces, pending.tracks.confirmed))
        shown = faces.filter(confirmed=True)
        labels = shown.label
        record = {"frame": pending.index, "time_s": round(pending.index / self.fps, 3), "detected": pending.detected,
                  "faces": faces, "counts": {label: labels.count(label) for label in sorted(set(labels))}}
        return FinishedFrame(pending.image, shown, record)

    def summary(self) -> VideoSummary:
        people, tracks = self.book.summary()
        return VideoSummary(people, tracks, self.detector_runs, self.crops_classified, replace(self.timing))


def annotate_stream(pipeline: MaskPipeline, source: VideoSource, out_path: Path, settings: VideoSettings,
                    header: dict, should_stop: Callable[[], str | None] = lambda: None,
                    progress: Callable[[int], None] = lambda n: None) -> VideoRun:
    """Annotate every frame of `source` into out_path (+ .json next to it); returns the footer written there.

    Decoding, analysis (detect, follow, track; classification on its own thread) and output (draw, encode, JSON)
    run on three threads, so a frame is decoded and another written while one is analysed.
    should_stop() returning a reason (e.g. "SIGTERM") ends the run cleanly: frames in flight are finished, the
    video file is closed and the JSON is complete for the frames done.
    """
    annotator = VideoAnnotator(pipeline, source.fps, settings)
    record = JsonFramesWriter(out_path.with_suffix(".json"), {**header, "fps": source.fps,
                                                              "settings": asdict(settings)})
    stopped, started, size = None, time.perf_counter(), None
    reader = ReadAhead(source.frames(), annotator.timing)
    output = FrameWriter(out_path, source.fps, record, annotator.timing, progress)
    try:
        for image in reader:
            size = size or (image.shape[1], image.shape[0])
            if (image.shape[1], image.shape[0]) != size:  # a stream may change resolution; the file cannot
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            output.put(annotator.push(image))
            stopped = should_stop()
            if stopped:
                break
    finally:
        try:
            reader.stop()
            output.put(annotator.flush())
        finally:
            try:
                output.close()
            finally:
                source.close()
                footer = VideoRun(frames_total=output.written, unreadable_frames=source.unreadable,
                                  interrupted=stopped, wall_s=round(time.perf_counter() - started, 2),
                                  classifier_errors=annotator.errors, summary=annotator.summary(),
                                  warnings=source.warnings)
                record.close(footer.to_dict())
    return footer
