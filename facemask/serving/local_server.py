"""Start the classification service under gunicorn on this machine, for the CLI, the tests and the benchmarks."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import requests

from facemask.core.errors import FacemaskError
from facemask.core.paths import PACKAGES_ROOT

SERVICES = {
    "classification": ("classification/gunicorn.conf.py", "classification.app:create_app()"),
    "detection": ("detection/gunicorn.conf.py", "detection.app:create_app()"),
}


class ServiceStartError(FacemaskError, RuntimeError):
    """A local service that exited or did not answer at start-up."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def is_local(url: str) -> bool:
    return urlparse(url).hostname in ("localhost", "127.0.0.1", "::1")


def wait_for_health(url: str, seconds: float, process: subprocess.Popen | None = None) -> bool:
    """True once GET url/health answers 200 within `seconds`; False on time-out, or as soon as `process` exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (process is None or process.poll() is None):
        try:
            if requests.get(url + "/health", timeout=1.0).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return False


class LocalService:
    """gunicorn running one of the services on 127.0.0.1; a context manager that waits for /ready."""

    def __init__(self, service: str, port: int | None = None, workers: int = 2, env: dict | None = None,
                 ready_timeout: float = 90.0, log_path: Path | None = None):
        self.service, self.port = service, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers, self.extra_env, self.ready_timeout, self.log_path = workers, env or {}, ready_timeout, log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> "LocalService":
        config, app = SERVICES[self.service]
        env = {**os.environ, "BIND": f"127.0.0.1:{self.port}", "WEB_CONCURRENCY": str(self.workers),
               **self.extra_env}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each server gets its own metrics folder
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        # Own session: a Ctrl-C meant for the CLI must not reach gunicorn before the CLI has finished its work.
        self.process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", config, app], cwd=PACKAGES_ROOT,
                                        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            healthy = wait_for_health(self.url, self.ready_timeout, self.process)
        except BaseException:
            # A Ctrl-C or SIGTERM while it starts: the caller never gets the service to stop (its context manager
            # was not entered yet), so it is stopped here or it runs on, orphaned (issue 27).
            self.stop()
            raise
        if healthy:
            return self
        if self.process.poll() is not None:
            raise ServiceStartError(f"{self.service} service exited with code {self.process.returncode} at start-up"
                               + (f" (log: {self.log_path})" if self.log_path else ""))
        self.stop()
        raise ServiceStartError(f"{self.service} service did not answer on {self.url} within "
                                f"{self.ready_timeout:.0f} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=35)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def pid(self) -> int:
        """The gunicorn master's process id."""
        if self.process is None:
            raise ServiceStartError(f"{self.service} service is not running")
        return self.process.pid

    def worker_peak_rss(self) -> list[int]:
        """Peak resident memory (VmHWM) of each of its gunicorn workers so far, in bytes."""
        if self.process is None:
            raise ServiceStartError(f"{self.service} service is not running")
        children = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True,
                                  text=True).stdout.split()
        peaks = []
        for pid in children:
            status = Path(f"/proc/{pid}/status").read_text()
            peaks.append(int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) * 1024)
        return peaks

    def __enter__(self) -> "LocalService":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LocalRedis:
    """Debian's (or the PyPI wheel's) redis-server on a 127.0.0.1 port, in memory only: for the queue's tests and
    benchmarks. A context manager."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    @staticmethod
    def executable() -> str | None:
        import shutil

        return shutil.which("redis-server")

    def start(self) -> "LocalRedis":
        executable = self.executable()
        if executable is None:
            raise ServiceStartError("redis-server is not installed (apt-get install redis-server)")
        self.process = subprocess.Popen([executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no"], stdout=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise ServiceStartError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def __enter__(self) -> "LocalRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LocalWorker:
    """`python -m facemask.worker` with the given environment (FACEMASK_QUEUE_URL, FACEMASK_JOBS_STORE,
    CLASSIFIER_URL); started() returns once it listens on the queue. A context manager that stops it with SIGTERM."""

    def __init__(self, name: str, env: dict, log_path: Path | None = None, metrics_port: int | None = None):
        self.name, self.env, self.log_path = name, env, log_path
        self.metrics_port = metrics_port if metrics_port is not None else free_port()
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> "LocalWorker":
        return self.launch().wait_until_listening(timeout)

    def launch(self) -> "LocalWorker":
        """The process only, not waiting for it (several workers load their models at once)."""
        env = {**os.environ, **self.env}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen([sys.executable, "-m", "facemask.worker", "--name", self.name,
                                         "--metrics-port", str(self.metrics_port)], cwd=PACKAGES_ROOT, env=env,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_until_listening(self, timeout: float = 90.0) -> "LocalWorker":
        from redis import Redis
        from rq import Worker

        assert self.process is not None, "launch() first"
        redis = Redis.from_url(self.env["FACEMASK_QUEUE_URL"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if any(worker.name == self.name for worker in Worker.all(connection=redis)):
                return self
            time.sleep(0.2)
        self.stop()
        raise ServiceStartError(f"worker {self.name} did not start" + (f" (log: {self.log_path})"
                                                                        if self.log_path else ""))

    def stop(self, timeout: float = 60) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "LocalWorker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
