"""Issues 15 and 27's targets measured against real servers: slow clients, worker memory, a hung classifier, held
connections, the video job queue.

    python -m bench.robustness                       # about 10 minutes on 2 cores
    python -m bench.robustness --clients 50 --seconds 20
    python -m bench.robustness --only-issue-27       # only 4-7 below, written to robustness_issue27.{md,json}

1. Slow clients: bench.slow_clients' probe (50 clients per service) with the shipped gevent workers and, in the
   same run, with the sync workers used before (the ratio is what counts on a shared machine).
2. Worker memory: the worst requests under the documented limits, one at a time against one-worker services; the
   worker's peak resident memory (VmHWM, reset before each request) must stay under 1 GB.
3. Hung classifier (SIGSTOP): time until /detect answers, its status and whether every face is `unclassified`.
4. The same with 8 clients at once on 2 detection workers, and one more request after them (the circuit breaker).
5. Worker memory while a video of the largest accepted frames is annotated, and for issue 27's 8000x8000 video.
6. 2,100 connections holding half a request body against 2 detection workers: /health every 0.5 s, as shipped and
   as before (1,000 connections per worker, no body idle timeout).
7. 30 uploads of a 19 MB video from one client: accepted, refused (429 / 503, Retry-After) and the jobs folder's size.

Writes bench/results/robustness.{md,json}. Loopback only; every server is stopped at the end.
"""
from __future__ import annotations

import argparse
import io
import os
import resource
import signal
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from bench.common import Report, command_line
from bench.slow_clients import probe, service_probes
from bench.speed import sample_crops
from facemask.core.images import MAX_IMAGE_PIXELS, list_images
from facemask.core.paths import REPO_ROOT
from facemask.core.settings import Settings
from facemask.serving.local_server import LocalService

GB = 1e9
SIDE = int(MAX_IMAGE_PIXELS ** 0.5) - 44  # 8900: the largest square under the global 80 Mpx limit


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _decoded(photo: bytes) -> np.ndarray:
    import cv2

    image = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("the sample photo does not decode")
    return image


