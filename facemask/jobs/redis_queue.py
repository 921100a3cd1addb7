"""Past one machine: the jobs on a Redis queue (RQ), run by `facemask worker` processes anywhere.

A job is an RQ job whose id is the job's id: its progress is in the job's meta, its final status is the job's
return value, both in Redis, so any API replica answers for any job. Its files are in the shared store.

- A worker runs each job in a forked work horse and sends a heartbeat every HEARTBEAT_S. A worker killed with
  SIGKILL (the horse dies with it: PR_SET_PDEATHSIG) stops the heartbeats; HEARTBEAT_GRACE_S later the job counts
  as abandoned, and the next idle worker's maintenance round (every few seconds) or API replica's poll requeues it
  (RQ's retry, at most RETRIES times) or marks it failed with the reason.
- SIGTERM: the worker finishes the job it has, then stops (RQ's warm shutdown); a second SIGTERM, or the grace
  period's end, kills it and the job is requeued as above.
- The limits: the jobs queued or running, with their clients, in one Redis hash, checked and added to under a
  Redis lock, so they hold across every replica.
- Finished jobs expire from Redis after the retention period (RQ's result TTL); their folders are removed by the
  workers' expiry thread and when a poll finds the job gone.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING

from redis import Redis
from rq import Queue, Retry, Worker, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from facemask.jobs.limits import check_limits
from facemask.jobs.metrics import observe_job_end
from facemask.jobs.store import JobStore

if TYPE_CHECKING:
    from facemask.jobs.work import Pipelines

LOG = logging.getLogger("facemask.jobs")
QUEUE_NAME = "facemask-jobs"
ACTIVE_KEY = "facemask:jobs:active"  # job id -> client, for the limits
EXPIRY_KEY = "facemask:jobs:expiry"  # job id -> when its folder may go (sorted set)
SUBMIT_LOCK = "facemask:jobs:submit-lock"
HEARTBEAT_S = 2
HEARTBEAT_GRACE_S = 8
# An idle worker waits on the queue this many seconds less 15 at a time (RQ's dequeue time-out), then runs its
# maintenance (abandoned jobs requeued) if HEARTBEAT_S + HEARTBEAT_GRACE_S have passed: RQ's default of 420 s left
# a killed worker's job waiting minutes when nobody polled it.
WORKER_TTL_S = 20
RETRIES = 2
JOB_TIMEOUT_S = 3600  # a video at the frame limit takes minutes; this only stops a job that hangs
ENDED = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)
DIED = ("this job did not finish in {} tries (its worker stopped, or the workers' logs say what failed): please "
        "upload it again")


def connect(url: str) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30, health_check_interval=30)


class RedisJobs:
    def __init__(self, redis: Redis, store: JobStore, retention_s: float, max_jobs: int, max_jobs_per_client: int):
        self.redis, self.store, self.retention_s = redis, store, retention_s
        self.max_jobs, self.max_jobs_per_client = max_jobs, max_jobs_per_client
        self.queue = Queue(QUEUE_NAME, connection=redis)

    def submit(self, job_id: str, kind: str, client: str, status: dict) -> dict:
        """Queue the job whose input is in the store; JobsBusy (and nothing queued) above the limits."""
        with self.redis.lock(SUBMIT_LOCK, timeout=10, blocking_timeout=10):
            active = self._active_clients()
            check_limits(list(active.values()), client, self.max_jobs, self.max_jobs_per_client)
            self.redis.hset(ACTIVE_KEY, job_id, client)
            # Removed after the retention period at the latest even if the job never ends (Redis lost it)
            self.redis.zadd(EXPIRY_KEY, {job_id: time.time() + JOB_TIMEOUT_S + self.retention_s})
            self.queue.enqueue("facemask.jobs.redis_queue.perform", kind, job_id, status, job_id=job_id,
                               meta={"status": status}, retry=Retry(max=RETRIES), job_timeout=JOB_TIMEOUT_S,
                               result_ttl=int(self.retention_s), failure_ttl=int(self.retention_s),
                               description=f"{kind} {status.get('filename', '')}"[:200])
        return status

    def _active_clients(self) -> dict[str, str]:
        """The active jobs' clients; jobs that ended (or that Redis no longer has) leave the hash here."""
        active = {_text(key): _text(value) for key, value in self.redis.hgetall(ACTIVE_KEY).items()}
        if not active:
            return active
        self._requeue_abandoned()
        jobs = Job.fetch_many(list(active), connection=self.redis)
        ended = [job_id for job_id, job in zip(list(active), jobs)
                 if job is None or job.get_status(refresh=False) in ENDED]
        if ended:
            self.redis.hdel(ACTIVE_KEY, *ended)
        return {job_id: client for job_id, client in active.items() if job_id not in ended}

    def _requeue_abandoned(self) -> None:
        """Jobs of workers that stopped sending heartbeats: retried, or failed when out of retries."""
        StartedJobRegistry(queue=self.queue).cleanup()

    def status(self, job_id: str) -> dict | None:
        try:
            job = Job.fetch(job_id, connection=self.redis)
        except NoSuchJobError:
            self.store.remove(job_id)  # expired: its files go with it
            return None
        state = job.get_status(refresh=False)
        if state == JobStatus.STARTED:
            self._requeue_abandoned()
            state = job.get_status(refresh=True)
        meta_status = job.get_meta(refresh=False).get("status", {})
        if state == JobStatus.FINISHED:
            return job.return_value() or meta_status
        if state in ENDED:
            return {**meta_status, "state": "failed", "error": meta_status.get("error") or DIED.format(RETRIES + 1)}
        return {**meta_status, "state": "running" if state == JobStatus.STARTED else "queued"}

    def counts(self) -> tuple[int, int]:
        return self.queue.count, StartedJobRegistry(queue=self.queue).count

    def remove_expired(self) -> None:
        """Folders of jobs past their retention (Redis forgot them itself); each is removed by one process."""
        for raw in self.redis.zrangebyscore(EXPIRY_KEY, 0, time.time()):
            job_id = _text(raw)
            if self.redis.zrem(EXPIRY_KEY, job_id):
                self.store.remove(job_id)


