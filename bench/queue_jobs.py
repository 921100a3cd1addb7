"""Video jobs on the Redis queue (issue 34): how the work spreads over workers, how fast a killed worker's job is
taken up again, and what the queue costs a job against the single-machine path.

    python -m bench.queue_jobs                    # 6 jobs x 1, 2, 3 workers; 3 kills; 5 small jobs each path
    python -m bench.queue_jobs --jobs 4 --kills 2

Everything runs on this machine: Debian's redis-server on a loopback port, one classifier service (2 gunicorn
workers), one detection service, the workers as `python -m facemask.worker` processes (results in
bench/results/queue_jobs.{md,json}).
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np
import requests

from bench.common import REPO_ROOT, Report, command_line
from facemask.core.images import decode_image
from facemask.serving.local_server import LocalRedis, LocalService, LocalWorker


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 10) -> Path:
    """An MP4 (mp4v) of the frames (BGR); the tests' clips too."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def submit(base: str, clip: Path, client: str) -> str:
    response = requests.post(base + "/videos", files={"video": clip.open("rb")}, headers={"X-Forwarded-For": client},
                             timeout=60)
    response.raise_for_status()
    return response.json()["id"]


def wait(base: str, job_id: str, until=("done", "failed"), timeout: float = 900, kind: str = "videos") -> dict:
    """The job's status once its state is one of `until` (polled every 50 ms); AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = requests.get(f"{base}/{kind}/{job_id}", timeout=10).json()
        if status["state"] in until:
            return status
        if status["state"] in ("done", "failed"):  # a finished job changes no more: say so now, not after timeout
            raise AssertionError(f"job {job_id} ended {status['state']}, not {until}: {status}")
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not {until} after {timeout} s: {status}")


def throughput(base: str, clip: Path, env: dict, logs: Path, workers: int, jobs: int) -> dict:
    """The workers started and listening first, then the jobs submitted: minutes from the first submission to the
    last job's end (uploads included, the same for every worker count)."""
    with ExitStack() as stack:
        started = [LocalWorker(f"bench-{workers}-{index}", env, log_path=logs / "workers.log").launch()
                   for index in range(workers)]
        for each in started:
            stack.callback(each.stop)
        for each in started:
            each.wait_until_listening()
        began = time.monotonic()
        ids = [submit(base, clip, f"10.1.{workers}.{i}") for i in range(jobs)]
        statuses = [wait(base, job_id) for job_id in ids]
        minutes = (time.monotonic() - began) / 60
    assert all(status["state"] == "done" for status in statuses), statuses
    return {"workers": workers, "jobs": jobs, "frames per job": statuses[0]["frames_total"],
            "minutes": minutes, "jobs/min": jobs / minutes}


def pickup_after_kill(base: str, clip: Path, env: dict, logs: Path, kills: int) -> list[float]:
    """Two workers; the one running a job is killed with SIGKILL 10 frames in; seconds until the other runs it."""
    from redis import Redis
    from rq import Worker

    redis, seconds = Redis.from_url(env["FACEMASK_QUEUE_URL"]), []
    for round_ in range(kills):
        names = [f"kill-{round_}-a", f"kill-{round_}-b"]
        with LocalWorker(names[0], env, log_path=logs / "workers.log") as first, \
                LocalWorker(names[1], env, log_path=logs / "workers.log") as second:
            job_id = submit(base, clip, f"10.2.0.{round_}")
            while wait(base, job_id, until=("running",))["frames_done"] < 10:
                time.sleep(0.05)
            (busy,) = [w.name for w in Worker.all(connection=redis) if w.get_current_job_id() == job_id]
            victim = first if busy == names[0] else second
            assert victim.process is not None
            os.kill(victim.process.pid, signal.SIGKILL)
            killed = time.monotonic()
            while not any(w.get_current_job_id() == job_id for w in Worker.all(connection=redis)
                          if w.name != busy):
                time.sleep(0.05)
            seconds.append(time.monotonic() - killed)
            assert wait(base, job_id)["state"] == "done"
    return seconds


def latencies(base: str, clip: Path, rounds: int) -> list[float]:
    """Submit to done, one small job at a time (the service and its workers idle in between)."""
    times = []
    for index in range(rounds):
        started = time.monotonic()
        status = wait(base, submit(base, clip, f"10.3.0.{index}"))
        assert status["state"] == "done", status
        times.append(time.monotonic() - started)
    return times


