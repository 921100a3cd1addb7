"""Slow-client probe: do /health and a normal request still answer while many clients hold connections open?

    python -m bench.slow_clients                                  # 50 slow clients x 20 s per service, shipped set-up
    python -m bench.slow_clients --worker-class sync --name slow_clients_sync    # the set-up before issue 15
    python -m bench.slow_clients --front nginx --worker-class sync               # sync workers behind nginx

Half the slow clients send a request's headers one byte at a time, half send complete headers announcing a large
body and then trickle it. Each reconnects when the server drops it. Meanwhile /health and a normal request
(/detect with a sample photo, /classify with 6 crops) are timed; the target (issue 15) is every answer within 1 s
of its unloaded time. Loopback only; every socket is closed and every server stopped at the end.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

from bench.common import Report, command_line
from bench.speed import sample_crops
from facemask.core.images import list_images
from facemask.core.paths import REPO_ROOT
from facemask.serving.local_server import LocalService, free_port, wait_for_health

SLOW_BYTE_INTERVAL_S = 0.5
TARGET_EXTRA_S = 1.0


@dataclass
class SlowClients:
    """`count` threads holding connections to 127.0.0.1:port open by sending a request very slowly."""

    port: int
    count: int
    path: str = "/detect"
    connections: int = 0
    dropped_by_server: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, slow_body: bool) -> None:
        while not self._stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    with self._lock:
                        self.connections += 1
                    head = f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    if slow_body:
                        sock.sendall((head + "Content-Type: image/jpeg\r\nContent-Length: 10000000\r\n\r\n").encode())
                    else:
                        sock.sendall((head + "X-Slow: ").encode())
                    while not self._stop.wait(SLOW_BYTE_INTERVAL_S):
                        sock.sendall(b"a")
            except OSError:
                with self._lock:
                    self.dropped_by_server += 1
                self._stop.wait(0.2)

    def __enter__(self) -> "SlowClients":
        self._threads = [threading.Thread(target=self._run, args=(i % 2 == 1,), daemon=True) for i in range(self.count)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


class NginxProxy:
    """nginx on 127.0.0.1 buffering requests for a service on another loopback port: the alternative measured here."""

    CONFIG = """
