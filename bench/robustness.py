"""Issue 15's targets measured against real servers: slow clients, worker memory, a hung classifier.

    python -m bench.robustness                       # about 4 minutes on 2 cores
    python -m bench.robustness --clients 50 --seconds 20

1. Slow clients: bench.slow_clients' probe (50 clients per service) with the shipped gevent workers and, in the
   same run, with the sync workers used before (the ratio is what counts on a shared machine).
2. Worker memory: the worst requests under the documented limits, one at a time against one-worker services; the
   worker's peak resident memory (VmHWM, reset before each request) must stay under 1 GB.
3. Hung classifier (SIGSTOP): time until /detect answers, its status and whether every face is `unclassified`.

Writes bench/results/robustness.{md,json}. Loopback only; every server is stopped at the end.
"""
from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from bench.common import REPO_ROOT, Report, command_line
from bench.slow_clients import probe, service_probes
from bench.speed import sample_crops
from facemask.images import MAX_IMAGE_PIXELS, list_images
from facemask.local_server import LocalService

GB = 1e9
SIDE = int(MAX_IMAGE_PIXELS ** 0.5) - 44  # 8900: the largest square under the global 80 Mpx limit


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """Smooth content: compresses to little on the wire, decodes to every pixel."""
    width, height = size
    ramp = np.add.outer(np.arange(height) // 8 % 256, np.arange(width) // 8 % 256).astype(np.uint8)
    planes = {"RGB": 3, "RGBA": 4}.get(mode)
    if mode == "I;16":
        return Image.fromarray(ramp.astype(np.uint16) * 257)
    return Image.fromarray(np.repeat(ramp[..., None], planes, axis=2), mode)


def worker_pids(service: LocalService) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(service.process.pid)], capture_output=True, text=True).stdout
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


def hung_classifier_rows(photo: bytes) -> list[dict]:
    with LocalService("classification", workers=1) as classifier, \
            LocalService("detection", workers=1, env={"CLASSIFIER_URL": classifier.url}) as detection:
        requests.post(detection.url + "/detect", data=photo, timeout=60)  # warm
        frozen = [classifier.process.pid] + worker_pids(classifier)
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            started = time.perf_counter()
            response = requests.post(detection.url + "/detect", data=photo, timeout=120)
            seconds = time.perf_counter() - started
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
    body = response.json() if response.headers.get("Content-Type") == "application/json" else {}
    faces = body.get("faces", [])
    return [{"case": "classifier SIGSTOPped, /detect with a 6-face photo", "seconds": seconds,
             "status": response.status_code, "content type": response.headers.get("Content-Type"),
             "faces": len(faces), "unclassified": sum(face["status"] == "unclassified" for face in faces),
             "target met": seconds < 20 and response.status_code == 503 and len(faces) == 6
             and all(face["status"] == "unclassified" for face in faces)}]


def main(argv=None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time per service under slow clients")
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    images = list_images(REPO_ROOT / "sample-images")
    photo = next(p for p in images if p.name == "group_mixed.jpg").read_bytes()
    crops = sample_crops(images)
    report = Report("robustness", "Robustness under abuse (issue 15)", command_line("bench.robustness", argv),
                    **({"out_dir": args.out_dir} if args.out_dir else {}))

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
    report.save()
    return report


if __name__ == "__main__":
    main()
