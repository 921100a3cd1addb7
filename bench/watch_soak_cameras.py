"""Soak of several cameras in one watch process (`python -m facemask.watch --config cameras.yaml`): is one process
with two cameras as fast per camera as with one, and does its memory stay flat, with everything on?

    python -m bench.watch_soak_cameras --minutes 10 --baseline-minutes 5

Each camera is a looping MJPEG camera on loopback (a process of its own, --fps frames/s, a pan across
sample-images/group_mixed.jpg, so each loop brings six people in again and events keep coming), and each camera has
everything on: events to a JSON Lines file, a webhook receiver on loopback, Debian's mosquitto on a loopback port
(MQTT events, counts, Home Assistant discovery), recordings (H.264 MP4 segments), snapshots and clips, and a client that
reads its live view (/stream.mjpg) all run long.

1. one camera: the config file lists one camera, for --baseline-minutes;
2. two cameras: the config file lists two (same settings, each its own camera process), for --minutes.
Both in the same run, one after the other, so their frames/s compare on the same machine under the same load. Every
--sample seconds: the watch's resident memory, open files, CPU seconds, and each camera's analysed frames (/counts).
At the end: every event record in the events files was POSTed to the webhook exactly once and reached MQTT exactly
once; the recordings cover the run and decode.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import av
import psutil
import requests

from bench.common import Report, command_line
from bench.mjpeg_stream import CameraProcess
from bench.mosquitto import Mosquitto
from bench.watch_soak import WebhookReceiver, pan_clip, wait_for, watch_status
from facemask.core.paths import REPO_ROOT
from facemask.serving.local_server import LocalService, free_port
from facemask.watch.delivery import record_key

CAMERA_NAMES = ("door", "yard")


class LiveViewer:
    """A client that reads a watch's /stream.mjpg all the time (reconnecting if it has to) and counts frames."""

    def __init__(self, url: str):
        self.url, self.frames, self.reconnects, self._stop = url, 0, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with requests.get(self.url, stream=True, timeout=10) as response:
                    for chunk in response.iter_content(64 * 1024):
                        self.frames += chunk.count(b"--frame\r\n")
                        if self._stop.is_set():
                            return
            except requests.RequestException:
                pass
            self.reconnects += 1
            time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(15)


def write_config(path: Path, cameras: dict[str, tuple[CameraProcess, int]], classifier_url: str, folder: Path,
                 webhook_url: str, mqtt_url: str, segment_s: float) -> None:
    lines = [f"classifier_url: {classifier_url}", "event_labels: [with_mask, without_mask, incorrect]",
             f"webhook: {webhook_url}", f"mqtt: {mqtt_url}", f"record: {folder / 'recordings'}",
             f"snapshots: {folder / 'snapshots'}", f"segment_seconds: {segment_s:g}", "cameras:"]
    for name, (camera, port) in cameras.items():
        lines += [f"  {name}:", f"    source: {camera.url}", f"    listen: 127.0.0.1:{port}",
                  f"    events: {folder / (name + '_events.jsonl')}"]
    path.write_text("\n".join(lines) + "\n")


def recordings(folder: Path, camera: str) -> dict:
    """The camera's segments: how many, the frames they hold (packets), and the frames the first one decodes to."""
    segments = sorted((folder / "recordings").glob(f"{camera}_*.mp4"))
    packets, decoded = 0, 0
    for number, segment in enumerate(segments):
        try:
            with av.open(str(segment)) as container:
                stream = container.streams.video[0]
                if number == 0:
                    decoded = sum(1 for _ in container.decode(stream))
                else:
                    packets += sum(1 for packet in container.demux(stream) if packet.size)
        except av.error.FFmpegError:
            continue
    clips = sorted((folder / "snapshots").glob(f"{camera}_*.mp4"))
    clip_frames = 0
    if clips:  # the newest clip, decoded whole
        try:
            with av.open(str(clips[-1])) as container:
                clip_frames = sum(1 for _ in container.decode(container.streams.video[0]))
        except av.error.FFmpegError:
            clip_frames = 0
    return {"segments": len(segments), "frames recorded": packets + decoded, "frames decoded in the first": decoded,
            "event clips": len(clips), "frames decoded in the newest clip": clip_frames}