daemon off;
{user}
worker_processes 1;
pid {home}/nginx.pid;
error_log {home}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {home}/body; proxy_temp_path {home}/proxy; fastcgi_temp_path {home}/fastcgi;
    uwsgi_temp_path {home}/uwsgi; scgi_temp_path {home}/scgi;
    client_max_body_size {max_body}; client_header_timeout 10s; client_body_timeout 10s; send_timeout 30s;
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://127.0.0.1:{upstream}; proxy_read_timeout 65s; }}
    }}
}}
"""

    def __init__(self, upstream_port: int, port: int | None = None, max_body: str = "20m"):
        self.upstream_port, self.port, self.max_body = upstream_port, port or free_port(), max_body
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> "NginxProxy":
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        home = Path(tempfile.mkdtemp(prefix="facemask-nginx-"))
        config = home / "nginx.conf"
        config.write_text(self.CONFIG.format(home=home, port=self.port, upstream=self.upstream_port,
                                             max_body=self.max_body, user="user root;" if os.geteuid() == 0 else ""))
        self.process = subprocess.Popen([binary, "-c", str(config), "-p", str(home)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        if wait_for_health(self.url, 10, self.process):
            return self
        self.stop()
        raise RuntimeError(f"nginx did not start (see {home}/error.log)")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def timed(send, samples: int, timeout: float, pause: float = 0.2) -> dict:
    """Latency of `samples` calls of send(timeout) -> Response; a failure counts as the timeout."""
    latencies, failures = [], []
    for _ in range(samples):
        started = time.perf_counter()
        try:
            response = send(timeout)
            if response.status_code != 200:
                failures.append(f"HTTP {response.status_code}")
        except requests.RequestException as error:
            failures.append(type(error).__name__)
        latencies.append(time.perf_counter() - started)
        time.sleep(pause)
    values = np.array(latencies)
    return {"median s": float(np.median(values)), "max s": float(values.max()), "failures": len(failures),
            "samples": samples, "first failure": failures[0] if failures else None}


def probe(base_url: str, port: int, probes: dict, slow_clients: int, seconds: float, timeout: float = 5.0,
          slow_path: str = "/detect") -> list[dict]:
    """Each probe timed unloaded, then while `slow_clients` hold connections; rows with the 1 s target checked."""
    unloaded = {name: timed(send, 5, timeout) for name, send in probes.items()}
    rows = []
    with SlowClients(port, slow_clients, slow_path) as slow:
        time.sleep(min(3.0, seconds / 4))  # let every slow client connect and start trickling
        deadline = time.monotonic() + seconds
        loaded: dict[str, list] = {name: [] for name in probes}
        while time.monotonic() < deadline:
            for name, send in probes.items():
                loaded[name].append(timed(send, 1, timeout, pause=0.1))
        connected, dropped = slow.connections, slow.dropped_by_server
    for name in probes:
        samples = loaded[name]
        worst = max(s["max s"] for s in samples)
        failures = sum(s["failures"] for s in samples)
        rows.append({"service": base_url, "request": name, "slow clients": slow_clients,
                     "unloaded median s": unloaded[name]["median s"], "loaded median s":
                     float(np.median([s["max s"] for s in samples])), "loaded max s": worst,
                     "samples": len(samples), "failures": failures,
                     "first failure": next((s["first failure"] for s in samples if s["first failure"]), None),
                     "slow connections opened": connected, "dropped by server": dropped,
                     "target met": failures == 0 and worst <= unloaded[name]["median s"] + TARGET_EXTRA_S})
    return rows


def service_probes(detection_url: str, classifier_url: str, photo: bytes, crops: list[bytes]) -> dict:
    session = requests.Session()
    files = [("crops", (f"c{k}.png", crops[k % len(crops)], "image/png")) for k in range(6)]
    return {
        "detection": {
            "GET /health": lambda t: session.get(detection_url + "/health", timeout=t),
            "POST /detect (sample photo)": lambda t: session.post(detection_url + "/detect", data=photo, timeout=t),
        },
        "classification": {
            "GET /health": lambda t: session.get(classifier_url + "/health", timeout=t),
            "POST /classify (6 crops)": lambda t: session.post(classifier_url + "/classify", files=files, timeout=t),
        },
    }


def main(argv=None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50, help="slow clients per service")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time per service under load")
    parser.add_argument("--worker-class", default=None, help="gunicorn worker class (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=None, help="gthread threads per worker")
    parser.add_argument("--front", choices=("none", "nginx"), default="none", help="a buffering proxy in front")
    parser.add_argument("--name", default="slow_clients")
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    env = {}
    if args.worker_class:
        env["GUNICORN_WORKER_CLASS"] = args.worker_class
    if args.threads:
        env["GUNICORN_THREADS"] = str(args.threads)
    setup = f"worker class {args.worker_class or 'shipped default'}" + (f", {args.threads} threads" if args.threads
                                                                      else "") + f", front: {args.front}"
    images = list_images(REPO_ROOT / "sample-images")
    photo = next(p for p in images if p.name == "group_mixed.jpg").read_bytes()
    crops = sample_crops(images)
    report = Report(args.name, f"Slow clients: {args.clients} per service, {setup}", command_line("bench.slow_clients",
                    argv), **({"out_dir": args.out_dir} if args.out_dir else {}))
    rows = []
    with LocalService("classification", workers=2, env=env) as classifier, \
            LocalService("detection", workers=2, env={**env, "CLASSIFIER_URL": classifier.url}) as detection:
        fronts: dict[str, LocalService | NginxProxy] = {"classification": classifier, "detection": detection}
        proxies = []
        if args.front == "nginx":
            proxies = [NginxProxy(service.port).start() for service in (classifier, detection)]
            fronts = {"classification": proxies[0], "detection": proxies[1]}
        try:
            probes = service_probes(fronts["detection"].url, fronts["classification"].url, photo, crops)
            for service, path in (("detection", "/detect"), ("classification", "/classify")):
                front = fronts[service]
                rows += probe(front.url, front.port, probes[service], args.clients, args.seconds, slow_path=path)
                print(rows[-2], rows[-1], sep="\n", flush=True)
        finally:
            for proxy in proxies:
                proxy.stop()
    for row in rows:
        row["set-up"] = setup
    report.table("Latency with and without slow clients", rows,
                 f"Target: no failure and every answer within {TARGET_EXTRA_S:.0f} s of the unloaded median. "
                 f"Slow clients send one byte every {SLOW_BYTE_INTERVAL_S} s (half in the headers, half in a 10 MB "
                 "body); 2 workers per service; probe timeout 5 s (a failure counts as 5 s).")
    report.save()
    return report


if __name__ == "__main__":
    main()
