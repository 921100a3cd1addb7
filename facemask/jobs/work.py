"""What a job does, whichever runs it (a detection process or a queue worker): its input is in its folder of the
store, its outputs are written in a fresh work folder and moved next to the input only once complete, so a
killed attempt leaves no half output and a retried job ends with exactly one."""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from facemask.core.detector import PyramidFaceDetector
from facemask.core.drawing import draw_faces
from facemask.core.errors import FacemaskError
from facemask.core.images import IMAGE_SUFFIXES, ImageError, decode_image, encode_jpeg
from facemask.core.pipeline import ClassifierClient, MaskPipeline
from facemask.core.protocols import Classifier, Detector
from facemask.core.timing import Observer, TimedClassifier, TimedDetector
from facemask.jobs.store import RESULT_FILES, JobStore
from facemask.serving.service import public_detector_config
from facemask.video.loop import VIDEO_DETECT_OPTIONS, annotate_stream
from facemask.video.output import VideoOutputError, decodes
from facemask.video.source import VideoSource, VideoSourceError
from facemask.video.tracks import VideoSettings

LOG = logging.getLogger("facemask.jobs")
# Larger frames are annotated at Full HD: a 4K video kept 25 MB frames queued between decoding, analysis and output
# and took a worker past 1 GB (bench.robustness); the detector sees at most 1024 px of a frame anyway.
ANNOTATED_PIXELS = 1920 * 1080
BATCH_INPUT = "input.zip"
Progress = Callable[[int, int], None]  # (done, total)


class JobFailed(FacemaskError):
    """The job's input cannot be annotated; the message is meant for the user (no server paths)."""


@dataclass
class Pipelines:
    """The pipelines a job runs on: videos with the video path's detector scale (each frame at its own size, never
    upscaled, as infer.py does), photos with the photo path's. One classifier retry for videos, not three: a
    classifier that dies mid-video should not add seconds of back-off to every remaining frame."""

    video: MaskPipeline
    photos: MaskPipeline

    @classmethod
    def build(cls, detector: Detector, classifier_url: str, deadline: float,
              observe: Observer | None = None) -> "Pipelines":
        """observe(stage, ms): every detector run and classification request (a service's stage histogram)."""
        video_detector = (detector.with_options(**VIDEO_DETECT_OPTIONS) if isinstance(detector, PyramidFaceDetector)
                          else detector)

        def pipeline(detector: Detector, classifier: Classifier) -> MaskPipeline:
            if observe is None:
                return MaskPipeline(detector, classifier)
            return MaskPipeline(TimedDetector(detector, observe), TimedClassifier(classifier, observe))

        return cls(pipeline(video_detector, ClassifierClient(classifier_url, retries=1, deadline=deadline)),
                   pipeline(detector, ClassifierClient(classifier_url, deadline=deadline)))