class JobWorker(Worker):
    """RQ's worker with heartbeats every HEARTBEAT_S that lapse HEARTBEAT_GRACE_S after the last one, instead of a
    minute: a killed worker's job is taken up again within seconds."""

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return self.job_monitoring_interval + HEARTBEAT_GRACE_S


class WorkerContext:
    """What the work horses need, made once in the worker before it forks them (the models stay loaded)."""

    def __init__(self, pipelines: "Pipelines", store: JobStore, max_pixels: int, max_frames: int, retention_s: float):
        self.pipelines, self.store, self.retention_s = pipelines, store, retention_s
        self.max_pixels, self.max_frames = max_pixels, max_frames


_CONTEXT: WorkerContext | None = None


def run_worker(redis: Redis, context: WorkerContext, burst: bool = False, name: str | None = None) -> bool:
    global _CONTEXT
    _CONTEXT = context
    worker = JobWorker([Queue(QUEUE_NAME, connection=redis)], connection=redis, name=name, worker_ttl=WORKER_TTL_S,
                       job_monitoring_interval=HEARTBEAT_S, maintenance_interval=HEARTBEAT_S + HEARTBEAT_GRACE_S)
    jobs = RedisJobs(redis, context.store, context.retention_s, 1, 1)
    _start_expiry_thread(jobs)
    return worker.work(burst=burst, logging_level=logging.getLevelName(LOG.getEffectiveLevel()),
                       with_scheduler=False)


def _start_expiry_thread(jobs: RedisJobs) -> None:
    def expire_forever() -> None:
        while True:
            try:
                jobs.remove_expired()
            except Exception:  # Redis away for a while: try again next minute
                LOG.warning("removing expired jobs failed", exc_info=True)
            time.sleep(60)

    threading.Thread(target=expire_forever, daemon=True, name="jobs-expiry").start()


def perform(kind: str, job_id: str, submitted: dict) -> dict:
    """The RQ job: runs in a worker's work horse."""
    from facemask.jobs.work import run_job

    _die_with_the_worker()
    if _CONTEXT is None:
        raise RuntimeError("not in a facemask worker (python -m facemask.worker)")
    job = get_current_job()
    assert job is not None
    started, last_written = time.time(), [0.0]
    status = {**submitted, "state": "running"}
    job.meta["status"] = status
    job.save_meta()

    def progress(done: int, total: int) -> None:
        if time.monotonic() - last_written[0] > 0.25:  # a few times a second, not every frame
            last_written[0] = time.monotonic()
            prefix = "frames" if kind == "video" else "photos"
            job.meta["status"] = {**status, f"{prefix}_done": done, f"{prefix}_total": total}
            job.save_meta()

    try:
        final = run_job(kind, _CONTEXT.pipelines, _CONTEXT.store, job_id, status, _CONTEXT.max_pixels, progress,
                        _CONTEXT.max_frames)
    except Exception:
        observe_job_end(kind, "failed", time.time() - started)
        raise
    job.connection.zadd(EXPIRY_KEY, {job_id: time.time() + _CONTEXT.retention_s})
    observe_job_end(kind, final["state"], time.time() - started)
    return final


def _text(value) -> str:
    """RQ needs a connection that answers bytes; ids and clients are ASCII."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _die_with_the_worker() -> None:
    """The horse is a child of the worker in its own process group: without this, a worker killed with SIGKILL left
    it running on, unseen, while another worker took the same job up again."""
    parent = os.getppid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the abandoned job is still taken up again
        return
    if os.getppid() != parent:  # the worker died before the call
        os._exit(1)
