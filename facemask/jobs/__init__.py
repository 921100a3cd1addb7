"""Video and batch-photo jobs of the upload page: one job store, two ways to run them.

- `FACEMASK_QUEUE_URL` set: the jobs go on a Redis queue (RQ, facemask.jobs.redis_queue) and `facemask worker`
  processes on any machine run them; the job's state and the site-wide limits live in Redis, its files in the store
  (`FACEMASK_JOBS_STORE`, shared by the API replicas and the workers).
- unset: one machine (facemask.jobs.local): the job's state and the limits live in a SQLite file in the store, and
  each detection process runs one job at a time on a thread of its own.

Both run the same work (facemask.jobs.work) on the same folders (facemask.jobs.store).
"""