def run_phase(name: str, cameras_wanted: tuple[str, ...], classifier_url: str, clip: Path, fps: float,
              seconds: float, sample_s: float, segment_s: float, root: Path) -> dict:
    folder = root / name.replace(" ", "_")
    folder.mkdir()
    broker, receiver = Mosquitto(folder), WebhookReceiver()
    receiver.start()
    heard, subscriber = broker.listen()
    cameras = {camera: (CameraProcess(clip, fps=fps), free_port()) for camera in cameras_wanted}
    for camera, _ in cameras.values():
        camera.start()
    config = folder / "cameras.yaml"
    write_config(config, cameras, classifier_url, folder, receiver.url, broker.url, segment_s)
    with open(folder / "watch.log", "w") as log:
        watch = subprocess.Popen([sys.executable, "-m", "facemask.watch", "--config", str(config)], cwd=REPO_ROOT,
                                 stdout=subprocess.PIPE, stderr=log, text=True,
                                 env={**os.environ, "FACEMASK_ORT_THREADS": "1"})
    process, samples, viewers = psutil.Process(watch.pid), [], []
    try:
        for _, port in cameras.values():
            wait_for(lambda port=port: watch_status(port).get("frames", 0) > 0, 180, "the first frame", every=0.5)
        viewers = [LiveViewer(f"http://127.0.0.1:{port}/stream.mjpg") for _, port in cameras.values()]
        started = next_sample = time.monotonic()
        while time.monotonic() - started < seconds:
            if time.monotonic() >= next_sample:
                memory, cpu = process.memory_info().rss, process.cpu_times()
                statuses = {camera: watch_status(port) for camera, (_, port) in cameras.items()}
                samples.append({"t_s": time.monotonic() - started, "rss_mb": memory / 2**20,
                                "open_files": process.num_fds(), "threads": process.num_threads(),
                                "cpu_s": cpu.user + cpu.system,
                                "frames": {camera: status.get("frames", 0) for camera, status in statuses.items()},
                                "events": {camera: status.get("events", {}) for camera, status in statuses.items()},
                                "live frames": [viewer.frames for viewer in viewers]})
                next_sample += sample_s
            time.sleep(0.1)
        finals = {camera: wait_for(lambda port=port: (s := watch_status(port)) and s["events"]["queued"] == 0 and s,
                                   60, "the webhook queue to drain") for camera, (_, port) in cameras.items()}
    finally:
        for viewer in viewers:
            viewer.stop()
        if watch.poll() is None:
            watch.send_signal(signal.SIGTERM)
        watch.communicate(timeout=120)
        for camera, _ in cameras.values():
            camera.kill()
        time.sleep(1)  # the last MQTT messages
        subscriber.disconnect()
        broker.stop()
        receiver.stop()
    written = Counter(record_key(json.loads(line)) for camera in cameras
                      for line in (folder / f"{camera}_events.jsonl").read_text().splitlines() if line.strip())
    posted = Counter(key for key, _ in receiver.received)
    published = Counter(record_key(json.loads(payload)) for topic, payload, _ in heard if topic.endswith("/events"))
    return {"name": name, "cameras": list(cameras), "samples": samples, "finals": finals,
            "exit code": watch.returncode, "records written": sum(written.values()),
            "webhook exactly once": posted == written and max(written.values(), default=1) == 1,
            "mqtt exactly once": published == written,
            "records posted": sum(posted.values()), "records on mqtt": sum(published.values()),
            "live frames": {camera: viewer.frames for camera, viewer in zip(cameras, viewers)},
            "recordings": {camera: recordings(folder, camera) for camera in cameras}}


def camera_rates(samples: list[dict], camera: str) -> list[float]:
    return [(after["frames"][camera] - before["frames"][camera]) / (after["t_s"] - before["t_s"])
            for before, after in zip(samples, samples[1:])]


def summarise(phase: dict, warm_up_s: float) -> list[dict]:
    warm = [s for s in phase["samples"] if s["t_s"] >= warm_up_s] or phase["samples"]
    first, last = warm[0], warm[-1]
    span_min = (last["t_s"] - first["t_s"]) / 60
    # memory trend: least-squares slope of RSS over the samples after the warm-up
    times, rss = [s["t_s"] / 60 for s in warm], [s["rss_mb"] for s in warm]
    mean_t, mean_r = sum(times) / len(times), sum(rss) / len(rss)
    slope = sum((t - mean_t) * (r - mean_r) for t, r in zip(times, rss)) / max(
        sum((t - mean_t) ** 2 for t in times), 1e-9)
    frames = sum(last["frames"][c] - first["frames"][c] for c in phase["cameras"])
    rows = []
    for camera in phase["cameras"]:
        rates = camera_rates(warm, camera)
        final = phase["finals"][camera]
        rows.append({"run": phase["name"], "camera": camera, "minutes after warm-up": round(span_min, 1),
                     "frames/s mean": sum(rates) / max(len(rates), 1), "frames/s min": min(rates, default=0.0),
                     "camera frames/s": final["camera_frames_per_second"],
                     "skipped frames": final["skipped_frames"],
                     "watch CPU ms/frame (all cameras)": 1e3 * (last["cpu_s"] - first["cpu_s"]) / max(frames, 1),
                     "RSS MB at warm-up": first["rss_mb"], "RSS MB max after": max(rss),
                     "RSS MB/min trend": slope,
                     "open files at warm-up": first["open_files"],
                     "open files max after": max(s["open_files"] for s in warm),
                     "people counted": final["people"]["total"], "events raised": final["events"]["raised"],
                     "live-view frames read": phase["live frames"][camera],
                     **phase["recordings"][camera]})
    return rows


