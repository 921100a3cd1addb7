"""Results kept for a link (the upload page's "Link to this result"), in FACEMASK_JOBS_STORE for
FACEMASK_JOBS_RETENTION_H hours, and within FACEMASK_SHARED_RESULTS_MAX_MB: past it the oldest go first.

Each result is one JSON file named by an unguessable id (192 random bits): whoever holds the link sees the same card,
nobody can list or guess the others. Files, not memory, because any worker process may answer the link. Without the
store nothing is kept and the page says its results live in the browser tab.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path

SHARED_FOLDER = "shared-results"
RESULT_ID = re.compile(r"[A-Za-z0-9_-]{32}")


class SharedResults:
    def __init__(self, store: Path, retention_h: float, max_bytes: float = float("inf")):
        self.folder = Path(store) / SHARED_FOLDER
        self.folder.mkdir(parents=True, exist_ok=True)
        self.retention_s = retention_h * 3600
        self.max_bytes = max_bytes

    def keep(self, result: dict) -> str:
        """Stores the result; its id, for the link."""
        self.remove_expired()
        result_id = secrets.token_urlsafe(24)
        temporary = self.folder / f".{result_id}.tmp"
        temporary.write_text(json.dumps({**result, "expires_at": round(time.time() + self.retention_s)}))
        temporary.replace(self.folder / f"{result_id}.json")  # a reader never sees half a file
        self.keep_within_size(result_id)
        return result_id

    def get(self, result_id: str) -> dict | None:
        """The result, or None when the id is unknown or its retention period has ended."""
        if not RESULT_ID.fullmatch(result_id):
            return None
        path = self.folder / f"{result_id}.json"
        try:
            if path.stat().st_mtime < time.time() - self.retention_s:
                path.unlink(missing_ok=True)
                return None
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def keep_within_size(self, newest: str) -> None:
        """Removes the oldest results until the folder is within max_bytes; never the one just kept."""
        files = []
        for path in self.folder.glob("*.json"):
            try:
                stat = path.stat()
            except OSError:  # removed by another worker meanwhile
                continue
            files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files, key=lambda item: item[0]):
            if total <= self.max_bytes:
                break
            if path.stem != newest:
                path.unlink(missing_ok=True)
                total -= size

    def remove_expired(self) -> None:
        cutoff = time.time() - self.retention_s
        for path in self.folder.glob("*.json"):
            try:
                if path.stat().st_mtime < cutoff:
                    os.unlink(path)
            except OSError:  # removed by another worker meanwhile
                continue