def gradient(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """Smooth content: compresses to little on the wire, decodes to every pixel."""
    width, height = size
    ramp = np.add.outer(np.arange(height) // 8 % 256, np.arange(width) // 8 % 256).astype(np.uint8)
    if mode == "I;16":
        return Image.fromarray(ramp.astype(np.uint16) * 257)
    return Image.fromarray(np.repeat(ramp[..., None], {"RGB": 3, "RGBA": 4}[mode], axis=2), mode)


def worker_pids(service: LocalService) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(service.pid)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def peak_rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) * 1024


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current resident size (Linux >= 4.0)


def memory_case(service: LocalService, name: str, send) -> dict:
    (worker,) = worker_pids(service)
    reset_peak(worker)
    before = peak_rss_bytes(worker)
    started = time.perf_counter()
    try:
        response = send()
        outcome = f"HTTP {response.status_code}"
        if response.headers.get("Content-Type", "").startswith("application/json"):
            body = response.json()
            outcome += f" ({body['error'][:70]})" if "error" in body else (
                f" ({body.get('errors', 0)} of {body['count']} crops refused)" if "count" in body else "")
    except requests.RequestException as error:
        outcome = type(error).__name__
    seconds = time.perf_counter() - started
    peak = peak_rss_bytes(worker)
    return {"service": service.service, "request": name, "answer": outcome, "seconds": seconds,
            "worker RSS before MB": before / 1e6,
            "worker peak RSS MB": peak / 1e6, "under 1 GB": peak < GB}


def memory_rows() -> list[dict]:
    bomb = encoded(Image.new("1", (SIDE, SIDE)))
    crop_96 = encoded(gradient((96, 96)))
    crop_2000 = encoded(gradient((2000, 2000)))
    big = {
        f"{SIDE}x{SIDE} 1-bit PNG ({len(bomb) // 1000} KB)": bomb,
        f"{SIDE}x{SIDE} RGB JPEG": encoded(gradient((SIDE, SIDE)), "JPEG", quality=50),
        f"{SIDE}x{SIDE} RGBA PNG": encoded(gradient((SIDE, SIDE), "RGBA"), compress_level=9),
        f"{SIDE}x{SIDE} 16-bit PNG": encoded(gradient((SIDE, SIDE), "I;16"), compress_level=9),
    }
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: one more full-size copy while the orientation is applied
    big[f"{SIDE}x{SIDE} RGB JPEG, EXIF rotated"] = encoded(gradient((SIDE, SIDE)), "JPEG", quality=50, exif=exif)
    rows = []
    with LocalService("classification", workers=1) as classifier, \
            LocalService("detection", workers=1, env={"CLASSIFIER_URL": classifier.url}) as detection:
        def classify(crop: bytes, count: int):
            files = [("crops", (f"c{i}.png", crop, "image/png")) for i in range(count)]
            return lambda: requests.post(classifier.url + "/classify", files=files, timeout=120)

        rows.append(memory_case(classifier, "idle (/health)", lambda: requests.get(classifier.url + "/health")))
        rows.append(memory_case(classifier, f"24 x {SIDE}x{SIDE} 1-bit PNG crops (issue 15's probe)",
                                classify(bomb, 24)))
        rows.append(memory_case(classifier, f"256 x {SIDE}x{SIDE} 1-bit PNG crops (the crop-count limit)",
                                classify(bomb, 256)))
        rows.append(memory_case(classifier, "256 x 96x96 crops", classify(crop_96, 256)))
        rows.append(memory_case(classifier, "16 x 2000x2000 crops (the per-request pixel budget)",
                                classify(crop_2000, 16)))
        rows.append(memory_case(classifier, "17 x 2000x2000 crops (over the budget)", classify(crop_2000, 17)))
        rows.append(memory_case(detection, "idle (/health)", lambda: requests.get(detection.url + "/health")))
        for name, body in big.items():
            for path in ("/detect", "/annotate"):
                rows.append(memory_case(detection, f"{path} {name}, {len(body) / 1e6:.1f} MB",
                                        lambda path=path, body=body: requests.post(detection.url + path, data=body,
                                                                                    timeout=120)))
    return rows


def freeze(service: LocalService) -> list[int]:
    """SIGSTOP a service's master and workers: connections are accepted by the kernel and never answered."""
    frozen = [service.pid] + worker_pids(service)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    return frozen


def thaw(frozen: list[int]) -> None:
    for pid in frozen:
        os.kill(pid, signal.SIGCONT)


def hung_classifier_rows(photo: bytes) -> list[dict]:
    with LocalService("classification", workers=1) as classifier, \
            LocalService("detection", workers=1, env={"CLASSIFIER_URL": classifier.url}) as detection:
        requests.post(detection.url + "/detect", data=photo, timeout=60)  # warm
        frozen = freeze(classifier)
        try:
            started = time.perf_counter()
            response = requests.post(detection.url + "/detect", data=photo, timeout=120)
            seconds = time.perf_counter() - started
        finally:
            thaw(frozen)
    body = response.json() if response.headers.get("Content-Type") == "application/json" else {}
    faces = body.get("faces", [])
    return [{"case": "classifier SIGSTOPped, /detect with a 6-face photo", "seconds": seconds,
             "status": response.status_code, "content type": response.headers.get("Content-Type"),
             "faces": len(faces), "unclassified": sum(face["status"] == "unclassified" for face in faces),
             "target met": seconds < 20 and response.status_code == 503 and len(faces) == 6
             and all(face["status"] == "unclassified" for face in faces)}]


def frozen_classifier_answers(classifier: LocalService, detection: LocalService, photo: bytes,
                              clients: int) -> list[tuple[float, requests.Response]]:
    """(seconds, response) of `clients` /detect requests at once while the classifier is SIGSTOPped, then of one
    more request after them; the classifier is resumed before this returns."""
    def detect(_):
        started = time.perf_counter()
        response = requests.post(detection.url + "/detect", data=photo, timeout=90)
        return time.perf_counter() - started, response

    frozen = freeze(classifier)
    try:
        with ThreadPoolExecutor(clients) as pool:
            answers = list(pool.map(detect, range(clients)))
        return answers + [detect(None)]
    finally:
        thaw(frozen)


def concurrent_hung_classifier_rows(photo: bytes, clients: int = 8) -> list[dict]:
    """Issue 27: `clients` at once on /detect while the classifier is SIGSTOPped, then one more request; the circuit
    breaker makes every request after the first deadline fail fast."""
    with LocalService("classification", workers=1) as classifier, \
            LocalService("detection", workers=2, env={"CLASSIFIER_URL": classifier.url}) as detection:
        for _ in range(4):  # both workers warm
            requests.post(detection.url + "/detect", data=photo, timeout=60)
        answers = frozen_classifier_answers(classifier, detection, photo, clients)

    def kept(response) -> bool:
        faces = response.json().get("faces", []) if response.headers.get("Content-Type") == "application/json" else []
        return response.status_code == 503 and len(faces) == 6 and all(f["status"] == "unclassified" for f in faces)

    seconds = sorted(round(elapsed, 1) for elapsed, _ in answers[:-1])
    return [{"case": f"{clients} clients at once, classifier SIGSTOPped, 2 detection workers",
             "answers at s": ", ".join(map(str, seconds)), "slowest s": max(seconds),
             "next request s": round(answers[-1][0], 2),
             "503 JSON, 6 faces unclassified": f"{sum(kept(r) for _, r in answers)} of {len(answers)}",
             "target met": max(seconds) <= 20 and all(kept(r) for _, r in answers)}]


def video_clip(path: Path, size: tuple[int, int], frames: int, photo: bytes | None) -> Path:
    """MJPEG AVI of the sample photo stretched to `size` (faces to detect and track in every frame), or of plain
    grey frames without a photo (small on the wire whatever their size)."""
    import cv2

    picture = (np.full((size[1], size[0], 3), 128, np.uint8) if photo is None
               else cv2.resize(_decoded(photo), size))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25, size)
    for index in range(frames):
        writer.write(np.roll(picture, index * 4, axis=1))
    writer.release()
    return path