def main(argv=None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the two-camera run")
    parser.add_argument("--baseline-minutes", type=float, default=5.0, help="length of the one-camera run")
    parser.add_argument("--fps", type=float, default=20.0, help="each camera's frames/s")
    parser.add_argument("--warm-up", type=float, default=60.0, help="seconds left out of the measures")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--segment-seconds", type=float, default=60.0, help="length of one recording")
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    report = Report("watch_soak_two_cameras",
                    "Camera watch soak, two cameras in one process: frames/s per camera and memory",
                    command_line("bench.watch_soak_cameras", argv),
                    **({"out_dir": args.out_dir} if args.out_dir else {}),
                    minutes=args.minutes, baseline_minutes=args.baseline_minutes, warm_up_s=args.warm_up,
                    camera_fps=args.fps,
                    source=f"looping MJPEG cameras on loopback (a process each), {args.fps:g} frames/s, 640x480, "
                           "pan over sample-images/group_mixed.jpg",
                    watch="one process from one config file; FACEMASK_ORT_THREADS=1, detector every 3rd frame; "
                          "events (every label) to a file, a webhook and MQTT (Debian's mosquitto on loopback), "
                          f"recordings ({args.segment_seconds:g} s H.264 MP4 segments), snapshots and clips, a "
                          "live-view client per camera; classifier: a local service with 2 workers")
    with LocalService("classification", workers=2) as classifier, tempfile.TemporaryDirectory() as tmp:
        clip = pan_clip(Path(tmp) / "pan.avi")
        phases = [run_phase("one camera", CAMERA_NAMES[:1], classifier.url, clip, args.fps,
                            60 * args.baseline_minutes, args.sample, args.segment_seconds, Path(tmp)),
                  run_phase("two cameras", CAMERA_NAMES, classifier.url, clip, args.fps, 60 * args.minutes,
                            args.sample, args.segment_seconds, Path(tmp))]
    rows = [row for phase in phases for row in summarise(phase, args.warm_up)]
    report.data["samples"] = {phase["name"]: phase["samples"] for phase in phases}
    report.data["phases"] = {phase["name"]: {key: value for key, value in phase.items() if key != "samples"}
                             for phase in phases}
    report.table("Frames/s and memory per camera", rows,
                 "One run, both phases one after the other on the same machine, 2 cores shared with other engineers' "
                 "jobs (compare ratios, not absolutes). Frames/s: analysed frames from each camera's /counts every "
                 "sample interval after the warm-up. CPU ms/frame: user + system CPU of the watch process over "
                 "the frames of all its cameras (the classifier's workers are not counted). RSS MB/min trend: "
                 "least-squares slope of the resident memory after the warm-up.")
    deliveries = [{"run": phase["name"], "exit code": phase["exit code"], "records written": phase["records written"],
                   "webhook posts": phase["records posted"], "MQTT event messages": phase["records on mqtt"],
                   "webhook: every record exactly once": phase["webhook exactly once"],
                   "MQTT: every record exactly once": phase["mqtt exactly once"]} for phase in phases]
    report.table("Events delivered", deliveries,
                 "Records: the lines of the cameras' events files (an event's start, and its end where the watch "
                 "writes one); webhook posts counted by Idempotency-Key, MQTT messages on facemask/<camera>/events.")
    alone = rows[0]["frames/s mean"]
    ratios = {row["camera"]: row["frames/s mean"] / alone for row in rows[1:]}
    report.data["ratio to one camera"] = ratios
    report.note("Frames/s per camera with two cameras / one camera alone: "
                + ", ".join(f"{camera} {ratio:.3f}" for camera, ratio in ratios.items())
                + f". RSS trend with two cameras: {rows[1]['RSS MB/min trend']:+.2f} MB/min "
                  f"(one camera: {rows[0]['RSS MB/min trend']:+.2f} MB/min).")
    report.save()
    return report


if __name__ == "__main__":
    main()
