"""Video uploads from the web page: annotated in the background, progress readable by any worker of the service.

Videos take the same tracked path as infer.py (facemask.video): faces with track ids and steady labels, and a
summary of the people seen, which the job's status carries for the page.

A job lives in its own folder (input, status.json, annotated .webm, JSON record). Status goes through files, not
memory, because gunicorn's workers are separate processes and the page's progress polls may reach any of them.
Each worker annotates one video at a time (a one-thread executor); more uploads wait their turn as "queued".
"""
from __future__ import annotations

import io
import json
import logging
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
from PIL import Image, UnidentifiedImageError

from facemask.detector import Face, PyramidFaceDetector
from facemask.errors import FacemaskError
from facemask.pipeline import ClassifierClient, ClassifierUnavailable, MaskPipeline
from facemask.runner import InputError, annotate_video
from facemask.service import Metrics
from facemask.settings import Settings
from facemask.video import VIDEO_DETECT_OPTIONS

DEFAULT_MAX_VIDEO_FRAMES = Settings.max_video_frames  # one minute at 30 frames/s: "a short video"
LOG = logging.getLogger("facemask.detection")  # under the package logger, which create_app configures
JOB_LIFETIME_S = 3600
JOB_ID_LENGTH = 32


class VideoRejected(FacemaskError, ValueError):
    """The upload is not a video this service will annotate; the message is meant for the user."""


class _VideoDetector:
    """The service's detector with the video path's scale (each frame at its own size, never upscaled, as infer.py
    does), every run's time added to the service's stage histogram."""

    def __init__(self, detector: PyramidFaceDetector, metrics: Metrics | None):
        self.detector, self.metrics = detector.with_options(**VIDEO_DETECT_OPTIONS), metrics

    def detect(self, image_rgb) -> list[Face]:
        started = time.perf_counter()
        faces = self.detector.detect(image_rgb)
        if self.metrics is not None:
            self.metrics.observe_frame({"detect": (time.perf_counter() - started) * 1e3})
        _let_requests_run()
        return faces

    def config(self) -> dict:
        return self.detector.config()


class _TimedClient(ClassifierClient):
    """Adds every classification request's time to the service's stage histogram."""

    def __init__(self, url: str, metrics: Metrics | None, **settings):
        super().__init__(url, **settings)
        self.metrics = metrics

    def classify(self, crops):
        started = time.perf_counter()
        try:
            return super().classify(crops)
        finally:
            if self.metrics is not None and crops:
                self.metrics.observe_frame({"classify": (time.perf_counter() - started) * 1e3})


def _let_requests_run() -> None:
    """Under gunicorn's gevent worker this job "thread" is a greenlet: a video without faces never waits on the
    classifier, so without this it would hold the worker's requests and heartbeat for the whole video. idle() waits
    until every ready request has had its turn (sleep(0) does not poll the sockets)."""
    try:
        from gevent import idle, monkey
    except ImportError:
        return
    if monkey.is_module_patched("threading"):
        idle()


