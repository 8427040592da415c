"""Persistent transcription jobs: SQLite store, worker queue, live progress and events, cancel, expiry."""

from .events import Channel, Event, segment_json
from .manager import JobCancelled, JobManager, Runner, job_transcript, job_view, options_from_dict, options_to_dict
from .runner import TranscriberRunner
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
    "TranscriberRunner",
    "default_data_dir", "job_transcript", "job_view", "options_from_dict", "options_to_dict", "segment_json",
]
