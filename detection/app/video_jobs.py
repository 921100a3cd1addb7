"""Video uploads from the web page: annotated in the background, progress readable by any worker of the service.

Videos take the same tracked path as infer.py (facemask.video.loop): faces with track ids and steady labels, and a
summary of the people seen, which the job's status carries for the page.

A job lives in its own folder (input, status.json, annotated .webm, JSON record). Status goes through files, not
memory, because gunicorn's workers are separate processes and the page's progress polls may reach any of them.
Each worker annotates one video at a time (a one-thread executor); more uploads wait their turn as "queued".
"""
from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
from PIL import Image, UnidentifiedImageError

from facemask.cli.runner import InputError, annotate_video
from facemask.core.detector import PyramidFaceDetector
from facemask.core.errors import FacemaskError
from facemask.core.pipeline import ClassifierClient, ClassifierUnavailable, MaskPipeline
from facemask.core.settings import Settings
from facemask.core.timing import TimedClassifier, TimedDetector
from facemask.serving.service import Metrics, public_detector_config
from facemask.video.loop import VIDEO_DETECT_OPTIONS
from facemask.video.source import VideoSourceError, check_frame_sides

DEFAULT_MAX_VIDEO_FRAMES = Settings.max_video_frames  # one minute at 30 frames/s: "a short video"
LOG = logging.getLogger("facemask.detection")  # under the package logger, which create_app configures
JOB_LIFETIME_S = 3600
JOB_ID_LENGTH = 32
KEPT_FINISHED_JOBS = 50  # finished jobs beyond this many are removed, oldest first: the folder's size stays bounded
MAX_FRAME_SIDE = 16383  # what the VP8 encoder of the annotated WebM accepts
# Larger frames are annotated at Full HD: a 4K video kept 25 MB frames queued between decoding, analysis and output
# and took a worker past 1 GB (bench.robustness); the detector sees at most 1024 px of a frame anyway.
ANNOTATED_PIXELS = 1920 * 1080
ACTIVE = ("queued", "running")


class VideoRejected(FacemaskError, ValueError):
    """The upload is not a video this service will annotate; the message is meant for the user."""