class VideoJobs:
    def __init__(self, pipeline: MaskPipeline, metrics: Metrics | None = None, folder: Path | None = None,
                 max_frames: int | None = None):
        # Its own client: the request threads' client is not shared with this background thread. One retry, not
        # three: a classifier that dies mid-video should not add seconds of back-off to every remaining frame.
        self.pipeline = MaskPipeline(_VideoDetector(pipeline.detector, metrics),  # type: ignore[arg-type]  # duck
                                     _TimedClient(pipeline.client.url, metrics, retries=1,
                                                  deadline=pipeline.client.deadline))
        self.folder = Path(folder or Settings().video_jobs_folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_frames = max_frames or DEFAULT_MAX_VIDEO_FRAMES
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="video-job")

    def submit(self, filename: str, data: bytes) -> dict:
        """Check the upload is a readable, short enough video, then queue it; raises VideoRejected otherwise, and
        ClassifierUnavailable rather than queue a whole video of unclassified faces."""
        if _is_image(data):  # OpenCV would open a photo as a one-frame video
            raise VideoRejected("a photo, not a video (photos go to POST /detect)")
        if not self.pipeline.client.is_ready():
            raise ClassifierUnavailable(f"the classifier at {self.pipeline.client.url} is not answering: "
                                        "try again when it is back")
        self._remove_old_jobs()
        job_id = uuid.uuid4().hex
        folder = self.folder / job_id
        folder.mkdir()
        # The suffix helps OpenCV pick a demuxer; only letters and digits of it reach the file system.
        suffix = "".join(c for c in Path(filename).suffix.lower() if c.isascii() and c.isalnum())[:7]
        source = folder / f"input.{suffix or 'video'}"
        source.write_bytes(data)
        try:
            frames_total = self._count_frames(source)
        except VideoRejected:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        status = {"id": job_id, "filename": filename, "state": "queued", "frames_done": 0,
                  "frames_total": frames_total}
        self._write_status(job_id, status)
        self.executor.submit(self._run, job_id, source, filename, frames_total)
        return status

    def _count_frames(self, source: Path) -> int:
        capture = cv2.VideoCapture(str(source))
        try:
            if not capture.isOpened() or not capture.read()[0]:
                raise VideoRejected("not a video (format not recognised, empty or corrupt)")
            frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            capture.release()
        if frames > self.max_frames:
            raise VideoRejected(f"video too long: {frames} frames, the limit is {self.max_frames} (MAX_VIDEO_FRAMES)")
        return max(frames, 1)

    def _run(self, job_id: str, source: Path, filename: str, frames_total: int) -> None:
        folder = source.parent
        status = {"id": job_id, "filename": filename, "state": "running", "frames_done": 0,
                  "frames_total": frames_total}
        self._write_status(job_id, status)
        last_written = [0.0]

        def on_frame(done: int, total: int | None) -> None:
            if time.monotonic() - last_written[0] > 0.25:  # status.json a few times a second, not every frame
                last_written[0] = time.monotonic()
                self._write_status(job_id, {**status, "frames_done": done, "frames_total": total or frames_total})

        try:
            summary = annotate_video(self.pipeline, source, folder / "annotated.webm", on_frame=on_frame)
        except (InputError, cv2.error, OSError) as error:
            message = str(error).replace(str(source), filename)  # the user's file name, not the server's path
            LOG.warning("video job %s (%s) failed: %s", job_id, filename, message)
            self._write_status(job_id, {**status, "state": "failed", "error": message})
            return
        finally:
            source.unlink(missing_ok=True)
        record_path = folder / "annotated.json"
        record = json.loads(record_path.read_text())
        record.update(source=filename, output=Path(filename).stem + "_annotated.webm")  # no server paths
        record_path.write_text(json.dumps(record))
        classifier_errors = list(summary.classifier_errors.values())
        LOG.info("video job %s (%s) done: %d frame(s), people %s, %d classifier error(s)", job_id, filename,
                 record["frames_total"], summary.people, len(classifier_errors))
        self._write_status(job_id, {
            **status, "state": "done", "frames_done": record["frames_total"], "frames_total": record["frames_total"],
            "counts": summary.counts, "people": summary.people,
            "frames_with_faces": sum(1 for frame in record["frames"] if frame["faces"]),
            "classifier_errors": len(classifier_errors),
            **({"error": classifier_errors[0]} if classifier_errors else {})})

    def status(self, job_id: str) -> dict | None:
        folder = self._job_folder(job_id)
        path = folder / "status.json" if folder else None
        return json.loads(path.read_text()) if path and path.is_file() else None

    def result_file(self, job_id: str, kind: str) -> Path | None:
        folder = self._job_folder(job_id)
        path = folder / {"video": "annotated.webm", "json": "annotated.json"}[kind] if folder else None
        return path if path and path.is_file() and (self.status(job_id) or {}).get("state") == "done" else None

    def _job_folder(self, job_id: str) -> Path | None:
        # Job ids are uuid4 hex strings; anything else never reaches the file system.
        if len(job_id) != JOB_ID_LENGTH or any(c not in "0123456789abcdef" for c in job_id):
            return None
        return self.folder / job_id

    def _write_status(self, job_id: str, status: dict) -> None:
        path = self.folder / job_id / "status.json"
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(status))
        temporary.replace(path)  # readers never see half a file

    def _remove_old_jobs(self) -> None:
        cutoff = time.time() - JOB_LIFETIME_S
        for folder in self.folder.iterdir():
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)


def _is_image(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)):
            return True
    except (UnidentifiedImageError, OSError, ValueError):
        return False
