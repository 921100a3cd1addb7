"""Soak of the camera watch (python -m facemask.watch): memory, open files and frames/s over a long run against
a looping MJPEG camera on loopback, with and without events, through a 10 s camera outage and a 30 s webhook outage.

    python -m bench.watch_soak --minutes 10 --baseline-minutes 3

1. baseline: the watch with no event labels (nothing raised) for --baseline-minutes;
2. soak: the watch with every label raising events, posted to a webhook receiver on loopback, for --minutes; at
   40 % of it the camera process is killed for --outage seconds and started again (resume time: from its return
   until the watch's /counts says connected), at 60 % the receiver is taken down for --webhook-down seconds.
Every --sample seconds: the watch's resident memory, open files, frames done (frames/s) and CPU seconds. The clip is
a pan across sample-images/group_mixed.jpg, so each loop brings the six people in again as new tracks: events keep
coming all run long (the baseline counts the same people without raising anything).
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import psutil
import requests

from bench.common import Report, command_line
from bench.mjpeg_stream import CameraProcess
from bench.synthetic_video import camera_windows, render
from facemask.core.images import decode_image
from facemask.core.paths import REPO_ROOT
from facemask.serving.local_server import LocalService, free_port
from facemask.watch.delivery import record_key


class WebhookReceiver:
    """A webhook receiver on loopback that records every POST; `delay` makes it slow, stop() takes it down."""

    def __init__(self):
        self.port, self.received, self.delay, self.server = free_port(), [], 0.0, None
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Hook(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(receiver.delay)
                receiver.received.append((self.headers["Idempotency-Key"], body))
                self.send_response(204)
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Hook)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def start_watch(source: str, classifier_url: str, *options, listen: int | None = None,
                stderr=subprocess.PIPE) -> subprocess.Popen:
    command = [sys.executable, "-m", "facemask.watch", "--source", source, "--classifier-url", classifier_url,
               "--listen", f"127.0.0.1:{listen}" if listen else "none", *map(str, options)]
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True,
                            env={**os.environ, "FACEMASK_ORT_THREADS": "1"})


def watch_status(port: int) -> dict:
    """The watch's /counts, or {} while it does not answer."""
    try:
        return requests.get(f"http://127.0.0.1:{port}/counts", timeout=5).json()
    except requests.RequestException:
        return {}