class JobsBusy(RuntimeError):
    """Too many video jobs queued, for this client (429) or in all (503); retry_after in seconds."""

    def __init__(self, status: int, message: str, retry_after: int):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


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
                 max_frames: int | None = None, settings: Settings | None = None):
        settings = settings or Settings()
        # Its own client: the request threads' client is not shared with this background thread. One retry, not
        # three: a classifier that dies mid-video should not add seconds of back-off to every remaining frame.
        client = pipeline.client
        if isinstance(client, ClassifierClient):
            client = ClassifierClient(client.url, retries=1, deadline=client.deadline)

        def observe(stage: str, milliseconds: float) -> None:
            """Each detector run and classification request goes to the service's stage histogram; after a
            detector run the worker's requests get their turn."""
            if metrics is not None:
                metrics.observe_frame({stage: milliseconds})
            if stage == "detect":
                _let_requests_run()

        # The video path's scale: each frame at its own size, never upscaled, as infer.py does.
        detector = pipeline.detector
        if isinstance(detector, PyramidFaceDetector):
            detector = detector.with_options(**VIDEO_DETECT_OPTIONS)
        self.pipeline = MaskPipeline(TimedDetector(detector, observe), TimedClassifier(client, observe))
        self.folder = Path(folder or settings.video_jobs_folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_frames = max_frames or settings.max_video_frames
        self.max_pixels = settings.max_video_pixels
        self.max_jobs, self.max_jobs_per_client = settings.max_video_jobs, settings.max_video_jobs_per_client
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="video-job")
        self.worker = _process_token(os.getpid())

    def submit(self, filename: str, data: bytes, client: str = "") -> dict:
        """Check the upload is a readable, short enough video, then queue it; raises VideoRejected otherwise,
        JobsBusy when the queue is full, and ClassifierUnavailable rather than queue a whole video of unclassified
        faces."""
        if _is_image(data):  # OpenCV would open a photo as a one-frame video
            raise VideoRejected("a photo, not a video (photos go to POST /detect)")
        if not self.pipeline.client.is_ready():
            raise ClassifierUnavailable("the classifier is not answering: try again when it is back")
        # Every worker process takes jobs: the count and the new job's folder are made under one lock on the folder.
        with open(self.folder / ".submit.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._check_queue(client)
            job_id = uuid.uuid4().hex
            folder = self.folder / job_id
            folder.mkdir()
            (folder / "client").write_text(client)
            self._write_status(job_id, {"id": job_id, "filename": filename, "state": "checking",
                                        "worker": self.worker})
        # The suffix helps OpenCV pick a demuxer; only letters and digits of it reach the file system.
        suffix = "".join(c for c in Path(filename).suffix.lower() if c.isascii() and c.isalnum())[:7]
        source = folder / f"input.{suffix or 'video'}"
        try:
            source.write_bytes(data)
            frames_total = self._count_frames(source)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        status = {"id": job_id, "filename": filename, "state": "queued", "frames_done": 0,
                  "frames_total": frames_total}
        self._write_status(job_id, {**status, "worker": self.worker})
        self.executor.submit(self._run, job_id, source, filename, frames_total)
        return status

    def _check_queue(self, client: str) -> None:
        jobs = self._jobs()
        active = [job for job in jobs if job["state"] in (*ACTIVE, "checking")]
        retry_after = 30 * max(1, len(active))  # a short video takes tens of seconds
        mine = sum(1 for job in active if self._client_of(job["id"]) == client)
        if mine >= self.max_jobs_per_client:
            raise JobsBusy(429, f"{mine} of your videos are still waiting or being annotated (the limit is "
                                f"{self.max_jobs_per_client}): send more when they are done", retry_after)
        if len(active) >= self.max_jobs:
            raise JobsBusy(503, f"{len(active)} videos are waiting or being annotated, the most this service "
                                "queues: try again later", retry_after)
        finished = sorted((job for job in jobs if job["state"] not in (*ACTIVE, "checking")),
                          key=lambda job: job["mtime"])
        for job in finished[:max(0, len(finished) - KEPT_FINISHED_JOBS + 1)]:
            shutil.rmtree(self.folder / job["id"], ignore_errors=True)

    def _client_of(self, job_id: str) -> str | None:
        try:
            return (self.folder / job_id / "client").read_text()
        except OSError:
            return None

    def _jobs(self) -> list[dict]:
        """Every job's status (stale ones marked failed, expired ones removed), with its folder's mtime."""
        cutoff, jobs = time.time() - JOB_LIFETIME_S, []
        for folder in self.folder.iterdir():
            if not folder.is_dir() or self._job_folder(folder.name) is None:
                continue
            try:
                mtime = folder.stat().st_mtime
                if mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
                    continue
                status = self.status(folder.name)
            except (OSError, ValueError):  # removed meanwhile, or a status being replaced
                continue
            if status is not None:
                jobs.append({**status, "mtime": mtime})
        return jobs

    def _count_frames(self, source: Path) -> int:
        capture = cv2.VideoCapture(str(source))
        try:
            # The container's frame size first: refused without decoding a frame (8000x8000: 192 MB each).
            # A file OpenCV cannot open declares no size (-1 or 0): it is "not a video", not a size problem.
            declared = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            if capture.isOpened() and min(declared) > 0:
                self._check_frame_size(*declared)
            ok, frame = capture.read() if capture.isOpened() else (False, None)
            if not ok or frame is None:
                raise VideoRejected("not a video (format not recognised, empty or corrupt)")
            height, width = frame.shape[:2]
            self._check_frame_size(width, height)
            del frame
            frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            if frames <= 0:
                # Raw streams (H.263, MJPEG) have no frame count: OpenCV reported a huge negative number, which
                # let a 9,000-frame stream through as one frame (issue 27). Counted here, up to the limit.
                frames = 1
                while frames <= self.max_frames and capture.grab():
                    frames += 1
        finally:
            capture.release()
        if frames > self.max_frames:
            more = "more than " if frames == self.max_frames + 1 else ""
            raise VideoRejected(f"video too long: {more}{frames} frames, the limit is {self.max_frames} "
                                "(MAX_VIDEO_FRAMES)")
        return frames

    def _check_frame_size(self, width: int, height: int) -> None:
        if width * height > self.max_pixels:
            raise VideoRejected(f"video frames too large: {width}x{height} pixels, the limit is "
                                f"{self.max_pixels:,} (MAX_VIDEO_PIXELS)")
        try:
            check_frame_sides(width, height, MAX_FRAME_SIDE)  # the CLI's check too (facemask.video_source)
        except VideoSourceError as error:
            raise VideoRejected(str(error)) from None

    def _run(self, job_id: str, source: Path, filename: str, frames_total: int) -> None:
        folder = source.parent
        status = {"id": job_id, "filename": filename, "state": "running", "frames_done": 0,
                  "frames_total": frames_total}
        self._write_status(job_id, {**status, "worker": self.worker})
        last_written = [0.0]

        def on_frame(done: int, total: int | None) -> None:
            if time.monotonic() - last_written[0] > 0.25:  # status.json a few times a second, not every frame
                last_written[0] = time.monotonic()
                self._write_status(job_id, {**status, "frames_done": done,
                                            "frames_total": max(done, total or frames_total), "worker": self.worker})

        try:
            summary = annotate_video(self.pipeline, source, folder / "annotated.webm", on_frame=on_frame,
                                     max_pixels=self.max_pixels, shrink_to_pixels=ANNOTATED_PIXELS,
                                     max_frames=self.max_frames)
        except (InputError, cv2.error, OSError) as error:
            message = str(error).replace(str(source), filename).replace(str(folder) + os.sep, "")  # no server paths
            LOG.warning("video job %s (%s) failed: %s", job_id, filename, message)
            self._write_status(job_id, {**status, "state": "failed", "error": message})
            (folder / "annotated.webm").unlink(missing_ok=True)
            return
        finally:
            source.unlink(missing_ok=True)
        record_path = folder / "annotated.json"
        record = json.loads(record_path.read_text())
        record.pop("classifier_url", None)
        record.update(source=filename, output=Path(filename).stem + "_annotated.webm",  # no server paths
                      detector=public_detector_config(record.get("detector", {})))
        record_path.write_text(json.dumps(record))
        classifier_errors = list(summary.classifier_errors.values())
        LOG.info("video job %s (%s) done: %d frame(s), people %s, %d classifier error(s)", job_id, filename,
                 record["frames_total"], summary.people, len(classifier_errors))
        self._write_status(job_id, {
            **status, "state": "done", "frames_done": record["frames_total"], "frames_total": record["frames_total"],
            "counts": summary.counts, "people": summary.people,
            "frames_with_faces": sum(1 for frame in record["frames"] if frame["faces"]),
            "classifier_errors": len(classifier_errors), **({"warnings": summary.warnings} if summary.warnings else {}),
            **({"error": classifier_errors[0]} if classifier_errors else {})})

    def status(self, job_id: str) -> dict | None:
        """The job's status as the page sees it; a queued or running job whose worker process is gone (killed,
        or stopped by a restart) is marked failed here, so that nothing polls it for ever."""
        folder = self._job_folder(job_id)
        path = folder / "status.json" if folder else None
        if not (path and path.is_file()):
            return None
        status = json.loads(path.read_text())
        worker = status.pop("worker", None)
        if status["state"] in (*ACTIVE, "checking") and worker is not None and not _process_alive(worker):
            status = {**status, "state": "failed",
                      "error": "the service stopped before this video was annotated: please upload it again"}
            LOG.warning("video job %s: its worker is gone, marked failed", job_id)
            self._write_status(job_id, status)
        return status

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
        temporary = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        temporary.write_text(json.dumps(status))
        temporary.replace(path)  # readers never see half a file


def _process_token(pid: int) -> str:
    """Host, pid and start time of a process: a pid reused later by another process does not pass for it."""
    try:
        started = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        started = "?"
    return f"{socket.gethostname()}:{pid}:{started}"


def _process_alive(token: str) -> bool:
    """False only for a process of this host that is gone; a job folder shared by several hosts keeps theirs."""
    host, pid, started = token.rsplit(":", 2)
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return started == "?" or _process_token(int(pid)) == token


def _is_image(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format != "MPEG"  # Pillow identifies MPEG-1 video (.m1v, .mpg) as an image format
    except (UnidentifiedImageError, OSError, ValueError):
        return False
