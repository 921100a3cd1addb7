"""The jobs' files: one folder per job under the store, named by the job's id (a uuid4 hex string)."""
from __future__ import annotations

import shutil
import uuid
from pathlib import Path

JOB_ID_LENGTH = 32
RESULT_FILES = {"video": "annotated.webm", "json": "annotated.json", "zip": "annotated.zip"}
WORK_FOLDER = "work"  # an attempt's outputs, moved into the job's folder only when it succeeds


def new_job_id() -> str:
    return uuid.uuid4().hex


def is_job_id(job_id: str) -> bool:
    """Only ids this service made reach the file system (no "..", no slashes, no other names)."""
    return len(job_id) == JOB_ID_LENGTH and all(c in "0123456789abcdef" for c in job_id)


class JobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, job_id: str) -> Path:
        if not is_job_id(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / job_id

    def create(self, job_id: str) -> Path:
        folder = self.folder(job_id)
        folder.mkdir()
        return folder

    def remove(self, job_id: str) -> None:
        if is_job_id(job_id):
            shutil.rmtree(self.root / job_id, ignore_errors=True)

    def result(self, job_id: str, kind: str) -> Path | None:
        if not is_job_id(job_id) or kind not in RESULT_FILES:
            return None
        path = self.root / job_id / RESULT_FILES[kind]
        return path if path.is_file() else None

    def fresh_work_folder(self, job_id: str) -> Path:
        """An empty folder for this attempt: what a killed attempt left there is removed first."""
        work = self.folder(job_id) / WORK_FOLDER
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        return work
