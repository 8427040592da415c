"""Cross-caller batching: chunk jobs from concurrent callers share one encode/generate call.

Callers `submit()` jobs and wait on futures; one worker thread takes the first pending job, waits up
to `wait_s` for more (or until `max_batch` are pending), and runs every job with the same decoding
settings as one engine batch. With `reports_each`, `run` also takes `on_result(index, decoded)` (as
`WhisperEngine.run` does) and each job's future resolves as soon as its sub-batch is decoded.

It stops waiting early once every caller it expects has jobs pending: the callers active now, or,
if more were active within the last `PEAK_WINDOW_S`, that many. Under steady load requests finish
and arrive in waves; without the memory of the peak, a batch would start with the half of the
callers that happened to be in and the other half would form the next batch, halving both.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial

from .decoding import Decoded
from .engine import ChunkJob

log = logging.getLogger(__name__)

RunBatch = Callable[[list[ChunkJob]], list[Decoded]]
KEEP_SIZES = 1000
PEAK_WINDOW_S = 2.0


class SchedulerClosed(RuntimeError):
    """Raised by submit() after close()."""


@dataclass
class BatchStats:
    """Cumulative counts of the batches run (for /status and /metrics)."""

    batches: int = 0
    chunks: int = 0
    shared: int = 0
    """Batches holding chunks of more than one caller (one submit() call = one caller's step)."""
    largest: int = 0

    def as_dict(self) -> dict:
        """The counts and the mean batch size."""
        mean = round(self.chunks / self.batches, 3) if self.batches else None
        return {"batches": self.batches, "chunks": self.chunks, "shared_batches": self.shared,
                "largest_batch": self.largest, "mean_batch": mean}


class BatchScheduler:
    """Collects jobs within a short wait window up to a maximum batch and runs them together."""

    def __init__(self, run: RunBatch, max_batch: int = 8, wait_s: float = 0.01, reports_each: bool = False) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run = run
        self.reports_each = reports_each
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.batch_sizes: list[int] = []
        self.stats = BatchStats()
        self._pending: list[tuple[ChunkJob, Future, int]] = []
        self._queued_at: dict[int, float] = {}  # id(future) -> submit time (for the debug log)
        self._submissions = 0
        self._callers = 0
        self._peaks: collections.deque[tuple[float, int]] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="amanuensis-batcher", daemon=True)
        self._thread.start()

    def submit(self, jobs: list[ChunkJob]) -> list[Future]:
        """Queue `jobs`; each future resolves to its Decoded (or raises the batch's error)."""
        futures = [Future() for _ in jobs]
        with self._cond:
            if self._closed:
                raise SchedulerClosed("the batch scheduler is closed")
            self._submissions += 1
            self._pending.extend((job, future, self._submissions) for job, future in zip(jobs, futures))
            now = time.monotonic()
            self._queued_at.update((id(future), now) for future in futures)
            self._cond.notify_all()
        return futures

    @contextlib.contextmanager
    def caller(self) -> Iterator[None]:
        """Mark a caller active while it decodes (between its run() calls too): a batch stops waiting
        as soon as every active caller has jobs pending, so a lone caller never waits at all."""
        with self._cond:
            self._callers += 1
            self._peaks.append((time.monotonic(), self._callers))
        try:
            yield
        finally:
            with self._cond:
                self._callers -= 1
                self._cond.notify_all()

    def run(self, jobs: list[ChunkJob]) -> list[Decoded]:
        """Submit `jobs` and wait for their results (the drop-in for WhisperEngine.run)."""
        return [future.result() for future in self.start(jobs)]

    def start(self, jobs: list[ChunkJob]) -> list[Future]:
        """Submit `jobs`; each future resolves to its Decoded (the drop-in for WhisperEngine.submit).

        Once the scheduler is closed, runs them at once in the caller's thread instead, so a caller
        still holding it (a request on a model being unloaded) finishes unbatched."""
        with self._cond:
            closed = self._closed
        if not closed:
            try:
                return self.submit(jobs)
            except SchedulerClosed:
                pass
        futures: list[Future] = [Future() for _ in jobs]
        for future, result in zip(futures, self._run(jobs), strict=True):
            future.set_result(result)
        return futures

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

    def _take_batch(self) -> list[tuple[ChunkJob, Future, int]] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return None
            deadline = time.monotonic() + self.wait_s
            while len(self._pending) < self.max_batch and not self._closed and not self._all_in():
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

    def _all_in(self) -> bool:
        """True when every caller expected has jobs pending (never without marked callers): those
        active now, or as many as were active at once within the last PEAK_WINDOW_S."""
        if self._callers == 0:
            return False
        now = time.monotonic()
        while self._peaks and now - self._peaks[0][0] > PEAK_WINDOW_S:
            self._peaks.popleft()
        expected = max([self._callers, *(count for _, count in self._peaks)])
        return len({caller for _, _, caller in self._pending}) >= min(expected, self.max_batch)

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            live = [(job, future, caller) for job, future, caller in batch if future.set_running_or_notify_cancel()]
            if not live:
                continue
            self._account(len(live), len({caller for _, _, caller in live}))
            started = time.monotonic()
            waits = [started - self._queued_at.pop(id(future), started) for _, future, _ in batch]
            jobs = [job for job, _, _ in live]
            try:
                if self.reports_each:
                    results = self._run(jobs, on_result=partial(_resolve, [future for _, future, _ in live]))
                else:
                    results = self._run(jobs)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
                log.exception("batch of %d jobs failed", len(live))
                for _, future, _ in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future, _), result in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(result)
            log.debug("batch: jobs=%d wait_max_s=%.3f run_s=%.3f pending=%d", len(live), max(waits),
                      time.monotonic() - started, len(self._pending))

    def _account(self, size: int, callers: int) -> None:
        self.batch_sizes.append(size)
        if len(self.batch_sizes) > 2 * KEEP_SIZES:
            del self.batch_sizes[:-KEEP_SIZES]
        stats = self.stats
        stats.batches += 1
        stats.chunks += size
        stats.shared += callers > 1
        stats.largest = max(stats.largest, size)


def _resolve(futures: list[Future], index: int, result: Decoded) -> None:
    futures[index].set_result(result)
