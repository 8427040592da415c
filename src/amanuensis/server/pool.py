"""The models the server holds: the default model (one replica per worker, loaded at start-up) and
other models loaded on demand, least recently used first out, up to `max_models` in all."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from ..asr.scheduler import BatchScheduler
from ..errors import ModelError
from ..models import EMBEDDED_ALIASES, ModelInfo, resolve_model
from ..pipeline import Transcriber
from .settings import ServerSettings

log = logging.getLogger(__name__)

OPENAI_ALIAS = "whisper-1"
TranscriberFactory = Callable[..., Transcriber]


class ModelPool:
    """Transcribers by model path; thread-safe."""

    def __init__(self, settings: ServerSettings, factory: TranscriberFactory = Transcriber) -> None:
        self.settings = settings
        self.factory = factory
        self.replicas: list[Transcriber] = []
        self.live: list[Transcriber] = []
        """The default model's copies for realtime sessions (`realtime_workers`), loaded at the first one."""
        self._live_lock = threading.Lock()
        self._extra: OrderedDict[str, Transcriber] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self.schedulers: list[BatchScheduler] = []

    def _load(self, name: str, threads: int | None = None) -> Transcriber:
        started = time.perf_counter()
        transcriber = self.factory(
            name,
            device=self.settings.device,
            compute_type=self.settings.compute_type,
            cpu_threads=threads or self.settings.threads_per_worker(),
            batch_size=self.settings.batch_size,
        )
        log.info("model loaded: name=%s path=%s seconds=%.2f", transcriber.info.name,
                 transcriber.info.path, time.perf_counter() - started)
        if self.settings.cross_request_batching:
            scheduler = BatchScheduler(transcriber.batched.engine.run, max_batch=self.settings.batch_size,
                                       wait_s=self.settings.batch_wait_ms / 1000, reports_each=True)
            transcriber.share_batches(scheduler)
            with self._lock:
                self.schedulers.append(scheduler)
        return transcriber

    def load_default(self) -> None:
        """Load the default model once per worker (blocking; call from a thread)."""
        self.replicas = [self._load(self.settings.model) for _ in range(self.settings.workers)]

    @property
    def loaded(self) -> bool:
        """True once the default model is in memory."""
        return bool(self.replicas)

    @property
    def default(self) -> Transcriber:
        """The default model's first replica."""
        if not self.replicas:
            raise ModelError("the default model is not loaded yet")
        return self.replicas[0]

    def aliases(self) -> list[str]:
        """Names that select the default model."""
        info = self.default.info
        names = {info.name, self.settings.model, OPENAI_ALIAS}
        if info.source == "embedded":
            names |= EMBEDDED_ALIASES
        return sorted(names)

    def resolve(self, name: str | None) -> ModelInfo:
        """The ModelInfo a request's `model` names (blocking: may assemble a packaged model)."""
        if not name or name in self.aliases():
            return self.default.info
        info = resolve_model(name)
        if info.path != self.default.info.path and self.settings.max_models < 2:
            raise ModelError(
                f"model {name!r} is not loaded and this server keeps only {self.default.info.name}; "
                "start it with --max-models 2 or more to load other models on demand"
            )
        return info

    def get(self, info: ModelInfo, slot: int, live: bool = False) -> Transcriber:
        """The transcriber for `info` on worker `slot` (`live`: for a realtime session), loading it on
        first use (blocking)."""
        if info.path == self.default.info.path:
            if live and self.settings.realtime_workers:
                return self._live(slot)
            return self.replicas[slot % len(self.replicas)]
        with self._lock:
            if info.path in self._extra:
                self._extra.move_to_end(info.path)
                return self._extra[info.path]
            loading = self._loading.setdefault(info.path, threading.Lock())
        with loading:
            with self._lock:
                if info.path in self._extra:
                    return self._extra[info.path]
            transcriber = self._load(info.path if info.source == "local" else info.name)
            with self._lock:
                self._extra[info.path] = transcriber
                while len(self._extra) > self.settings.max_models - 1:
                    path, dropped = self._extra.popitem(last=False)
                    self._drop_scheduler(dropped)
                    log.info("model unloaded (least recently used): path=%s", path)
            return transcriber

    def _live(self, slot: int) -> Transcriber:
        """The default model's copy for realtime session `slot`: one of `realtime_workers` copies that share
        the cores, loaded at the first session, so that live decodes neither wait behind file requests
        nor run two threads on one copy (on 2 cores, two 1-thread copies met the 4-stream latency targets
        that one 2-thread copy missed)."""
        with self._live_lock:
            if not self.live:
                threads = self.settings.threads_per_realtime_worker()
                self.live = [self._load(self.settings.model, threads) for _ in range(self.settings.realtime_workers)]
        return self.live[slot % len(self.live)]

    def _drop_scheduler(self, transcriber: Transcriber) -> None:
        """Close an unloaded model's scheduler: its worker thread ends once its queue is empty, and a
        request still using the model decodes its remaining chunks unbatched. Call with `self._lock` held."""
        mine = getattr(transcriber, "_scheduler", None)
        for scheduler in [s for s in self.schedulers if s is mine]:
            self.schedulers.remove(scheduler)
            threading.Thread(target=scheduler.close, name="amanuensis-batcher-close", daemon=True).start()

    def batching(self) -> dict:
        """Cross-request batching: the settings and the engine batches run so far, all models together."""
        with self._lock:
            stats = [scheduler.stats for scheduler in self.schedulers]
        batches, chunks = sum(s.batches for s in stats), sum(s.chunks for s in stats)
        return {
            "enabled": self.settings.cross_request_batching,
            "wait_ms": self.settings.batch_wait_ms,
            "max_batch": self.settings.batch_size,
            "max_concurrent": self.settings.max_concurrent,
            "batches": batches,
            "chunks": chunks,
            "shared_batches": sum(s.shared for s in stats),
            "largest_batch": max((s.largest for s in stats), default=0),
            "mean_batch": round(chunks / batches, 3) if batches else None,
        }

    def close(self) -> None:
        """Stop the batch schedulers after the chunks already queued are done."""
        with self._lock:
            schedulers, self.schedulers = self.schedulers, []
        for scheduler in schedulers:
            scheduler.close()

    def loaded_models(self) -> list[ModelInfo]:
        """Every model in memory now, the default first."""
        with self._lock:
            extra = [t.info for t in self._extra.values()]
        return ([self.default.info] if self.replicas else []) + extra
