"""Several classifier replicas behind one detection service, on loopback; each replica's share from its /metrics.

    python -m bench.scale_out                  # 3 replicas, 4 clients x 20 s of /detect, plus connection cost
    python -m bench.scale_out --replicas 2 --seconds 10

Measures (bench/results/scale_out.{md,json}):
- the share of /classify requests each replica served while concurrent clients sent /detect to a detection
  service given the replicas as a comma-separated CLASSIFIER_URL (read from every replica's own /metrics);
- what a fresh connection per request costs, the price of not pinning one kept-alive connection when
  CLASSIFIER_URL is one balanced name (threaded gunicorn workers, which keep connections alive);
- the detection service's per-stage latency means (decode, detect, classify, draw) from its Prometheus histograms.
"""
from __future__ import annotations

import argparse
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Sequence

import numpy as np
import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.common import Report, command_line
from bench.load_test import hammer
from facemask.core.crops import crop_face
from facemask.core.detector import RetinaFaceDetector
from facemask.core.images import decode_image, list_images
from facemask.core.paths import REPO_ROOT
from facemask.core.pipeline import ClassifierClient
from facemask.serving.local_server import LocalService

ROUNDS = 5
KEEPALIVE_WORKERS = {"GUNICORN_CMD_ARGS": "--worker-class gthread --threads 2"}


def samples(url: str, name: str) -> dict[tuple, float]:
    text = requests.get(url + "/metrics", timeout=10).text
    return {tuple(sorted(s.labels.items())): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name}


def classify_count(url: str) -> float:
    return sum(v for labels, v in samples(url, "classifier_http_requests_total").items()
               if dict(labels).get("endpoint") == "/classify")


def requests_per_second(client: ClassifierClient, crops: list, seconds: float) -> float:
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        client.classify(crops)
        count += 1
    return count / (time.perf_counter() - started)


def main(argv=None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--images", type=Path, default=REPO_ROOT / "sample-images")
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    images = [p.read_bytes() for p in list_images(args.images)]
    first = decode_image(list_images(args.images)[0])
    crops = [crop_face(first, f.landmarks, f.box) for f in RetinaFaceDetector().detect(first)]
    report = Report("scale_out", f"Scale-out: {args.replicas} classifier replicas behind one detection service",
                    command_line("bench.scale_out", argv), **({"out_dir": args.out_dir} if args.out_dir else {}))

    with ExitStack() as stack:
        replicas = [stack.enter_context(LocalService("classification", workers=1, env=KEEPALIVE_WORKERS))
                    for _ in range(args.replicas)]
        urls = [replica.url for replica in replicas]

        # 1. A fresh connection per request vs one kept-alive connection, same replica, alternating rounds.
        rates: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(ROUNDS):
            for keep_alive in (True, False):
                client = ClassifierClient(urls[0], keep_alive=keep_alive)
                rates[keep_alive].append(requests_per_second(client, crops, args.seconds / ROUNDS / 2))
        kept, fresh = float(np.median(rates[True])), float(np.median(rates[False]))
        report.table("Connection per request", [
            {"client": "one kept-alive connection", f"/classify requests/s ({len(crops)} crops)": kept,
             "ms per request": 1000 / kept},
            {"client": "fresh connection per request (one balanced URL)",
             f"/classify requests/s ({len(crops)} crops)": fresh, "ms per request": 1000 / fresh,
             "cost ms": 1000 / fresh - 1000 / kept}],
            f"Median of {ROUNDS} alternating rounds, one client, one replica with threaded (keep-alive) gunicorn "
            "workers.")

        # 2. Replica shares under concurrent /detect load.
        before = [classify_count(url) for url in urls]
        with LocalService("detection", workers=2, env={"CLASSIFIER_URL": ",".join(urls)}) as detection:
            result = hammer(lambda s, i: s.post(detection.url + "/detect", data=images[i % len(images)], timeout=60),
                            args.clients, args.seconds)
            stages = samples(detection.url, "detection_stage_seconds_sum")
            counts = samples(detection.url, "detection_stage_seconds_count")
        served = [int(classify_count(url) - already) for url, already in zip(urls, before)]
        total = sum(served)
        report.table("Replica shares", [
            {"replica": f"classifier {i + 1}", "/classify requests": n, "share": n / total if total else float("nan")}
            for i, n in enumerate(served)],
            f"{args.clients} clients x {args.seconds:.0f} s of /detect (sample photos) against one detection service "
            f"(2 workers, CLASSIFIER_URL = the {args.replicas} replicas); {result['requests']} requests, "
            f"{result['errors']} errors, {result['requests/s']:.1f} requests/s, p50 {result['p50 ms']:.0f} ms. "
            f"Even share: {1 / args.replicas:.3f}.")
        report.table("Detection stages", [
            {"stage": dict(labels)["stage"], "observations": int(counts[labels]),
             "mean ms": 1000 * stages[labels] / counts[labels] if counts[labels] else float("nan")}
            for labels in stages],
            "From detection_stage_seconds (Prometheus histogram) of the same run; draw is timed by /annotate and "
            "/detect?annotated=1 (the upload page), not by /detect.")
    report.save()
    print(report_summary(served, kept, fresh), flush=True)
    if result["errors"]:
        raise SystemExit("scale-out run had errors")
    return report


def report_summary(served: Sequence[float], kept: float, fresh: float) -> str:
    total = sum(served) or 1
    return (f"replica shares: {', '.join(f'{n / total:.3f}' for n in served)}; "
            f"/classify {kept:.1f} req/s kept-alive vs {fresh:.1f} req/s fresh connection")


if __name__ == "__main__":
    main()
