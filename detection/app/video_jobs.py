"""Video and batch-photo uploads of the web page: checked here, then run as jobs (facemask.jobs) by this service's
own processes (one machine) or by queue workers (FACEMASK_QUEUE_URL).

Videos take the same tracked path as infer.py (facemask.video): faces with track ids and steady labels, and a
summary of the people seen, which the job's status carries for the page. Batches are many photos (files or one
zip) annotated into one zip with a CSV and a JSON of the faces.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
from PIL import Image, UnidentifiedImageError

from facemask.core.errors import FacemaskError
from facemask.core.images import IMAGE_SUFFIXES
from facemask.core.pipeline import ClassifierUnavailable, MaskPipeline
from facemask.core.settings import Settings
from facemask.jobs.limits import JobsBusy
from facemask.jobs.local import LocalJobs
from facemask.jobs.store import JobStore, is_job_id, new_job_id
from facemask.jobs.work import BATCH_INPUT, Pipelines, photo_members, run_job
from facemask.serving.service import Metrics
from facemask.video.source import VideoSourceError, check_frame_sides

if TYPE_CHECKING:  # imported when the queue is on: one machine needs no Redis client
    from facemask.jobs.redis_queue import RedisJobs

__all__ = ["DEFAULT_MAX_VIDEO_FRAMES", "Jobs", "JobsBusy", "VideoRejected"]
DEFAULT_MAX_VIDEO_FRAMES = Settings.max_video_frames  # one minute at 30 frames/s: "a short video"
MAX_FRAME_SIDE = 16383  # what the VP8 encoder of the annotated WebM accepts
ZIP_EXPANSION = 20  # a zip may unpack to this many times the upload limit: more is a zip bomb, not photos


class VideoRejected(FacemaskError, ValueError):
    """The upload is not something this service will annotate; the message is meant for the user."""


class Jobs:
    """Submit and read jobs; the backend is the Redis queue when settings.queue_url is set, else this machine."""

    def __init__(self, pipeline: MaskPipeline, metrics: Metrics | None = None, settings: Settings | None = None):
        settings = settings or Settings()
        self.settings, self.client = settings, pipeline.client
        self.store = JobStore(settings.jobs_folder)
        self.max_frames, self.max_pixels = settings.max_video_frames, settings.max_video_pixels
        limits = (settings.jobs_retention_s, settings.max_video_jobs, settings.max_video_jobs_per_client)
        self.backend: LocalJobs | RedisJobs
        if settings.queue_url:
            from facemask.jobs.redis_queue import RedisJobs, connect

            self.backend = RedisJobs(connect(settings.queue_url), self.store, *limits)
        else:
            self.backend = LocalJobs(self.store, settings.service_bind(default_port=8000), *limits)
            # Its own clients: the request threads' client is not shared with the job thread. Every detector run
            # and classification request goes to the service's stage histogram.
            pipelines = Pipelines.build(pipeline.detector, settings.classifier_url, settings.classify_deadline_s,
                                        observe=None if metrics is None else lambda stage, ms: metrics.observe_frame(
                                            {stage: ms}))
            self.backend.start_runner(lambda kind, job_id, submitted, progress: run_job(
                kind, pipelines, self.store, job_id, submitted, self.max_pixels, progress, self.max_frames))

    @property
    def queue_on(self) -> bool:
        return bool(self.settings.queue_url)

    def submit_video(self, filename: str, data: bytes, client: str = "") -> dict:
        """Check the upload is a readable, short enough video, then queue it; raises VideoRejected otherwise,
        JobsBusy when the queue is full, and ClassifierUnavailable rather than queue a whole video of unclassified
        faces."""
        if _is_image(data):  # OpenCV would open a photo as a one-frame video
            raise VideoRejected("a photo, not a video (photos go to POST /detect)")
        self._check_classifier()
        # The suffix helps OpenCV pick a demuxer; only letters and digits of it reach the file system.
        suffix = "".join(c for c in Path(filename).suffix.lower() if c.isascii() and c.isalnum())[:7]
        return self._submit("video", lambda folder: {
            "filename": filename, "frames_done": 0,
            "frames_total": self._count_frames(_write(folder / f"input.{suffix or 'video'}", data))}, client)

    def submit_batch(self, files: list[tuple[str, bytes]], client: str = "") -> dict:
        """Many photos, or one zip of them: one job whose result is a zip. VideoRejected (a 400) for no photos,
        too many, or a zip that is not one."""
        self._check_classifier()
        return self._submit("batch", lambda folder: self._write_batch(folder / BATCH_INPUT, files), client)

    def _check_classifier(self) -> None:
        if not self.client.is_ready():
            raise ClassifierUnavailable("the classifier is not answering: try again when it is back")

    def _submit(self, kind: str, write_input, client: str) -> dict:
        job_id = new_job_id()
        folder = self.store.create(job_id)
        try:
            status = {"id": job_id, "kind": kind, "state": "queued", **write_input(folder)}
            return self.backend.submit(job_id, kind, client, status)
        except BaseException:
            self.store.remove(job_id)
            raise

    def _write_batch(self, target: Path, files: list[tuple[str, bytes]]) -> dict:
        if len(files) == 1 and zipfile.is_zipfile(io.BytesIO(files[0][1])):
            filename, data = files[0]
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    members = photo_members(archive)
                    unpacked = sum(member.file_size for member in members)
            except (zipfile.BadZipFile, OSError, ValueError) as error:
                raise VideoRejected(f"not a readable zip: {error}") from None
            if unpacked > ZIP_EXPANSION * self.settings.max_upload_bytes:
                raise VideoRejected(f"the zip unpacks to {unpacked / 1e6:.0f} MB, more than "
                                    f"{ZIP_EXPANSION} times the upload limit")
            _write(target, data)
            count = len(members)
        else:
            photos = [(name, data) for name, data in files if Path(name).suffix.lower() in IMAGE_SUFFIXES
                      or not Path(name).suffix]
            filename, count = f"{len(photos)} photos", len(photos)
            if count <= self.settings.max_batch_photos:
                with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
                    used: set[str] = set()
                    for index, (name, data) in enumerate(photos):
                        name = Path(name).name or f"photo{index}"
                        if name in used:  # two uploads of one name: both kept
                            name = f"{index}_{name}"
                        used.add(name)
                        archive.writestr(name if Path(name).suffix else name + ".jpg", data)
        if count == 0:
            raise VideoRejected("no photos found (send .jpg, .png, ... files, or a zip of them)")
        if count > self.settings.max_batch_photos:
            raise VideoRejected(f"{count} photos: the limit is {self.settings.max_batch_photos} (MAX_BATCH_PHOTOS)")
        return {"filename": filename, "photos_done": 0, "photos_total": count}

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
            check_frame_sides(width, height, MAX_FRAME_SIDE)  # the CLI's check too (facemask.video.source)
        except VideoSourceError as error:
            raise VideoRejected(str(error)) from None

    def status(self, job_id: str, kind: str) -> dict | None:
        """The job's status as the page sees it; None for an unknown or expired job, or one of another kind."""
        if not is_job_id(job_id):
            return None
        status = self.backend.status(job_id)
        return status if status is not None and status.get("kind", "video") == kind else None

    def result_file(self, job_id: str, kind: str, result: str) -> Path | None:
        status = self.status(job_id, kind)
        return self.store.result(job_id, result) if status and status["state"] == "done" else None


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _is_image(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format != "MPEG"  # Pillow identifies MPEG-1 video (.m1v, .mpg) as an image format
    except (UnidentifiedImageError, OSError, ValueError):
        return False