def wait_for_job(base: str, status_url: str, timeout: float = 600) -> dict:
    deadline, status = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        status = requests.get(base + status_url, timeout=10).json()
        if status.get("state") in ("done", "failed"):
            break
        time.sleep(0.5)
    return status


def video_memory_rows(photo: bytes, folder: Path) -> list[dict]:
    """Issue 27: a worker's peak memory while it annotates the largest video frames it accepts (MAX_VIDEO_PIXELS,
    4K UHD), and for the 8000x8000 video that took one to 5 GB (refused now)."""
    rows = []
    clips = {"3840x2160 MJPEG, 40 frames (the largest accepted)": video_clip(folder / "uhd.avi", (3840, 2160), 40,
                                                                          photo),
             "8000x8000 MJPEG, 20 plain frames (issue 27's probe)": video_clip(folder / "huge.avi", (8000, 8000), 20,
                                                                             None)}
    with LocalService("classification", workers=1) as classifier, \
            LocalService("detection", workers=1, env={"CLASSIFIER_URL": classifier.url,
                                                      "FACEMASK_JOBS_STORE": str(folder / "jobs")}) as detection:
        for name, clip in clips.items():
            (worker,) = worker_pids(detection)
            reset_peak(worker)
            started = time.perf_counter()
            response = requests.post(detection.url + "/videos", files={"video": clip.open("rb")}, timeout=120)
            outcome = f"HTTP {response.status_code}"
            if response.status_code == 202:
                status = wait_for_job(detection.url, response.json()["status_url"])
                outcome += f", job {status.get('state')} ({status.get('frames_done')} frames)"
            else:
                outcome += f" ({response.json().get('error', '')[:60]})"
            peak = peak_rss_bytes(worker)
            rows.append({"video": f"{name}, {clip.stat().st_size / 1e6:.1f} MB", "answer": outcome,
                         "seconds": round(time.perf_counter() - started, 1), "worker peak RSS MB": peak / 1e6,
                         "under 1 GB": peak < GB})
    return rows


def _hold(port: int, count: int) -> tuple[list[socket.socket], int]:
    """`count` connections that each send their headers and 2 bytes of a 1 MB body, then nothing."""
    held, refused = [], 0
    for _ in range(count):
        try:
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            client.sendall(b"POST /detect HTTP/1.1\r\nHost: bench\r\nContent-Type: image/jpeg\r\n"
                           b"Content-Length: 1000000\r\n\r\nab")
            held.append(client)
        except OSError:
            refused += 1
    return held, refused


