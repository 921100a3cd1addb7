"""What the watch checks before it loads a model: the folders and files it will write. A mistake
there is one line and exit 2 at start, not a traceback (or silence) once the first frame arrives."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def output_problem(record_dir: Path | None, events_path: Path | None) -> str | None:
    """Why the recordings folder or the events file cannot be written (one line), or None. The folder is created
    and a file is written there and removed, so a read-only disk or a full one shows now."""
    if record_dir is not None:
        if record_dir.exists() and not record_dir.is_dir():
            return f"--record {record_dir} is not a folder"
        try:
            record_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=record_dir, prefix=".write-check-") as probe:
                probe.write(b"\0" * 4096)
                probe.flush()
                os.fsync(probe.fileno())
        except OSError as error:
            return f"cannot write recordings to {record_dir}: {error.strerror or error}"
    if events_path is not None:
        if events_path.is_dir():
            return f"--events {events_path} is a folder; name a file"
        try:
            events_path.parent.mkdir(parents=True, exist_ok=True)
            with open(events_path, "a", encoding="utf-8"):
                pass
        except OSError as error:
            return f"cannot write events to {events_path}: {error.strerror or error}"
    return None
