"""Annotate image folders and videos: the work behind infer.py."""
from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from tqdm import tqdm

from facemask.core.drawing import draw_faces, style_for
from facemask.core.errors import FacemaskError
from facemask.core.images import IMAGE_SUFFIXES, ImageError, decode_image, encode_jpeg, list_images
from facemask.core.pipeline import MaskPipeline
from facemask.core.privacy import redact_url
from facemask.video.loop import annotate_stream
from facemask.video.output import VideoOutputError, decodes
from facemask.video.source import VideoSource, VideoSourceError, describe_source
from facemask.video.stop import StopSignals
from facemask.video.tracks import VideoSettings

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg"}


class InputError(FacemaskError, ValueError):
    """A problem with the paths the user gave; the message is one line for the terminal."""


@dataclass
class RunSummary:
    processed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    classifier_errors: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    write_error: str | None = None  # images: an output could not be written; the run stopped there
    not_processed: list[str] = field(default_factory=list)  # images left undone by a write error or Ctrl-C
    people: dict | None = None  # videos: distinct people (tracks) by label
    unreadable_frames: int = 0
    interrupted: str | None = None  # the signal that stopped the run
    warnings: list[str] = field(default_factory=list)  # videos: e.g. a header that lied about the frame count

    def add_counts(self, counts: dict) -> None:
        for label, number in counts.items():
            self.counts[label] = self.counts.get(label, 0) + number

    def faces_line(self) -> str:
        """One line for the terminal, every class by its drawn name, e.g. "faces: 3 Mask, 1 Mask worn wrong"."""
        if not self.counts:
            return "faces: none found"
        return "faces: " + ", ".join(f"{number} {style_for(label)[0]}" for label, number
                                     in sorted(self.counts.items(), key=lambda item: -item[1]))

    def to_dict(self) -> dict:
        result = {"processed": len(self.processed), "failed": self.failed,
                  "classifier_errors": self.classifier_errors, "faces": self.counts}
        if self.people is not None:
            result.update(people=self.people, unreadable_frames=self.unreadable_frames,
                          interrupted=self.interrupted, **({"warnings": self.warnings} if self.warnings else {}))
        elif self.write_error or self.interrupted:
            result.update(write_error=self.write_error, interrupted=self.interrupted,
                          not_processed=len(self.not_processed))
        return result


