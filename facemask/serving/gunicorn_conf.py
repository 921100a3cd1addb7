"""gunicorn settings shared by both services; each service's gunicorn.conf.py sets its default port first.

What gunicorn itself needs comes from the same Settings as the apps (facemask.core.settings), read here once.
"""
import os
import resource
import shutil
import sys
import tempfile

from facemask.core.settings import Settings

# Two single-threaded ONNX Runtime workers use two cores without oversubscribing them, and one keeps serving
# while the other is busy with a large batch. Set before the workers fork, so their create_app() reads it.
os.environ.setdefault("FACEMASK_ORT_THREADS", "1")
settings = Settings.from_env()
bind = settings.service_bind(default_port=3000)
if settings.ort_providers != ("cpu",):
    # A GPU provider that cannot load stops the service here, with one line, instead of each worker failing to boot
    # with a traceback; the check runs in a child so that this process forks its workers with no CUDA started.
    from facemask.core.sessions import probe_in_child

    _reason = probe_in_child(settings.ort_providers)
    if _reason:
        sys.exit(f"error: {_reason}")
workers = settings.web_concurrency
timeout = settings.gunicorn_timeout
# A sync worker waits on whichever client it accepted: a few clients sending their headers or body slowly held every
# worker (issue 15). Event-loop workers hold such a client on a cheap greenlet; model inference still runs one request
# at a time per worker. Chosen by measurement against sync and gthread: bench/slow_clients.py, README.
worker_class = settings.gunicorn_worker_class
threads = settings.gunicorn_threads  # gthread only
# Open connections per worker. An idle connection costs a greenlet and a socket, a few tens of KB; 2,100 clients each
# holding half a body took both workers of 1,000 and /health with them (issue 27, bench.robustness "Held
# connections"). Bodies that stop arriving are dropped after BODY_IDLE_TIMEOUT_S (facemask.serving.service).
worker_connections = settings.gunicorn_worker_connections
# Each connection is a file descriptor: a soft limit of 1,024 (many containers' default) would cap the above.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft != resource.RLIM_INFINITY and _soft < worker_connections + 256:
    resource.setrlimit(resource.RLIMIT_NOFILE, (worker_connections + 256 if _hard == resource.RLIM_INFINITY
                                                else min(worker_connections + 256, _hard), _hard))
# gunicorn's control socket defaults to one path per user ($HOME/.gunicorn): a second instance took it over and
# stopping either removed it. Nothing here uses gunicornc.
control_socket_disable = True
graceful_timeout = 30  # on SIGTERM, in-flight requests get this long to finish
keepalive = 5
max_requests = 20000  # recycle workers now and then: bounds any slow growth in memory
max_requests_jitter = 2000
accesslog = "-" if settings.access_log else None

# glibc raises its mmap threshold after the first large free, and later image buffers (Pillow allocates in 16 MB
# blocks) then come from the heap, which fragments and keeps a worker's memory at its peak. A fixed threshold returns
# every large buffer to the system when freed. Set in the master, inherited by the workers it forks.
if "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # glibc's own variable, if set, wins
    try:
        import ctypes

        # M_MMAP_THRESHOLD 8 MiB: images and Pillow's 16 MB blocks are mapped, the model's few-MB buffers are not
        ctypes.CDLL("libc.so.6").mallopt(-3, 8 << 20)
    except (OSError, AttributeError):  # not glibc: its own allocator, nothing to tune
        pass

# Prometheus needs a folder shared by the workers to add up their counters. It must be set before
# prometheus_client is first imported (the client picks its value store at import), hence no import above.
_OWN_METRICS_DIR = None
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    _OWN_METRICS_DIR = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="facemask-metrics-")


def on_exit(server):
    """The master removes the metrics folder it made (one per start, or /tmp fills with them); a folder named by
    the operator is theirs to keep."""
    if _OWN_METRICS_DIR:
        shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_abort(worker):
    """gunicorn kills a worker stuck past `timeout`; its request never reached the app's after_request, so count
    it here (the multiprocess counter outlives the worker) for /metrics to show."""
    extensions = getattr(getattr(worker, "wsgi", None), "extensions", {})
    if "metrics" in extensions:
        extensions["metrics"].requests.labels("worker_timeout", "500").inc()