def main(argv=None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=6, help="jobs per throughput run")
    parser.add_argument("--frames", type=int, default=60, help="frames per throughput job (640x480, 6 faces)")
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="small jobs per path for the overhead")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--skip-spread", action="store_true", help="only the kills and the overhead (quicker)")
    args = parser.parse_args(argv)
    report = Report("queue_jobs", "Video jobs on the Redis queue: workers, a killed worker, the queue's cost",
                    command_line("bench.queue_jobs", argv), **({"out_dir": args.out_dir} if args.out_dir else {}))
    folder = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    photo = cv2.resize(cv2.cvtColor(decode_image(REPO_ROOT / "sample-images" / "group_mixed.jpg"), cv2.COLOR_RGB2BGR),
                       (640, 480))
    clip = write_clip(folder / "faces.mp4", [photo] * args.frames, fps=25)
    long_clip = write_clip(folder / "long.mp4", [photo] * 150, fps=25)
    small = write_clip(folder / "small.mp4", [photo] * 10, fps=25)
    limits = {"MAX_VIDEO_JOBS": "100", "MAX_VIDEO_JOBS_PER_CLIENT": "100", "FACEMASK_TRUSTED_PROXIES": "1"}

    with LocalRedis() as redis, LocalService("classification", workers=2) as classifier:
        env = {"FACEMASK_QUEUE_URL": redis.url, "FACEMASK_JOBS_STORE": str(folder / "store"),
               "CLASSIFIER_URL": classifier.url, **limits}
        with LocalService("detection", workers=1, env=env, log_path=folder / "detection.log") as detection:
            runs = [] if args.skip_spread else [throughput(detection.url, clip, env, folder, workers, args.jobs)
                                                for workers in (1, 2, 3)]
            for run in runs:
                run["speed-up"] = run["jobs/min"] / runs[0]["jobs/min"]
            report.table("Jobs per minute", runs,
                         f"1, 2 or 3 workers listening, then {args.jobs} video jobs ({args.frames} frames of 640x480 "
                         "with 6 faces each) submitted; from the first upload to the last job done. One classifier "
                         f"service (2 gunicorn workers) and everything else share this machine's {os.cpu_count()} "
                         "cores: each worker runs ONNX Runtime on one thread, so past 2 workers the cores, not the "
                         "queue, cap the rate.")
            kills = pickup_after_kill(detection.url, long_clip, env, folder, args.kills)
            report.table("A worker killed mid-job", [{
                "kills": len(kills), "median s to picked up again": statistics.median(kills),
                "max s": max(kills), "every job ended done once": True}],
                "Two workers; the one running a 150-frame job is killed with SIGKILL 10 frames in (its work horse "
                "dies with it); seconds until the other worker runs the job. The bound is the heartbeat's lapse "
                "(facemask.jobs.redis_queue: every 2 s, lapsed 8 s after the last) plus the time until the next "
                "look (the surviving worker's maintenance round or any replica's poll).")
            with LocalWorker("overhead", env, log_path=folder / "workers.log"):
                queued = latencies(detection.url, small, args.rounds)
        one_machine_env = {"FACEMASK_JOBS_STORE": str(folder / "local"), "CLASSIFIER_URL": classifier.url, **limits}
        with LocalService("detection", workers=1, env=one_machine_env, log_path=folder / "local.log") as local:
            single = latencies(local.url, small, args.rounds)
    report.table("Queue overhead per job", [
        {"path": "one machine (no FACEMASK_QUEUE_URL)", "median s submit to done": statistics.median(single),
         "rounds": len(single)},
        {"path": "Redis queue, one worker", "median s submit to done": statistics.median(queued),
         "rounds": len(queued), "overhead s": statistics.median(queued) - statistics.median(single)}],
        "A 10-frame 640x480 job at a time, submit to done as a poller sees it (polls every 50 ms). The queue adds "
        "the worker's fork of a work horse, its Redis round trips and the progress it saves; one machine runs the "
        "job on a thread of the detection process, beside the uploads and the polls it answers, and looks for "
        "queued jobs every 0.2 s. Both read the upload from and write the results to the store the same way. A "
        "negative overhead: the queue's own costs are smaller than what the job loses sharing the API's process.")
    report.data["pickup_seconds"] = kills
    report.save()
    return report


if __name__ == "__main__":
    main()
