"""Bounded load test of both services on loopback: concurrent clients for a fixed time, then latency and memory.

    python -m bench.load_test                       # 8 clients x 60 s against /classify and /detect
    python -m bench.load_test --clients 4 --seconds 20

Every request must succeed; p50/p95/p99 latency, throughput and the services' resident memory at start and end
(to see growth) go to bench/results/load_test.{md,json}. Traffic goes to 127.0.0.1 only and stops by itself.
"""
from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import numpy as np
import requests

from bench.common import Report, command_line
from bench.speed import process_tree_mb, sample_crops
from facemask.core.images import list_images
from facemask.core.paths import REPO_ROOT
from facemask.serving.local_server import LocalService


def hammer(send, clients: int, seconds: float) -> dict:
    """Run `send(session, i)` from `clients` threads for `seconds`; latencies and failures."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(worker: int) -> None:
        session, count = requests.Session(), 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                response = send(session, worker * 100000 + count)
                ok = response.status_code == 200
                detail = f"HTTP {response.status_code}"
            except requests.RequestException as error:
                ok, detail = False, type(error).__name__
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures.append(detail)
            count += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    values = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"requests": len(latencies) + len(failures), "errors": len(failures), "requests/s": len(latencies) / elapsed,
            "p50 ms": float(np.percentile(values, 50)), "p95 ms": float(np.percentile(values, 95)),
            "p99 ms": float(np.percentile(values, 99)), "first errors": sorted(set(failures))[:3]}


def main(argv=None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=REPO_ROOT / "sample-images")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    images = [p.read_bytes() for p in list_images(args.images)]
    crops = sample_crops(list_images(args.images))
    report = Report("load_test", f"Load test: {args.clients} clients x {args.seconds:.0f} s per service",
                    command_line("bench.load_test", argv), **({"out_dir": args.out_dir} if args.out_dir else {}))
    rows = []
    with LocalService("classification", workers=2) as classifier, \
            LocalService("detection", workers=2, env={"CLASSIFIER_URL": classifier.url}) as detection:
        targets = {
            "/classify (6 crops per request)": (classifier, lambda s, i: s.post(
                classifier.url + "/classify", timeout=60,
                files=[("crops", (f"c{k}.png", crops[(i + k) % len(crops)], "image/png")) for k in range(6)])),
            "/detect (one sample photo per request)": (detection, lambda s, i: s.post(
                detection.url + "/detect", data=images[i % len(images)], timeout=60)),
        }
        for name, (service, send) in targets.items():
            memory_before = process_tree_mb(service.pid, "VmRSS")
            result = hammer(send, args.clients, args.seconds)
            rows.append({"endpoint": name, **result, "RSS MB before": memory_before,
                         "RSS MB after": process_tree_mb(service.pid, "VmRSS")})
            print(rows[-1], flush=True)
    report.table("Results", rows, "Memory is the service's master and workers together (detection's figure excludes "
                                  "the classifier it calls).")
    report.save()
    if any(row["errors"] for row in rows):
        raise SystemExit("load test had errors")
    return report


if __name__ == "__main__":
    main()
