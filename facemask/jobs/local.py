"""One machine, no Redis: the jobs' state and limits in a SQLite file of the store, run by the detection service's
own processes.

SQLite does the locking between the service's gunicorn processes (a write transaction counts the active jobs and
adds the new one at once). Every process runs one job at a time on a native thread of its own, so a video never
holds the process's requests (under gevent it is not a greenlet). A job stays "queued" until a process of the same
service (its address: two services on one machine may share the default store, never an address) is free and takes
the oldest; a restarted service takes up what it had queued. A running job's heartbeat moves with its progress,
and a job whose process died (killed, recycled) is marked failed once its heartbeat is HEARTBEAT_STALE_S old, by
whoever reads it next. Finished jobs are removed after the retention period, when read and by every process's
thread once a minute.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from contextlib import closing, contextmanager
from typing import Callable

from facemask.jobs.limits import ACTIVE, check_limits
from facemask.jobs.metrics import observe_job_end
from facemask.jobs.store import JobStore

LOG = logging.getLogger("facemask.jobs")
DATABASE = "jobs.sqlite3"
HEARTBEAT_STALE_S = 45.0  # longer than one frame's classification may take (CLASSIFY_DEADLINE_S) plus its detection
IDLE_POLL_S = 0.2  # an idle process looks for a queued job this often (one SQLite read)
EXPIRY_EVERY_S = 60.0
DIED = "the service stopped before this job was finished: please upload it again"
Perform = Callable[[str, str, dict, Callable[[int, int], None]], dict]  # kind, job id, submitted, progress -> status


class LocalJobs:
    def __init__(self, store: JobStore, service: str, retention_s: float, max_jobs: int, max_jobs_per_client: int):
        """service: the address the service answers on; its processes share its jobs and limits."""
        self.store, self.service, self.retention_s = store, service, retention_s
        self.max_jobs, self.max_jobs_per_client = max_jobs, max_jobs_per_client
        self.path = store.root / DATABASE
        with self._transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, service TEXT, kind TEXT, client TEXT, "
                       "state TEXT, status TEXT, created REAL, heartbeat REAL, ended REAL)")
            if "service" not in {row[1] for row in db.execute("PRAGMA table_info(jobs)")}:
                db.execute("DROP TABLE jobs")  # a store of this branch's first drafts: its rows are throw-away
                db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, service TEXT, kind TEXT, client TEXT, "
                           "state TEXT, status TEXT, created REAL, heartbeat REAL, ended REAL)")
        with closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")  # readers (polls) never wait for the writer

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    @contextmanager
    def _transaction(self):
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def submit(self, job_id: str, kind: str, client: str, status: dict) -> dict:
        """Queue the job whose input is in the store; JobsBusy (and nothing queued) above the limits."""
        with self._transaction() as db:
            self._fail_stale(db)
            active = [row[0] for row in db.execute(
                f"SELECT client FROM jobs WHERE service = ? AND state IN {ACTIVE}", (self.service,))]
            check_limits(active, client, self.max_jobs, self.max_jobs_per_client)
            db.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, 'queued', ?, ?, NULL, NULL)",
                       (job_id, self.service, kind, client, json.dumps(status), time.time()))
        return status

    def status(self, job_id: str) -> dict | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT state, status, heartbeat, ended FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        state, status, heartbeat, ended = row
        now = time.time()
        if ended is not None and ended < now - self.retention_s:
            self._expire(now)
            return None
        if state == "running" and heartbeat < now - HEARTBEAT_STALE_S:
            with self._transaction() as db:
                self._fail_stale(db)
            return self.status(job_id)
        return json.loads(status)

    def counts(self) -> tuple[int, int]:
        with closing(self._connect()) as db:
            found = dict(db.execute(f"SELECT state, COUNT(*) FROM jobs WHERE service = ? AND state IN {ACTIVE} "
                                    "GROUP BY state", (self.service,)))
        return found.get("queued", 0), found.get("running", 0)

    def _fail_stale(self, db: sqlite3.Connection) -> None:
        now = time.time()
        stale = db.execute("SELECT id, kind, status, created FROM jobs WHERE state = 'running' AND heartbeat < ?",
                           (now - HEARTBEAT_STALE_S,)).fetchall()
        for job_id, kind, status, created in stale:
            LOG.warning("%s job %s: its process is gone (no heartbeat for %.0f s), marked failed", kind, job_id,
                        HEARTBEAT_STALE_S)
            db.execute("UPDATE jobs SET state = 'failed', status = ?, ended = ? WHERE id = ?",
                       (json.dumps({**json.loads(status), "state": "failed", "error": DIED}), now, job_id))
            observe_job_end(kind, "failed", now - created)

    def _expire(self, now: float) -> None:
        with self._transaction() as db:
            expired = [row[0] for row in db.execute("SELECT id FROM jobs WHERE ended < ?", (now - self.retention_s,))]
            db.executemany("DELETE FROM jobs WHERE id = ?", [(job_id,) for job_id in expired])
        for job_id in expired:
            self.store.remove(job_id)

    def _claim(self) -> tuple[str, str, dict] | None:
        with self._transaction() as db:
            row = db.execute("SELECT id, kind, status FROM jobs WHERE service = ? AND state = 'queued' "
                             "ORDER BY created LIMIT 1", (self.service,)).fetchone()
            if row is None:
                return None
            job_id, kind, status = row
            status = {**json.loads(status), "state": "running"}
            db.execute("UPDATE jobs SET state = 'running', status = ?, heartbeat = ? WHERE id = ?",
                       (json.dumps(status), time.time(), job_id))
        return job_id, kind, status

    def _update(self, job_id: str, status: dict, ended: bool = False) -> None:
        now = time.time()
        with closing(self._connect()) as db:
            db.execute("UPDATE jobs SET state = ?, status = ?, heartbeat = ?, ended = ? WHERE id = ?",
                       (status["state"], json.dumps(status), now, now if ended else None, job_id))

    def start_runner(self, perform: Perform) -> None:
        """This process's job thread: a native thread even where gevent patched `threading`."""
        run = _native_start_new_thread()
        run(self._run_forever, (perform,))

    def _run_forever(self, perform: Perform) -> None:
        sleep = _native_sleep()
        next_expiry = 0.0
        while True:
            try:
                if time.monotonic() >= next_expiry:
                    self._expire(time.time())
                    next_expiry = time.monotonic() + min(EXPIRY_EVERY_S, self.retention_s / 2)
                claimed = self._claim()
                if claimed is None:
                    sleep(IDLE_POLL_S)
                    continue
                self._run_one(perform, *claimed)
            except Exception:  # a broken store must not end the thread: the next round tries again
                LOG.exception("job runner")
                sleep(5)

    def _run_one(self, perform: Perform, job_id: str, kind: str, status: dict) -> None:
        started, last_written = time.time(), [0.0]

        def progress(done: int, total: int) -> None:
            if time.monotonic() - last_written[0] > 0.25:  # a few times a second, not every frame
                last_written[0] = time.monotonic()
                prefix = "frames" if kind == "video" else "photos"
                self._update(job_id, {**status, f"{prefix}_done": done, f"{prefix}_total": total})

        try:
            final = perform(kind, job_id, status, progress)
        except Exception as error:
            LOG.exception("%s job %s failed", kind, job_id)
            final = {**status, "state": "failed", "error": f"internal error: {type(error).__name__}"}
        self._update(job_id, final, ended=True)
        observe_job_end(kind, final["state"], time.time() - started)


def _native_start_new_thread():
    try:
        from gevent import monkey
    except ImportError:
        return _start_daemon_thread
    if monkey.is_module_patched("threading"):
        return monkey.get_original("_thread", "start_new_thread")
    return _start_daemon_thread


def _start_daemon_thread(target, args) -> None:
    threading.Thread(target=target, args=args, daemon=True, name="jobs").start()


def _native_sleep():
    try:
        from gevent import monkey
    except ImportError:
        return time.sleep
    return monkey.get_original("time", "sleep") if monkey.is_module_patched("time") else time.sleep
