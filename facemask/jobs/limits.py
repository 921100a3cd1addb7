"""The job limits both backends apply when a job is submitted."""
from __future__ import annotations

from facemask.core.errors import FacemaskError

ACTIVE = ("queued", "running")


class JobsBusy(FacemaskError, RuntimeError):
    """Too many jobs queued, for this client (429) or in all (503); retry_after in seconds."""

    def __init__(self, status: int, message: str, retry_after: int):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


def check_limits(active_clients: list[str], client: str, max_jobs: int, max_jobs_per_client: int) -> None:
    """active_clients: the client of every job queued or running now, site-wide."""
    retry_after = 30 * max(1, len(active_clients))  # a short video takes tens of seconds
    mine = active_clients.count(client)
    if mine >= max_jobs_per_client:
        raise JobsBusy(429, f"{mine} of your jobs are still waiting or being annotated (the limit is "
                            f"{max_jobs_per_client}): send more when they are done", retry_after)
    if len(active_clients) >= max_jobs:
        raise JobsBusy(503, f"{len(active_clients)} jobs are waiting or being annotated, the most this service "
                            "queues: try again later", retry_after)