def _inside(folder: Path, path: Path) -> Path:
    """Refuse output paths that would leave the output folder (names with '..', absolute parts, links)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise InputError(f"refusing to write outside the output folder: {path}")
    return resolved


def plan_image_outputs(in_path: Path, out_path: Path, allow_nested: bool = False) -> list[tuple[Path, Path]]:
    """(input image, output image) pairs; a folder keeps its sub-folder structure under out_path.

    Never writes over an input: --out_path equal to the input folder is refused, and a folder inside it only with
    allow_nested (earlier outputs there are then not taken as inputs). Inputs whose names differ only in their
    extension (x.jpg, x.png) get distinct outputs (x_jpg.jpg, x_png.jpg). Broken image links are kept in the plan
    so that the run lists them as failed.
    """
    if not in_path.exists():
        raise InputError(f"input not found: {in_path}")
    if in_path.is_file():
        if out_path.suffix.lower() in IMAGE_SUFFIXES:
            if not out_path.parent.is_dir():
                raise InputError(f"output folder does not exist: {out_path.parent}")
            _check_writable(out_path.parent)
            pairs = [(in_path, out_path.with_suffix(".jpg"))]
        else:
            folder = _prepare_folder(out_path)
            pairs = [(in_path, _inside(folder, folder / (in_path.stem + ".jpg")))]
        _refuse_overwriting_inputs(pairs)
        return pairs
    in_root, out_root = in_path.resolve(), out_path.resolve()
    # Compared by identity (device and inode), not by name: a bind mount or another name of the same folder is it.
    if out_root == in_root or _same_file(in_root, out_root):
        raise InputError(f"--out_path is the input folder {in_path}: the outputs would replace the originals; "
                         "choose another folder")
    nested = out_root.is_relative_to(in_root) or any(_same_file(in_root, parent) for parent in out_root.parents)
    if nested and not allow_nested:
        raise InputError(f"--out_path {out_path} is inside the input folder: its outputs would be read as inputs on "
                         "the next run; choose another folder or add --allow-nested-output")
    images = list_images(in_path) + _broken_image_links(in_path)
    if nested:  # earlier outputs are not inputs
        images = [image for image in images if not _within(image.parent.resolve(), out_root)]
    if not images:
        raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {in_path}")
    images.sort()
    folder = _prepare_folder(out_path)
    targets = _distinct_targets([image.relative_to(in_path) for image in images])
    pairs = [(image, _inside(folder, folder / target)) for image, target in zip(images, targets)]
    _refuse_overwriting_inputs(pairs)
    return pairs


def _broken_image_links(folder: Path) -> list[Path]:
    """Links with an image name that lead nowhere (dangling or looping): list_images skips them silently."""
    return [path for path in Path(folder).rglob("*")
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_symlink() and not path.exists()]


def _distinct_targets(relative_inputs: list[Path]) -> list[Path]:
    """Output name per input (same folders, .jpg); inputs that would share one get their extension in the name."""
    def key(path: Path) -> str:
        return path.as_posix().casefold()  # case-insensitive file systems would merge X.jpg and x.jpg

    natural = [relative.with_suffix(".jpg") for relative in relative_inputs]
    shared = Counter(key(target) for target in natural)
    taken = {key(target) for target in natural if shared[key(target)] == 1}
    targets = []
    for relative, target in zip(relative_inputs, natural):
        if shared[key(target)] > 1:
            base = relative.with_name(f"{relative.stem}_{relative.suffix[1:].lower()}")
            target, number = base.with_suffix(".jpg"), 2
            while key(target) in taken:
                target, number = base.with_name(f"{base.name}_{number}.jpg"), number + 1
            taken.add(key(target))
        targets.append(target)
    return targets


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of what the path names, following links; None when nothing is there."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _same_file(first: Path, second: Path) -> bool:
    identity = _identity(first)
    return identity is not None and identity == _identity(second)


def _within(path: Path, folder: Path) -> bool:
    """path is folder or lies inside it, by name or by identity (the folder reached through another name)."""
    return path.is_relative_to(folder) or any(_same_file(folder, parent) for parent in (path, *path.parents))


def _refuse_overwriting_inputs(pairs: list[tuple[Path, Path]]) -> None:
    """An output that is an input under another name (a hard link, a symbolic link, a bind mount) would be written
    while it is read: compared by identity (device and inode), not by path (issue 35: a hard link to the input video
    was overwritten)."""
    inputs = {identity: source for source, _ in pairs if (identity := _identity(source)) is not None}
    resolved = {source.resolve(): source for source, _ in pairs if source.exists()}
    for _, target in pairs:
        for written in (target, target.with_suffix(".json")):
            identity = _identity(written)
            source = (inputs.get(identity) if identity else None) or resolved.get(written.resolve())
            if source is not None:
                raise InputError(f"output {written} would overwrite the input {source}; choose another --out_path")


def _check_writable(folder: Path) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write to the output folder {folder}: permission denied")


def _prepare_folder(out_path: Path) -> Path:
    if out_path.exists() and not out_path.is_dir():
        raise InputError(f"output path exists and is not a folder: {out_path}")
    if not out_path.parent.is_dir():
        raise InputError(f"output folder does not exist: {out_path.parent}")
    try:
        out_path.mkdir(exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create the output folder {out_path}: {error.strerror}") from None
    _check_writable(out_path)
    return out_path


def _write_atomically(path: Path, data: bytes) -> None:
    """A full disk or a kill mid-write leaves the previous file or none, never half a JPEG."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as temporary:
        try:
            temporary.write(data)
        except BaseException:
            temporary.close()
            os.unlink(temporary.name)
            raise
    os.replace(temporary.name, path)


def annotate_images(pipeline: MaskPipeline, pairs: list[tuple[Path, Path]]) -> RunSummary:
    """Annotated JPEG + JSON sidecar per image; unreadable files are reported and skipped, the rest go on.

    An output that cannot be written (permissions, full disk) stops the run: the summary says where, and which
    inputs were left undone.
    """
    summary = RunSummary()
    try:
        _annotate_each(pipeline, pairs, summary)
    except KeyboardInterrupt:  # Ctrl-C: what is written stays written and the summary says what was left
        summary.interrupted = "SIGINT"
        done = set(summary.processed) | set(summary.failed)
        summary.not_processed = [str(source) for source, _ in pairs if str(source) not in done]
    return summary


def _annotate_each(pipeline: MaskPipeline, pairs: list[tuple[Path, Path]], summary: RunSummary) -> None:
    for position, (source, target) in enumerate(tqdm(pairs, desc="images", unit="img", disable=len(pairs) < 2)):
        if source.is_symlink() and not source.exists():
            summary.failed[str(source)] = "broken link (its target is missing or the link loops)"
            continue
        try:
            image = decode_image(source)
        except ImageError as error:
            summary.failed[str(source)] = str(error)
            continue
        result = pipeline.process(image)
        record = {"source": str(source), "output": str(target), "detector": pipeline.detector.config(),
                  "classifier_url": pipeline.client.url, **result.to_dict()}
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(target, encode_jpeg(draw_faces(image, result.faces)))
            _write_atomically(target.with_suffix(".json"), json.dumps(record, indent=2).encode())
        except OSError as error:
            summary.write_error = f"cannot write {target}: {error.strerror or error}"
            summary.not_processed = [str(s) for s, _ in pairs[position:]]
            break
        summary.processed.append(str(source))
        summary.add_counts(result.counts)
        if result.error:
            summary.classifier_errors[str(source)] = result.error