def wait_for(condition, seconds: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def pan_clip(path: Path, frames: int = 100) -> Path:
    photo = decode_image(REPO_ROOT / "sample-images" / "group_mixed.jpg")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (640, 480))
    for window in camera_windows(photo.shape[1], photo.shape[0], frames, "pan", seed=0):
        writer.write(cv2.cvtColor(render(photo, window, (640, 480)), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def run_phase(name: str, classifier_url: str, clip: Path, seconds: float, sample_s: float, events: bool,
              outage_s: float, webhook_down_s: float, folder: Path) -> dict:
    camera, receiver, port = CameraProcess(clip), WebhookReceiver(), free_port()
    camera.start()
    receiver.start()
    events_path = folder / f"{name}_events.jsonl"
    log_path = folder / f"{name}.log"
    with open(log_path, "w") as log:
        watch = start_watch(camera.url, classifier_url, "--camera", "soak", "--events", events_path, "--webhook",
                            receiver.url, "--event-labels", "with_mask,without_mask,incorrect" if events else "",
                            listen=port, stderr=log)
    process = psutil.Process(watch.pid)
    samples, resume_s = [], None
    windows: dict[str, tuple[float, float | None]] = {}
    try:
        wait_for(lambda: watch_status(port).get("frames", 0) > 0, 120, "the first frame", every=0.5)
        started = time.monotonic()
        outage_at = started + 0.4 * seconds if outage_s else None
        webhook_at = started + 0.6 * seconds if webhook_down_s else None
        next_sample = started
        while time.monotonic() - started < seconds:
            now = time.monotonic()
            if outage_at is not None and now >= outage_at:
                camera.kill()
                windows["camera down"] = (now - started, None)
                time.sleep(outage_s)
                camera.start()
                back = time.monotonic()
                wait_for(lambda: watch_status(port).get("connected"), 60, "the watch to resume", every=0.05)
                resume_s = time.monotonic() - back
                windows["camera down"] = (windows["camera down"][0], time.monotonic() - started)
                outage_at, next_sample = None, time.monotonic()
                continue
            if webhook_at is not None and now >= webhook_at:
                receiver.stop()
                windows["webhook down"] = (now - started, now - started + webhook_down_s)
                webhook_at, webhook_back_at = None, now + webhook_down_s
            if "webhook down" in windows and receiver.server is None and now >= webhook_back_at:
                receiver.start()
            if now >= next_sample:
                memory, cpu = process.memory_info().rss, process.cpu_times()
                status = watch_status(port)
                samples.append({"t_s": now - started, "rss_mb": memory / 2**20, "open_files": process.num_fds(),
                                "frames": status.get("frames", 0), "cpu_s": cpu.user + cpu.system,
                                "threads": process.num_threads(), "events": status.get("events", {})})
                next_sample += sample_s
            time.sleep(0.05)
        if receiver.server is None:
            receiver.start()
        final = wait_for(lambda: (s := watch_status(port)) and s["events"]["queued"] == 0 and s, 60,
                         "the event queue to drain")
    finally:
        if watch.poll() is None:
            watch.send_signal(signal.SIGTERM)
        watch.communicate(timeout=60)
        camera.kill()
        receiver.stop()
    written = [record_key(json.loads(line)) for line in events_path.read_text().splitlines()] \
        if events_path.exists() else []
    delivered = [key for key, _ in receiver.received]
    return {"name": name, "samples": samples, "resume_s": resume_s, "windows": windows, "final": final,
            "events_written": len(written), "events_delivered": len(delivered),
            "delivered_exactly_once": sorted(delivered) == sorted(written), "log": str(log_path)}


def interval_rates(samples: list[dict], excluded: list[tuple[float, float]]) -> tuple[list[float], float]:
    """Frames/s between consecutive samples, and CPU ms per frame over them, leaving out intervals that overlap
    an outage window."""
    rates, cpu_s, frames = [], 0.0, 0
    for before, after in zip(samples, samples[1:]):
        if any(before["t_s"] < end and after["t_s"] > start for start, end in excluded):
            continue
        rates.append((after["frames"] - before["frames"]) / (after["t_s"] - before["t_s"]))
        cpu_s, frames = cpu_s + after["cpu_s"] - before["cpu_s"], frames + after["frames"] - before["frames"]
    return rates, 1e3 * cpu_s / max(frames, 1)


def summarise(phase: dict, warm_up_s: float) -> dict:
    samples = phase["samples"]
    warm = [s for s in samples if s["t_s"] >= warm_up_s] or samples
    first, last = warm[0], warm[-1]
    camera_down = phase["windows"].get("camera down")
    excluded = [camera_down] if camera_down else []
    rates, cpu_ms = interval_rates(warm, excluded)
    mean = sum(rates) / max(len(rates), 1)
    row = {"run": phase["name"], "seconds after warm-up": round(last["t_s"] - first["t_s"]),
           "frames/s mean": mean, "frames/s min": min(rates, default=0.0), "frames/s max": max(rates, default=0.0),
           "watch CPU ms/frame": cpu_ms,
           "RSS MB at warm-up": first["rss_mb"], "RSS MB max after": max(s["rss_mb"] for s in warm),
           "RSS growth %": 100 * (max(s["rss_mb"] for s in warm) / first["rss_mb"] - 1),
           "open files at warm-up": first["open_files"], "open files max after": max(s["open_files"] for s in warm),
           "events raised": phase["final"]["events"]["raised"],
           "event records delivered (starts, ends)": phase["events_delivered"],
           "every event exactly once": phase["delivered_exactly_once"],
           "people counted": phase["final"]["people"]["total"], "reconnects": phase["final"]["reconnects"]}
    webhook_down = phase["windows"].get("webhook down")
    if webhook_down:
        during, _ = interval_rates([s for s in warm if webhook_down[0] <= s["t_s"] <= webhook_down[1]], [])
        row["frames/s while webhook down"] = sum(during) / max(len(during), 1)
    if phase["resume_s"] is not None:
        row["resume s after camera back"] = phase["resume_s"]
    return row


def main(argv=None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak with events")
    parser.add_argument("--baseline-minutes", type=float, default=3.0, help="length of the run without events")
    parser.add_argument("--warm-up", type=float, default=60.0, help="seconds left out of the flatness measures")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds the camera is down during the soak")
    parser.add_argument("--webhook-down", type=float, default=30.0, help="seconds the webhook is down")
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    report = Report("watch_soak", "Camera watch soak: memory, open files, frames/s, reconnects, events",
                    command_line("bench.watch_soak", argv), **({"out_dir": args.out_dir} if args.out_dir else {}),
                    minutes=args.minutes, baseline_minutes=args.baseline_minutes, warm_up_s=args.warm_up,
                    source="looping MJPEG camera on loopback, 25 frames/s, pan over sample-images/group_mixed.jpg",
                    watch="one process, FACEMASK_ORT_THREADS=1, detector every 3rd frame; classifier: 2 workers")
    with LocalService("classification", workers=2) as classifier, tempfile.TemporaryDirectory() as tmp:
        clip = pan_clip(Path(tmp) / "pan.avi")
        phases = [run_phase("baseline (no events)", classifier.url, clip, 60 * args.baseline_minutes, args.sample,
                            False, 0.0, 0.0, Path(tmp)),
                  run_phase("soak (events, camera and webhook outages)", classifier.url, clip, 60 * args.minutes,
                            args.sample, True, args.outage, args.webhook_down, Path(tmp))]
        rows = [summarise(phase, args.warm_up) for phase in phases]
        report.data["samples"] = {phase["name"]: phase["samples"] for phase in phases}
        report.data["windows"] = {phase["name"]: phase["windows"] for phase in phases}
    baseline, soak = rows
    report.table("Watch over time", rows,
                 "One run each, same machine, cores shared with other jobs (compare ratios, not absolutes). Frames/s "
                 "from the watch's /counts every sample interval after the warm-up, the camera outage left out; "
                 "CPU ms/frame: user + system CPU of the watch process over the same intervals (the classifier's "
                 "workers are not counted).")
    report.note(f"Frames/s with events / without: {soak['frames/s mean'] / baseline['frames/s mean']:.3f}; "
                f"while the webhook was down / without events: "
                f"{soak.get('frames/s while webhook down', float('nan')) / baseline['frames/s mean']:.3f}; "
                f"CPU per frame with events / without: "
                f"{soak['watch CPU ms/frame'] / baseline['watch CPU ms/frame']:.3f}. "
                f"Resume after a {args.outage:.0f} s camera outage: {soak.get('resume s after camera back', 0):.2f} s "
                f"from the camera's return.")
    report.save()
    return report


if __name__ == "__main__":
    main()