def held_connection_rows(connections: int = 2100, seconds: float = 30.0) -> list[dict]:
    """Issue 27: `connections` idle partial bodies against a 2-worker detection service; /health timed every 0.5 s
    for `seconds`, as shipped and as before (1,000 connections per worker, no body idle timeout)."""
    _raise_open_files(connections + 200)
    rows = []
    for label, env in (("shipped", {}),
                       ("before (1000 per worker, no idle timeout)",
                        {"GUNICORN_WORKER_CONNECTIONS": "1000", "BODY_IDLE_TIMEOUT_S": "100000"})):
        with LocalService("classification", workers=1) as classifier, \
                LocalService("detection", workers=2, env={**env, "CLASSIFIER_URL": classifier.url}) as detection:
            before = sum(peak_rss_bytes(pid) for pid in worker_pids(detection))
            started = time.monotonic()
            held, refused = _hold(detection.port, connections)
            opened_s = time.monotonic() - started
            times, failures = [], 0
            session = requests.Session()
            while time.monotonic() - started < seconds:
                probe_started = time.perf_counter()
                try:
                    session.get(detection.url + "/health", timeout=5).raise_for_status()
                    times.append((time.perf_counter() - probe_started, time.monotonic() - started))
                except requests.RequestException:
                    failures += 1
                    session = requests.Session()
                time.sleep(0.5)
            dropped = 0
            for client in held:
                client.setblocking(False)
                try:
                    dropped += client.recv(64) != b""  # the 408 (or the end of the connection) came back
                except BlockingIOError:
                    pass
                except OSError:
                    dropped += 1
                client.close()
            peak = sum(peak_rss_bytes(pid) for pid in worker_pids(detection))
        rows.append({"service": label, "held connections": len(held), "refused": refused,
                     "opened in s": round(opened_s, 1), "/health probes": len(times) + failures,
                     "/health failed (5 s timeout)": failures,
                     "/health slowest s": round(max(times)[0], 3) if times else None,
                     "slowest at s": round(max(times)[1], 1) if times else None,
                     f"answered (408) within {seconds:.0f} s": dropped,
                     "workers' peak RSS MB (before -> during)": f"{before / 1e6:.0f} -> {peak / 1e6:.0f}",
                     "target met": failures == 0 and bool(times) and max(times)[0] < 1})
    return rows


def _raise_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def job_queue_rows(folder: Path, uploads: int = 30) -> list[dict]:
    """Issue 27: `uploads` uploads of a 19 MB video from one client, one after another, as the probe sent them."""
    photo, frames = REPO_ROOT.joinpath("sample-images", "group_mixed.jpg").read_bytes(), 100
    clip = video_clip(folder / "upload.avi", (1280, 720), frames, photo)
    for _ in range(5):  # the probe's 19 MB, under the 20 MB upload limit: frames scaled until it is that large
        if 18e6 <= clip.stat().st_size <= 19.5e6:
            break
        frames = int(frames * 18.8e6 / clip.stat().st_size)
        clip = video_clip(folder / "upload.avi", (1280, 720), frames, photo)
    jobs = folder / "jobs"
    statuses = []
    with LocalService("classification", workers=1) as classifier, \
            LocalService("detection", workers=2, env={"CLASSIFIER_URL": classifier.url,
                                                      "FACEMASK_JOBS_STORE": str(jobs)}) as detection:
        started, status_urls, most_active = time.perf_counter(), [], 0
        for index in range(uploads):
            response = requests.post(detection.url + "/videos", timeout=120,
                                     files={"video": (f"clip{index}.avi", clip.read_bytes())})
            statuses.append((response.status_code, response.headers.get("Retry-After"),
                             response.headers.get("Content-Type")))
            if response.status_code == 202:
                status_urls.append(response.json()["status_url"])
            active = sum(requests.get(detection.url + url, timeout=10).json()["state"] in ("queued", "running")
                         for url in status_urls)
            most_active = max(most_active, active)
        seconds = time.perf_counter() - started
        disk = sum(path.stat().st_size for path in jobs.rglob("*") if path.is_file())
        accepted = [status for status, _, _ in statuses if status == 202]
        refused = [(status, retry) for status, retry, kind in statuses if status in (429, 503)
                   and kind == "application/json"]
    return [{"uploads": f"{uploads} x {clip.stat().st_size / 1e6:.0f} MB from one client",
             "accepted (202)": len(accepted), "most queued or running at once": most_active,
             "429": sum(status == 429 for status, _ in refused),
             "503": sum(status == 503 for status, _ in refused),
             "refusals with Retry-After": sum(retry is not None for _, retry in refused),
             "other answers": len(statuses) - len(accepted) - len(refused),
             "jobs folder MB after": round(disk / 1e6), "seconds": round(seconds, 1),
             "target met": most_active <= Settings.max_video_jobs_per_client and len(refused) + len(accepted)
             == uploads and all(retry is not None for _, retry in refused)}]


