"""Persistent transcription jobs: SQLite store, worker queue, live progress and events, cancel, expiry."""

from ..errors import JobCancelled
from .events import Channel, Event
from .manager import JobManager, Runner, job_transcript, job_view
from .store import (
    CANCELLED,
    DONE,
    FAILED,
    FINISHED,
    QUEUED,
    RUNNING,
    STATUSES,
    DataDirBusy,
    JobRecord,
    JobStore,
    default_data_dir,
)

__all__ = [
    "CANCELLED", "DONE", "FAILED", "FINISHED", "QUEUED", "RUNNING", "STATUSES",
    "Channel", "DataDirBusy", "Event", "JobCancelled", "JobManager", "JobRecord", "JobStore", "Runner",
    "default_data_dir", "job_transcript", "job_view",
]