def warm_up(pipelines: Pipelines) -> None:
    """A tiny blank video through the whole video path (no faces, so no classification), in a process that forks
    its jobs: what the first job pays once (ONNX Runtime's first runs, the WebM encoder, lazy imports) then costs
    nothing per job. Measured: 2.0 s for a 10-frame job in a fresh work horse, against 0.6 s in a warm process."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="facemask-warm-up-") as folder:
        clip = Path(folder) / "blank.avi"
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 10, (320, 240))
        for _ in range(3):
            writer.write(np.zeros((240, 320, 3), np.uint8))
        writer.release()
        settings = VideoSettings()
        annotate_stream(pipelines.video, VideoSource(str(clip)), Path(folder) / "blank.webm", settings, {})
        pipelines.photos.process(np.zeros((240, 320, 3), np.uint8))
    for pipeline in (pipelines.video, pipelines.photos):
        session = getattr(pipeline.client, "session", None)
        if session is not None:  # no kept-alive connection may be shared by the forked jobs
            session.close()


def video_input(folder: Path) -> Path:
    return next(path for path in folder.glob("input.*") if path.is_file())


def run_job(kind: str, pipelines: Pipelines, store: JobStore, job_id: str, submitted: dict, max_pixels: int,
            progress: Progress, max_frames: int | None = None) -> dict:
    """The job's final status: submitted's fields with state "done" and the result's summary, or state "failed"
    and the reason. Its input is removed either way; an exception other than these (the classifier client's
    bugs, a full disk) is the caller's to report. max_frames: a video longer than this fails, whatever its header
    said at upload."""
    folder, work = store.folder(job_id), store.fresh_work_folder(job_id)
    started = time.monotonic()
    try:
        if kind == "video":
            result = _annotate_video(pipelines.video, video_input(folder), work, submitted, max_pixels, max_frames,
                                     progress)
        else:
            result = _annotate_batch(pipelines.photos, folder / BATCH_INPUT, work, max_pixels, progress)
    except JobFailed as error:
        LOG.warning("%s job %s (%s) failed: %s", kind, job_id, submitted.get("filename"), error)
        _remove_input(folder)
        return {**submitted, "state": "failed", "error": str(error)}
    for name in RESULT_FILES.values():
        if (work / name).is_file():
            os.replace(work / name, folder / name)
    work.rmdir()
    _remove_input(folder)
    LOG.info("%s job %s (%s) done in %.1f s", kind, job_id, submitted.get("filename"), time.monotonic() - started)
    return {**submitted, "state": "done", **result}


def _remove_input(folder: Path) -> None:
    for path in [*folder.glob("input.*"), folder / "work"]:
        if path.is_dir():
            for child in path.iterdir():
                child.unlink(missing_ok=True)
            path.rmdir()
        else:
            path.unlink(missing_ok=True)


def _annotate_video(pipeline: MaskPipeline, source: Path, work: Path, submitted: dict, max_pixels: int,
                    max_frames: int | None, progress: Progress) -> dict:
    """The tracked video path of infer.py (facemask.video): an annotated WebM and its JSON record."""
    filename, frames_total = submitted["filename"], submitted["frames_total"]
    output, settings, done = work / RESULT_FILES["video"], VideoSettings(), [0]

    def advance(count: int) -> None:
        done[0] += count
        progress(done[0], max(done[0], frames_total))  # past the header's count: the file holds more (issue 35)

    try:
        video = VideoSource(str(source), max_pixels=max_pixels, shrink_to_pixels=ANNOTATED_PIXELS,
                            max_frames=max_frames)
        # The record names the upload and the public model file, never the server's paths or the classifier's URL.
        header = {"source": filename, "source_kind": video.kind, "output": Path(filename).stem + "_annotated.webm",
                  "detect_every": settings.detect_every,
                  "detector": public_detector_config(pipeline.detector.config())}
        footer = annotate_stream(pipeline, video, output, settings, header, progress=advance)
    except (VideoSourceError, VideoOutputError, cv2.error, OSError) as error:
        raise JobFailed(str(error).replace(str(source), filename).replace(str(work) + os.sep, "")) from None
    if footer.frames_total == 0:
        raise JobFailed("the video has no readable frames")
    if not decodes(output):  # an encoder can take frames and write a file no player reads (2x2 VP8, issue 35)
        raise JobFailed("the annotated video cannot be read back: the encoder wrote no playable frame")
    record = json.loads((work / RESULT_FILES["json"]).read_text())
    classifier_errors = list(footer.classifier_errors.values())
    people = footer.summary.people.to_dict()
    return {"frames_done": footer.frames_total, "frames_total": footer.frames_total,
            "counts": dict(people["by_label"]), "people": people,
            "frames_with_faces": sum(1 for frame in record["frames"] if frame["faces"]),
            "classifier_errors": len(classifier_errors), **({"warnings": footer.warnings} if footer.warnings else {}),
            **({"error": classifier_errors[0]} if classifier_errors else {})}


def photo_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The photos of an uploaded zip, in its order: files with a photo's suffix, not macOS's resource forks."""
    return [member for member in archive.infolist()
            if not member.is_dir() and Path(member.filename).suffix.lower() in IMAGE_SUFFIXES
            and not any(part.startswith(("__MACOSX", ".")) for part in Path(member.filename).parts)]


CSV_FIELDS = ["photo", "face", "label", "score", "det_score", "x1", "y1", "x2", "y2", "status", "error"]


def _annotate_batch(pipeline: MaskPipeline, source: Path, work: Path, max_pixels: int, progress: Progress) -> dict:
    """A zip of the annotated photos (annotated/<name>_annotated.jpg), faces.csv (a row per face) and faces.json
    (every photo's faces, or why it was skipped)."""
    records: list[dict] = []
    rows: list[dict] = []
    counts: dict[str, int] = {}
    used_names: set[str] = set()
    with zipfile.ZipFile(source) as archive, \
            zipfile.ZipFile(work / RESULT_FILES["zip"], "w", zipfile.ZIP_DEFLATED) as output:
        members = photo_members(archive)
        for done, member in enumerate(members, 1):
            name = member.filename
            try:
                image = decode_image(archive.read(member), max_pixels=max_pixels)
            except ImageError as error:
                records.append({"photo": name, "error": str(error)})
                progress(done, len(members))
                continue
            result = pipeline.process(image)
            stem = Path(name).stem or "photo"
            annotated = f"annotated/{stem}_annotated.jpg"
            for number in range(2, len(members) + 2):  # two photos of one name in different folders
                if annotated not in used_names:
                    break
                annotated = f"annotated/{stem}_{number}_annotated.jpg"
            used_names.add(annotated)
            output.writestr(zipfile.ZipInfo(annotated, date_time=member.date_time),
                            encode_jpeg(draw_faces(image, result.faces)), compress_type=zipfile.ZIP_STORED)
            del image
            records.append({"photo": name, "annotated": annotated, **result.to_dict()})
            for index, face in enumerate(result.faces):
                rows.append({"photo": name, "face": index, "label": face.label, "score": face.score,
                             "det_score": face.det_score, **dict(zip(("x1", "y1", "x2", "y2"), face.box)),
                             "status": face.status, "error": face.error or result.error or ""})
            for label, count in result.counts.items():
                counts[label] = counts.get(label, 0) + count
            progress(done, len(members))
        table = io.StringIO()
        writer = csv.DictWriter(table, CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        output.writestr("faces.csv", table.getvalue())
        output.writestr("faces.json", json.dumps({"photos": records, "counts": counts}, indent=1))
    skipped = [record for record in records if "annotated" not in record]
    return {"photos_done": len(members), "photos_total": len(members), "photos_annotated": len(members) - len(skipped),
            "photos_skipped": len(skipped), "counts": counts,
            "classifier_errors": sum(1 for record in records if record.get("error") and "annotated" in record)}
