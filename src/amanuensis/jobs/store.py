"""SQLite persistence for jobs: one row per job, its audio in `<data_dir>/audio/`.

Every state change is committed before it is acted on or announced, so a process killed at any
moment leaves each job either finished (with its result) or unfinished (and re-run on the next start).
A deleted job leaves nothing readable behind: SQLite overwrites freed content with zeros
(`secure_delete`), and the write-ahead log, which still holds the job's earlier page images, is
checkpointed and truncated after every deletion.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
STATUSES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
FINISHED = (DONE, FAILED, CANCELLED)
DB_NAME = "jobs.sqlite3"
WAITING, PENDING = "waiting", "pending"
"""Callback states before delivery: the job still runs (waiting) or it ended and the callback is owed."""
_CALLBACK_COLUMNS = {"callback_url": "TEXT", "callback_status": "TEXT", "callback_due": "REAL", "callback": "TEXT"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    filename TEXT,
    audio TEXT NOT NULL,
    model TEXT,
    response_format TEXT NOT NULL DEFAULT 'json',
    options TEXT NOT NULL,
    client TEXT NOT NULL DEFAULT '',
    done_s REAL NOT NULL DEFAULT 0,
    total_s REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    result TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
"""


def default_data_dir() -> Path:
    """The per-user data directory: $XDG_DATA_HOME/amanuensis, ~/Library/Application Support/… or %LOCALAPPDATA%."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "amanuensis"


def new_job_id() -> str:
    """A fresh, unguessable job id."""
    return f"job_{uuid.uuid4().hex}"


@dataclass
class JobRecord:
    """One row of the jobs table, decoded."""

    id: str
    status: str
    created_at: float
    audio: str
    options: dict[str, Any]
    filename: str | None = None
    model: str | None = None
    response_format: str = "json"
    client: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    done_s: float = 0.0
    total_s: float | None = None
    attempts: int = 0
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = field(default=None, repr=False)
    callback_url: str | None = None
    callback_status: str | None = None
    """waiting (the job runs), pending (owed), delivered or failed; None without a callback_url."""
    callback_due: float | None = None
    callback: dict[str, Any] | None = None
    """Delivery state: status, attempts, last_status_code, last_error, next_attempt_at, delivered_at."""

    @property
    def finished(self) -> bool:
        """True once the job is done, failed or cancelled."""
        return self.status in FINISHED


_JSON_COLUMNS = ("options", "error", "result", "callback")


def _decode(row: sqlite3.Row) -> JobRecord:
    data = dict(row)
    for name in _JSON_COLUMNS:
        if data.get(name) is not None:
            data[name] = json.loads(data[name])
    return JobRecord(**data)


class DataDirBusy(RuntimeError):
    """Another live process holds the data directory (two queues on one directory would steal jobs)."""


def _lock_data_dir(data_dir: Path) -> IO[str] | None:
    """Hold an exclusive lock on `<data_dir>/lock` for the life of the process (POSIX; a no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; one server per data directory is documented
        return None
    handle = open(data_dir / "lock", "a+", encoding="utf-8")  # noqa: SIM115 - held until close()
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise DataDirBusy(f"the data directory {data_dir} is in use by another amanuensis process (pid {owner})") \
            from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


class JobStore:
    """The jobs table and the audio directory under `data_dir`; safe to use from several threads.

    Raises DataDirBusy when another process already serves jobs from `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.audio_dir = self.data_dir / "audio"
        self.upload_dir = self.data_dir / "uploads"
        for directory in (self.audio_dir, self.upload_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._held = _lock_data_dir(self.data_dir)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.data_dir / DB_NAME, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_SCHEMA)
        self._add_callback_columns()

    def close(self) -> None:
        """Close the database and release the data directory."""
        with self._lock:
            self._db.close()
        if self._held is not None:
            self._held.close()
            self._held = None

    def _execute(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, params)

    def audio_path(self, job: JobRecord) -> Path:
        """Where a job's audio lives."""
        return self.audio_dir / job.audio

    def add(self, upload: Path, *, filename: str | None, model: str | None, response_format: str,
            options: dict[str, Any], client: str = "", callback_url: str | None = None) -> JobRecord:
        """Move `upload` into the audio directory and record a queued job for it (durably)."""
        job_id = new_job_id()
        audio = job_id + upload.suffix.lower()
        with open(upload, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(upload, self.audio_dir / audio)
        job = JobRecord(id=job_id, status=QUEUED, created_at=time.time(), audio=audio, options=options,
                        filename=filename, model=model, response_format=response_format, client=client,
                        callback_url=callback_url)
        if callback_url:
            job.callback_status, job.callback = WAITING, {"status": WAITING, "attempts": 0}
        self._execute(
            "INSERT INTO jobs (id, status, created_at, filename, audio, model, response_format, options, client,"
            " callback_url, callback_status, callback) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job.id, job.status, job.created_at, filename, audio, model, response_format, json.dumps(options),
             client, callback_url, job.callback_status, json.dumps(job.callback) if job.callback else None),
        )
        return job

    def get(self, job_id: str) -> JobRecord | None:
        """The job with this id, or None."""
        row = self._execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _decode(row) if row else None

    def list(self, limit: int = 20, status: str | None = None) -> list[JobRecord]:
        """The most recent jobs first (results left out to keep it light)."""
        columns = "id, status, created_at, started_at, finished_at, filename, audio, model, response_format, " \
                  "options, client, done_s, total_s, attempts, error, callback_url, callback_status, callback"
        if status:
            sql, params = f"SELECT {columns} FROM jobs WHERE status = ? ORDER BY created_at DESC LIMIT ?", (
                status, limit)
        else:
            sql, params = f"SELECT {columns} FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,)
        return [_decode(row) for row in self._execute(sql, params).fetchall()]

    def unfinished(self) -> list[JobRecord]:
        """Queued and running jobs, oldest first."""
        rows = self._execute(
            "SELECT * FROM jobs WHERE status IN (?, ?) ORDER BY created_at", (QUEUED, RUNNING)
        ).fetchall()
        return [_decode(row) for row in rows]

    def requeue_running(self) -> int:
        """Put jobs left running by a previous process back in the queue; returns how many."""
        cursor = self._execute("UPDATE jobs SET status = ?, done_s = 0 WHERE status = ?", (QUEUED, RUNNING))
        return cursor.rowcount

    def claim(self, job_id: str) -> bool:
        """Mark a queued job running (atomically); False when it is no longer queued."""
        cursor = self._execute(
            "UPDATE jobs SET status = ?, started_at = ?, done_s = 0, attempts = attempts + 1"
            " WHERE id = ? AND status = ?",
            (RUNNING, time.time(), job_id, QUEUED),
        )
        return cursor.rowcount == 1

    def progress(self, job_id: str, done_s: float, total_s: float) -> None:
        """Record audio seconds transcribed so far."""
        self._execute("UPDATE jobs SET done_s = ?, total_s = ? WHERE id = ?", (done_s, total_s, job_id))

    def finish(self, job_id: str, status: str, *, result: dict | None = None, error: dict | None = None,
               only_from: tuple[str, ...] = (QUEUED, RUNNING)) -> bool:
        """Move an unfinished job to a finished status; False when it was not in `only_from`."""
        marks = ",".join("?" * len(only_from))
        cursor = self._execute(
            f"UPDATE jobs SET status = ?, finished_at = ?, result = ?, error = ? WHERE id = ? AND status IN ({marks})",
            (status, time.time(), json.dumps(result) if result is not None else None,
             json.dumps(error) if error is not None else None, job_id, *only_from),
        )
        return cursor.rowcount == 1

    def requeue(self, job_id: str) -> None:
        """Put a running job back in the queue (the server is stopping: the attempt does not count)."""
        self._execute(
            "UPDATE jobs SET status = ?, done_s = 0, attempts = MAX(attempts - 1, 0) WHERE id = ? AND status = ?",
            (QUEUED, job_id, RUNNING),
        )

    def delete(self, job_id: str) -> bool:
        """Remove a finished job and its audio, leaving none of its data in the database files; False when
        there is no such finished job."""
        removed = self._delete(job_id)
        if removed:
            self._forget_deleted()
        return removed

    def _delete(self, job_id: str) -> bool:
        job = self.get(job_id)
        if job is None or not job.finished:
            return False
        self._execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.audio_path(job))
        return True

    def _forget_deleted(self) -> None:
        """Move the zeroed pages into the database file and empty the write-ahead log, whose older frames
        still hold deleted rows."""
        busy, _, _ = self._execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("jobs database: the write-ahead log could not be emptied after a deletion (busy)")

    def expire(self, older_than: float) -> int:
        """Delete finished jobs (and their audio) that finished before `older_than` (epoch seconds)."""
        rows = self._execute(
            f"SELECT id FROM jobs WHERE status IN ({','.join('?' * len(FINISHED))}) AND finished_at < ?",
            (*FINISHED, older_than),
        ).fetchall()
        removed = sum(self._delete(row["id"]) for row in rows)
        if removed:
            self._forget_deleted()
            log.info("jobs expired: count=%d", removed)
        return removed

    def sweep_orphans(self) -> int:
        """Remove audio no job refers to and half-received uploads (left by a crash); returns how many."""
        known = {row["audio"] for row in self._execute("SELECT audio FROM jobs").fetchall()}
        removed = 0
        for path in [*self.upload_dir.iterdir(), *(p for p in self.audio_dir.iterdir() if p.name not in known)]:
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
        return removed

    # -- job callbacks (amanuensis.jobs.callbacks) ---------------------------------------------------

    def _add_callback_columns(self) -> None:
        """Add the callback columns to a jobs table made before they existed."""
        present = {row["name"] for row in self._execute("PRAGMA table_info(jobs)").fetchall()}
        for name, kind in _CALLBACK_COLUMNS.items():
            if name not in present:
                self._execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")

    def _callbacks_owed(self) -> tuple[str, tuple]:
        marks = ",".join("?" * len(FINISHED))
        return (f"callback_url IS NOT NULL AND callback_status IN (?, ?) AND status IN ({marks})",
                (WAITING, PENDING, *FINISHED))

    def callbacks_due(self, now: float) -> list[JobRecord]:
        """Finished jobs whose callback is owed and due by `now` (epoch seconds), oldest first."""
        where, params = self._callbacks_owed()
        rows = self._execute(f"SELECT * FROM jobs WHERE {where} AND COALESCE(callback_due, 0) <= ?"
                             " ORDER BY finished_at", (*params, now)).fetchall()
        return [_decode(row) for row in rows]

    def next_callback_at(self) -> float | None:
        """When the next owed callback is due (epoch seconds; 0 = now), or None when none is owed."""
        where, params = self._callbacks_owed()
        row = self._execute(f"SELECT MIN(COALESCE(callback_due, 0)) FROM jobs WHERE {where}", params).fetchone()
        return row[0]

    def record_callback(self, job_id: str, state: dict[str, Any]) -> None:
        """Store a callback's state after an attempt (`state["status"]`: pending, delivered or failed)."""
        self._execute("UPDATE jobs SET callback_status = ?, callback_due = ?, callback = ? WHERE id = ?",
                      (state["status"], state.get("next_attempt_at"), json.dumps(state), job_id))
