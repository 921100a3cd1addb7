"""Job metrics on /metrics of the detection service and of the workers: queue length and jobs running (read from
the backend at scrape time, so every replica shows the site's numbers), job durations and failures (counted where
the job ran)."""
from __future__ import annotations

import logging
from typing import Callable

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

LOG = logging.getLogger("facemask.jobs")
JOB_SECONDS = Histogram("facemask_job_seconds", "Time a job took from start to end, by kind and final state",
                        ["kind", "state"], buckets=(1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800))
JOB_FAILURES = Counter("facemask_job_failures_total", "Jobs that ended failed, by kind", ["kind"])


def observe_job_end(kind: str, state: str, seconds: float) -> None:
    JOB_SECONDS.labels(kind, state).observe(seconds)
    if state == "failed":
        JOB_FAILURES.labels(kind).inc()


class QueueCollector:
    """facemask_jobs_queued and facemask_jobs_running from counts(): (queued, running)."""

    def __init__(self, counts: Callable[[], tuple[int, int]]):
        self.counts = counts

    def collect(self):
        try:
            queued, running = self.counts()
        except Exception as error:  # the store or Redis away: /metrics still answers, without these two
            LOG.warning("job counts for /metrics: %s", error)
            return

        yield GaugeMetricFamily("facemask_jobs_queued", "Jobs waiting for a worker (queue length)", value=queued)
        yield GaugeMetricFamily("facemask_jobs_running", "Jobs a worker is running now", value=running)
