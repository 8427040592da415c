"""Local parallelism: worker threads, each with its own model (CTranslate2 releases the GIL)."""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from ..pipeline import TranscribeOptions
from .work import CorpusWorker, FileResult, WorkerSpec

log = logging.getLogger(__name__)

ResultSink = Callable[[FileResult], None]
_STOP = None


def plan_parallelism(cores: int | None = None, workers: int | None = None, threads: int | None = None
                     ) -> tuple[int, int]:
    """(workers, threads per worker) for this machine: by default one single-threaded model per core
    (CTranslate2 gains little from a second thread inside one call, so files side by side use the cores better);
    either number given fixes it and the other fills the cores."""
    cores = max(1, cores or os.cpu_count() or 1)
    if workers and threads:
        return workers, threads
    if workers:
        return workers, max(1, cores // workers)
    if threads:
        return max(1, cores // threads), threads
    return cores, 1


class LocalBackend:
    """`workers` threads pulling files from one queue; results are handed to the caller's thread."""

    def __init__(self, spec: WorkerSpec, workers: int) -> None:
        self.spec = spec
        self.workers = workers
        with ThreadPoolExecutor(workers) as pool:  # load the models side by side
            self.models = list(pool.map(lambda i: CorpusWorker(spec, f"local-{i}"), range(workers)))

    def describe(self) -> str:
        """Where the run happens, for the log."""
        return f"local: {self.workers} worker(s) x {self.spec.threads} thread(s)"

    def run(self, paths: Sequence[str], options: TranscribeOptions, on_result: ResultSink) -> None:
        """Transcribe every path; `on_result` is called in this thread as each file finishes."""
        todo: queue.Queue = queue.Queue()
        done: queue.Queue = queue.Queue()
        for path in paths:
            todo.put(path)
        stop = threading.Event()

        def loop(model: CorpusWorker) -> None:
            while not stop.is_set():
                try:
                    path = todo.get_nowait()
                except queue.Empty:
                    break
                done.put(model.run(path, options))
            done.put(_STOP)

        threads = [threading.Thread(target=loop, args=(m,), name=m.name, daemon=True) for m in self.models]
        for thread in threads:
            thread.start()
        running = len(threads)
        try:
            while running:
                result = done.get()
                if result is _STOP:
                    running -= 1
                else:
                    on_result(result)
        finally:
            stop.set()  # on an interrupt: no new files start; in-flight ones are abandoned

    def close(self) -> None:
        """Nothing to release beyond the models (freed with this object)."""
        self.models = []
