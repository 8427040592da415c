"""Hub models fetched on request (POST /v1/models/{id} where downloads are allowed): downloaded in the
background with byte progress, then loaded into the pool like any other model."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError, error_of
from ..models import describe
from .pool import ModelPool

log = logging.getLogger(__name__)

POLL_S = 0.5
_HUB_FILES = ("config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.")
"""The files faster-whisper fetches of a model repository (vocabulary.* by prefix)."""
Progress = Callable[[int, "int | None"], None]
Fetch = Callable[[str, Progress], Path]


def repo_id(name: str) -> str:
    """The hub repository of a faster-whisper model name (a repository id stays as it is)."""
    from faster_whisper.utils import _MODELS

    return name if "/" in name else _MODELS.get(name, name)


def _expected_bytes(repo: str) -> int | None:
    """The size of the files faster-whisper downloads from `repo`, from the hub's metadata (None if unknown)."""
    try:
        from huggingface_hub import HfApi

        siblings = HfApi().model_info(repo, files_metadata=True).siblings or []
        return sum(s.size or 0 for s in siblings if s.rfilename.startswith(_HUB_FILES)) or None
    except Exception:  # noqa: BLE001 - progress then shows bytes without a total
        return None


def _directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def fetch_hub_model(name: str, progress: Progress) -> Path:
    """Download a faster-whisper model into the hub cache (blocking), reporting bytes received so far."""
    from faster_whisper.utils import download_model
    from huggingface_hub import constants

    repo = repo_id(name)
    total = _expected_bytes(repo)
    blobs = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "blobs"
    done = threading.Event()

    def watch() -> None:
        while not done.wait(POLL_S):
            progress(_directory_bytes(blobs), total)

    watcher = threading.Thread(target=watch, name="amanuensis-download-progress", daemon=True)
    watcher.start()
    try:
        path = Path(download_model(name))
    except Exception as exc:  # noqa: BLE001 - network, auth, or name errors from the hub client
        raise ModelError(f"model {name!r} could not be downloaded: {str(exc).splitlines()[0][:200]}") from exc
    finally:
        done.set()
        watcher.join()
    size = _directory_bytes(blobs)
    progress(size, total or size)
    return path


@dataclass
class Download:
    """One model being fetched: its state (downloading, loading, loaded, failed) and progress."""

    name: str
    state: str = "downloading"
    done_bytes: int = 0
    total_bytes: int | None = None
    error: dict[str, Any] | None = None
    started_at: float = field(default_factory=time.time)

    @property
    def active(self) -> bool:
        """True while it downloads or loads."""
        return self.state in ("downloading", "loading")

    def view(self) -> dict[str, Any]:
        """The JSON shown on the model."""
        percent = round(100.0 * self.done_bytes / self.total_bytes, 1) if self.total_bytes else None
        return {"state": self.state, "done_bytes": self.done_bytes, "total_bytes": self.total_bytes,
                "percent": percent, "started_at": round(self.started_at, 3), "error": self.error}


class ModelDownloads:
    """The downloads started on this server, by model name (the last one of each name is kept)."""

    def __init__(self, pool: ModelPool, fetch: Fetch = fetch_hub_model) -> None:
        self.pool = pool
        self.fetch = fetch
        self.by_name: dict[str, Download] = {}
        self._tasks: set[asyncio.Task] = set()

    def start(self, name: str) -> Download:
        """Fetch and then load `name` in the background (once: a download under way is returned as it is)."""
        current = self.by_name.get(name)
        if current is not None and current.active:
            return current
        download = self.by_name[name] = Download(name)
        task = asyncio.create_task(self._run(download), name=f"download-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("model download started: name=%s", name)
        return download

    async def _run(self, download: Download) -> None:
        def progress(done: int, total: int | None) -> None:
            download.done_bytes, download.total_bytes = done, total

        try:
            path = await asyncio.to_thread(self.fetch, download.name, progress)
            download.state = "loading"
            info = await asyncio.to_thread(describe, path, download.name, "hub")
            await asyncio.to_thread(self.pool.load, info)
            download.state = "loaded"
            log.info("model downloaded and loaded: name=%s bytes=%d", download.name, download.done_bytes)
        except Exception as exc:  # noqa: BLE001 - every failure is shown on the model
            download.state, download.error = "failed", error_of(exc)
            log.warning("model download failed: name=%s error=%s", download.name, exc)

    async def stop(self) -> None:
        """Stop waiting for downloads (a download thread ends on its own; its files stay cached)."""
        for task in list(self._tasks):
            task.cancel()
