"""`facemask worker` / `python -m facemask.worker`: runs the upload page's video and batch jobs from the Redis queue.

Reads FACEMASK_QUEUE_URL (the queue), FACEMASK_JOBS_STORE (the folder shared with the detection service) and
CLASSIFIER_URL, like the detection service. Start as many as the machines allow, anywhere that reaches the three;
SIGTERM lets the job in hand finish first (see facemask.jobs.redis_queue).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

from facemask.core.errors import LOGGER, FacemaskError, configure_logging
from facemask.core.settings import Settings, SettingsError

DEFAULT_METRICS_PORT = 8001


def parse_args(argv=None, prog: str = "facemask worker") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="stop once the queue is empty (benchmarks, tests)")
    parser.add_argument("--name", help="the worker's name in Redis (default: RQ's, host and pid)")
    parser.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT,
                        help=f"port of /metrics on all interfaces, 0 for none (default {DEFAULT_METRICS_PORT})")
    return parser.parse_args(argv)


def main(argv=None, prog: str = "facemask worker") -> int:
    args = parse_args(argv, prog)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 2
    if not settings.queue_url:
        print(f"{prog}: set FACEMASK_QUEUE_URL (redis://host:port/db) to the detection service's queue",
              file=sys.stderr)
        return 2
    if settings.ort_providers != ("cpu",):
        # Each job runs in a fork of the worker, and a CUDA context does not survive a fork.
        print(f"{prog}: runs on the CPU only (FACEMASK_ORT_PROVIDERS=cpu): each job runs in a forked process, which "
              f"cannot use {', '.join(settings.ort_providers)}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level or "INFO")
    # The work horses are forked processes: their metrics reach /metrics through prometheus_client's multiprocess
    # folder, which must be chosen before prometheus_client is imported.
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="facemask-worker-metrics-"))
    os.environ.setdefault("FACEMASK_ORT_THREADS", "1")  # one job per worker: scale by running more workers
    from redis.exceptions import RedisError

    from facemask.core.detector import create_detector
    from facemask.jobs.redis_queue import RedisJobs, WorkerContext, connect, run_worker
    from facemask.jobs.store import JobStore
    from facemask.jobs.work import Pipelines, warm_up

    try:
        redis = connect(settings.queue_url)
        redis.ping()
    except (RedisError, ValueError) as error:
        print(f"{prog}: cannot reach the queue at FACEMASK_QUEUE_URL: {error}", file=sys.stderr)
        return 1
    try:
        detector = create_detector(settings.detector_model, settings.ort_threads or 1)
    except FacemaskError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 1
    store = JobStore(settings.jobs_folder)
    context = WorkerContext(Pipelines.build(detector, settings.classifier_url, settings.classify_deadline_s), store,
                            settings.max_video_pixels, settings.max_video_frames, settings.jobs_retention_s)
    warm_up(context.pipelines)  # every job runs in a fork of this process
    if args.metrics_port:
        _serve_metrics(args.metrics_port, RedisJobs(redis, store, settings.jobs_retention_s, 1, 1))
    LOGGER.info("facemask worker: queue %s, store %s, classifier %s", _without_password(settings.queue_url),
                store.root, settings.classifier_url)
    run_worker(redis, context, burst=args.burst, name=args.name)
    return 0


def _serve_metrics(port: int, jobs) -> None:
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    from facemask.jobs.metrics import QueueCollector

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(QueueCollector(jobs.counts))
    try:
        start_http_server(port, registry=registry)
    except OSError as error:  # several workers on one host network: the first one serves them
        LOGGER.warning("facemask worker: no /metrics on port %d: %s", port, error.strerror or error)


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl() \
        if parts.password and parts.hostname else url


if __name__ == "__main__":
    sys.exit(main())