def plan_video_output(in_spec: str, out_path: Path) -> Path:
    """Output video path for a file, camera index or stream URL (see facemask.video.source.describe_source)."""
    kind, target = describe_source(in_spec)
    if kind == "file":
        in_path = Path(str(target))
        if not in_path.is_file():
            raise InputError(f"input video not found: {in_path}")
        if in_path.suffix.lower() in IMAGE_SUFFIXES:
            raise InputError(f"{in_path} is an image: add --is_image")
        stem = in_path.stem
    else:
        stem = f"camera{target}" if kind == "camera" else (Path(urlparse(str(target)).path).stem or "stream")
    if out_path.suffix.lower() in VIDEO_SUFFIXES:
        if not out_path.parent.is_dir():
            raise InputError(f"output folder does not exist: {out_path.parent}")
        _check_writable(out_path.parent)
        output = out_path
    else:
        folder = _prepare_folder(out_path)
        output = _inside(folder, folder / (stem + "_annotated.mp4"))
    if kind == "file":  # the video is read while its output is written: the same file would be destroyed
        _refuse_overwriting_inputs([(in_path, output)])
    return output


def annotate_video(pipeline: MaskPipeline, in_spec: str | Path, out_path: Path,
                   settings: VideoSettings | None = None, stop: StopSignals | None = None,
                   on_frame: Callable[[int, int | None], None] | None = None,
                   max_pixels: int | None = None, shrink_to_pixels: int | None = None,
                   max_frames: int | None = None) -> RunSummary:
    """Annotated video + JSON record (every frame's faces with track ids, and a per-video summary of people).

    in_spec: a file, a camera index ("0") or a stream URL (rtsp://, http://, ...). SIGINT / SIGTERM finish the
    video file and the JSON for the frames done (summary.interrupted names the signal). An out_path ending in
    .webm is written as VP8. on_frame(frames done, frames total or None) replaces the terminal progress bar.
    max_pixels: a larger frame stops the run with InputError; shrink_to_pixels: larger frames are analysed and
    written scaled down to this many pixels; max_frames: a longer file stops the run with InputError, whatever its
    header says. A video that cannot be written raises InputError.
    """
    try:
        source = VideoSource(str(in_spec), max_pixels=max_pixels, shrink_to_pixels=shrink_to_pixels,
                             max_frames=max_frames)
    except VideoSourceError as error:
        raise InputError(str(error)) from None
    settings = settings or VideoSettings()
    header = {"source": redact_url(str(in_spec)), "source_kind": source.kind, "output": str(out_path),
              "detect_every": settings.detect_every, "detector": pipeline.detector.config(),
              "classifier_url": pipeline.client.url}
    stop = stop or StopSignals()
    with stop, tqdm(total=source.total, desc="frames", unit="frame", disable=on_frame is not None) as progress:
        done = [0]

        def advance(count: int) -> None:
            progress.update(count)
            done[0] += count
            if on_frame is not None:
                on_frame(done[0], source.total)

        try:
            footer = annotate_stream(pipeline, source, out_path, settings, header,
                                     should_stop=lambda: stop.received, progress=advance)
        except VideoOutputError as error:  # nothing was written: no video, and no JSON that says otherwise
            _remove_outputs(out_path)
            raise InputError(str(error)) from None
        except VideoSourceError as error:
            if not done[0]:  # refused at its first frame (e.g. too small): no empty video or JSON left behind
                _remove_outputs(out_path)
            raise InputError(str(error)) from None
        except OSError as error:  # the JSON record cannot be written: one line, not a traceback
            raise InputError(f"cannot write {error.filename or out_path}: {error.strerror or error}") from None
    summary = RunSummary()
    if footer.frames_total == 0 and not stop.received:
        _remove_outputs(out_path)
        raise InputError(f"video has no readable frames: {redact_url(str(in_spec))}")
    if footer.frames_total and not decodes(out_path):
        _remove_outputs(out_path)
        raise InputError(f"the annotated video {out_path.name} cannot be read back: the encoder wrote no playable "
                         "frame")
    summary.processed.append(redact_url(str(in_spec)))
    summary.classifier_errors.update(footer.classifier_errors)
    summary.people = footer.summary.people.to_dict()
    summary.unreadable_frames = footer.unreadable_frames
    summary.interrupted = footer.interrupted
    summary.warnings = footer.warnings
    for track in footer.summary.tracks:
        if track.counted:
            summary.add_counts({track.label: 1})
    return summary


def _remove_outputs(out_path: Path) -> None:
    out_path.unlink(missing_ok=True)
    out_path.with_suffix(".json").unlink(missing_ok=True)