def main(argv=None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time per service under slow clients")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--only-issue-27", action="store_true",
                        help="only issue 27's rows (hung classifier under 8 clients, video memory, held connections, "
                             "the video job queue), about 5 minutes")
    args = parser.parse_args(argv)
    images = list_images(REPO_ROOT / "sample-images")
    photo = next(p for p in images if p.name == "group_mixed.jpg").read_bytes()
    crops = sample_crops(images)
    name = "robustness_issue27" if args.only_issue_27 else "robustness"  # a partial run keeps the full file
    report = Report(name, "Robustness under abuse (issues 15 and 27)", command_line("bench.robustness", argv),
                    **({"out_dir": args.out_dir} if args.out_dir else {}))

    if not args.only_issue_27:
        issue_15_tables(report, args, photo, crops)
    with tempfile.TemporaryDirectory(prefix="robustness-") as scratch:
        for title, rows, note in (
                ("Hung classifier, 8 clients at once", lambda: concurrent_hung_classifier_rows(photo),
                 "Target (issue 27): every answer within 20 s, all 503 JSON with the 6 faces kept as unclassified."),
                ("Worker memory for videos", lambda: video_memory_rows(photo, Path(scratch)),
                 "One worker; its peak resident memory (VmHWM) reset before each upload and read once the job ended. "
                 "Target: under 1 GB."),
                ("Held connections", held_connection_rows,
                 "2,100 connections each holding headers and 2 bytes of a 1 MB body against 2 detection workers; "
                 "/health every 0.5 s for 30 s. Target: every /health under 1 s."),
                ("Video job queue", lambda: job_queue_rows(Path(scratch)),
                 "One client uploads 30 videos in a row to 2 detection workers. Target: a bounded queue, every "
                 "refusal a JSON 429 or 503 with Retry-After.")):
            table = rows()
            for row in table:
                print(row, flush=True)
            report.table(title, table, note)
    report.save()
    return report


def issue_15_tables(report: Report, args, photo: bytes, crops) -> None:
    slow = []
    for worker_class, label in (("gevent", "gevent (shipped)"), ("sync", "sync (before)")):
        env = {"GUNICORN_WORKER_CLASS": worker_class}
        with LocalService("classification", workers=2, env=env) as classifier, \
                LocalService("detection", workers=2, env={**env, "CLASSIFIER_URL": classifier.url}) as detection:
            probes = service_probes(detection.url, classifier.url, photo, crops)
            for name, service, path in (("detection", detection, "/detect"),
                                        ("classification", classifier, "/classify")):
                for row in probe(service.url, service.port, probes[name], args.clients, args.seconds,
                                 slow_path=path):
                    slow.append({"workers": label, "service": name, **{k: v for k, v in row.items()
                                                                       if k != "service"}})
                    print(slow[-1], flush=True)
    report.table("Slow clients", slow,
                 f"{args.clients} slow clients per service (half trickle their headers, half a 10 MB body, one byte "
                 "every 0.5 s), 2 workers per service, probe timeout 5 s. Target: every answer within 1 s of the "
                 "unloaded median, no failure.")

    memory = memory_rows()
    for row in memory:
        print(row, flush=True)
    report.table("Worker memory", memory,
                 "One worker per service; the worker's peak resident memory (VmHWM) is reset before each request. "
                 "Target: under 1 GB for every request within the documented limits.")

    hung = hung_classifier_rows(photo)
    print(hung, flush=True)
    report.table("Hung classifier", hung, "Target: 503 JSON with every face unclassified within 20 s.")


if __name__ == "__main__":
    main()
