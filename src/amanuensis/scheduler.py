"""Cross-caller batching: chunk jobs from concurrent callers share one encode/generate call.

Callers `submit()` jobs and wait on futures; one worker thread takes the first pending job, waits up
to `wait_s` for more (or until `max_batch` are pending), and runs every job with the same decoding
settings as one engine batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from .decoding import Decoded
from .engine import ChunkJob

log = logging.getLogger(__name__)

RunBatch = Callable[[list[ChunkJob]], list[Decoded]]


class BatchScheduler:
    """Collects jobs within a short wait window up to a maximum batch and runs them together."""

    def __init__(self, run: RunBatch, max_batch: int = 8, wait_s: float = 0.01) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run = run
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.batch_sizes: list[int] = []
        self._pending: list[tuple[ChunkJob, Future]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="amanuensis-batcher", daemon=True)
        self._thread.start()

    def submit(self, jobs: list[ChunkJob]) -> list[Future]:
        """Queue `jobs`; each future resolves to its Decoded (or raises the batch's error)."""
        futures = [Future() for _ in jobs]
        with self._cond:
            if self._closed:
                raise RuntimeError("the batch scheduler is closed")
            self._pending.extend(zip(jobs, futures))
            self._cond.notify_all()
        return futures

    def run(self, jobs: list[ChunkJob]) -> list[Decoded]:
        """Submit `jobs` and wait for their results (the drop-in for WhisperEngine.run)."""
        return [future.result() for future in self.submit(jobs)]

    def close(self) -> None:
        """Stop the worker after the jobs already queued are done."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def __enter__(self) -> BatchScheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take_batch(self) -> list[tuple[ChunkJob, Future]] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return None
            deadline = time.monotonic() + self.wait_s
            while len(self._pending) < self.max_batch and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            settings = self._pending[0][0].settings
            batch, rest = [], []
            for item in self._pending:
                if item[0].settings == settings and len(batch) < self.max_batch:
                    batch.append(item)
                else:
                    rest.append(item)
            self._pending = rest
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            live = [(job, future) for job, future in batch if future.set_running_or_notify_cancel()]
            if not live:
                continue
            self.batch_sizes.append(len(live))
            try:
                results = self._run([job for job, _ in live])
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
                log.exception("batch of %d jobs failed", len(live))
                for _, future in live:
                    future.set_exception(exc)
                continue
            for (_, future), result in zip(live, results):
                future.set_result(result)
