"""The models the server holds: the default model (one replica per worker, loaded at start-up, kept) and
other models loaded on demand (by a request's `model` or POST /v1/models/{id}) and unloaded on demand,
after `model_ttl` idle seconds, or (least recently used first) to make room for a request's model.

Admission: a load that would pass `max_models` is refused (409) or, for a request, makes room by
unloading an idle model; a load whose size would pass `max_model_memory_mb`, or what the host has
left, is refused (507) before anything is allocated. An unloaded model is forgotten everywhere here (its
batch scheduler closed), and its memory handed back to the kernel.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..asr.scheduler import BatchScheduler
from ..errors import ModelConflictError, ModelError, ModelMemoryError
from ..models import EMBEDDED_ALIASES, ModelInfo, resolve_model
from ..pipeline import Transcriber
from .memory import available_bytes, process_rss_bytes, release_freed_memory
from .settings import ServerSettings

log = logging.getLogger(__name__)

OPENAI_ALIAS = "whisper-1"
TranscriberFactory = Callable[..., Transcriber]
HOST_MEMORY_SHARE = 0.9
"""A load may take at most this share of the host's available memory."""


@dataclass
class LoadedModel:
    """A model held besides the default: who uses it and what it cost."""

    info: ModelInfo
    transcriber: Transcriber
    memory_bytes: int
    """Resident memory the load added (measured), at least the model's size on disk."""
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    users: int = 0
    """File requests decoding on it now."""


class ModelPool:
    """Transcribers by model path; thread-safe."""

    def __init__(self, settings: ServerSettings, factory: TranscriberFactory = Transcriber) -> None:
        self.settings = settings
        self.factory = factory
        self.replicas: list[Transcriber] = []
        self.live: list[Transcriber] = []
        """The default model's copies for realtime sessions (`realtime_workers`), loaded at the first one."""
        self.default_memory = 0
        """Resident memory the default model's copies added (measured)."""
        self._live_lock = threading.Lock()
        self._extra: OrderedDict[str, LoadedModel] = OrderedDict()
        self._holders: dict[str, str] = {}
        """Realtime session id -> the path of the (non-default) model it decodes with."""
        self._reserved: dict[str, int] = {}
        """Paths being loaded now -> their size, counted against the limits while they load."""
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self.schedulers: list[BatchScheduler] = []

    def _load(self, model: str | ModelInfo, threads: int | None = None) -> Transcriber:
        """Load a copy of `model` (a name, or a model already resolved)."""
        started = time.perf_counter()
        transcriber = self.factory(
            model,
            device=self.settings.device,
            compute_type=self.settings.compute_type,
            cpu_threads=threads or self.settings.threads_per_worker(),
            batch_size=self.settings.batch_size,
        )
        log.info("model loaded: name=%s path=%s seconds=%.2f", transcriber.info.name,
                 transcriber.info.path, time.perf_counter() - started)
        if self.settings.cross_request_batching:
            scheduler = BatchScheduler(transcriber.batched.engine.run, max_batch=self.settings.batch_size,
                                       wait_s=self.settings.batch_wait_ms / 1000)
            transcriber.share_batches(scheduler)
            with self._lock:
                self.schedulers.append(scheduler)
        return transcriber

    def load_default(self) -> None:
        """Load the default model once per worker (blocking; call from a thread)."""
        before = process_rss_bytes() or 0
        self.replicas = [self._load(self.settings.model) for _ in range(self.settings.workers)]
        self.default_memory = max(0, (process_rss_bytes() or 0) - before)

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
        info = resolve_model(name, allow_download=self.settings.allow_download)
        if info.path != self.default.info.path and self.settings.max_models < 2:
            raise ModelConflictError(
                f"model {name!r} is not loaded and this server keeps only {self.default.info.name} "
                "(--max-models 1); start it with --max-models 2 or more to load other models on demand")
        return info

    def get(self, info: ModelInfo, slot: int, live: bool = False) -> Transcriber:
        """The transcriber for `info` on worker `slot` (`live`: for a realtime session), loading it on
        first use (blocking; an idle model may be unloaded to make room)."""
        if info.path == self.default.info.path:
            if live and self.settings.realtime_workers:
                return self._live(slot)
            return self.replicas[slot % len(self.replicas)]
        return self._ensure(info, make_room=True).transcriber

    @contextlib.contextmanager
    def using(self, info: ModelInfo, slot: int) -> Iterator[Transcriber]:
        """The transcriber for `info`, counted as in use (not unloaded) until the block ends."""
        if info.path == self.default.info.path:
            yield self.get(info, slot)
            return
        entry = self._ensure(info, make_room=True, use=True)
        try:
            yield entry.transcriber
        finally:
            with self._lock:
                entry.users -= 1
                entry.last_used = time.monotonic()

    def hold(self, owner: str, info: ModelInfo, slot: int) -> Transcriber:
        """The transcriber a realtime session `owner` decodes with from now on (its model is kept loaded
        until `release(owner)` or the session's next hold)."""
        transcriber = self.get(info, slot, live=True)
        with self._lock:
            if info.path in self._extra:
                self._holders[owner] = info.path
            else:
                self._holders.pop(owner, None)
        return transcriber

    def release(self, owner: str) -> None:
        """A realtime session ended: its model no longer counts as in use."""
        with self._lock:
            path = self._holders.pop(owner, None)
            if path in self._extra:
                self._extra[path].last_used = time.monotonic()

    def load(self, info: ModelInfo) -> LoadedModel | None:
        """Load `info` on request (POST /v1/models/{id}); never unloads another model to make room.
        None for the default model, which is always loaded."""
        if info.path == self.default.info.path:
            return None
        return self._ensure(info, make_room=False)

    def _ensure(self, info: ModelInfo, make_room: bool, use: bool = False) -> LoadedModel:
        """The loaded entry of `info`, loading it after admission (see the module docstring)."""
        with self._lock:
            entry = self._touch(info.path, use)
            if entry is not None:
                return entry
            loading = self._loading.setdefault(info.path, threading.Lock())
        with loading:
            with self._lock:
                entry = self._touch(info.path, use)
                if entry is not None:
                    return entry
                evicted = self._admit(info, make_room)
                self._reserved[info.path] = info.size_bytes
            try:
                self._free(evicted, "to make room")
                before = process_rss_bytes() or 0
                transcriber = self._load(info)
                grown = max(info.size_bytes, (process_rss_bytes() or 0) - before)
                entry = LoadedModel(info, transcriber, grown, users=1 if use else 0)
                with self._lock:
                    self._extra[info.path] = entry
            finally:
                with self._lock:
                    self._reserved.pop(info.path, None)
            return entry

    def _touch(self, path: str, use: bool) -> LoadedModel | None:
        """The entry of a loaded model, marked used now (call with `self._lock` held)."""
        entry = self._extra.get(path)
        if entry is not None:
            self._extra.move_to_end(path)
            entry.last_used = time.monotonic()
            entry.users += 1 if use else 0
        return entry

    def _busy(self, path: str) -> bool:
        entry = self._extra[path]
        return entry.users > 0 or path in self._holders.values()

    def _held_bytes(self) -> int:
        return self.default_memory + sum(e.memory_bytes for e in self._extra.values()) + sum(self._reserved.values())

    def _admit(self, info: ModelInfo, make_room: bool) -> list[LoadedModel]:
        """Check the limits for loading `info`; the idle models to unload first (with `make_room`).
        Raises ModelConflictError (409) or ModelMemoryError (507). Call with `self._lock` held."""
        settings, evict = self.settings, []
        limit = settings.max_model_memory_mb * 1024 * 1024
        idle = [path for path in self._extra if not self._busy(path)]  # least recently used first

        def over() -> tuple[bool, bool]:
            held = [p for p in self._extra if p not in {e.info.path for e in evict}]
            count = 1 + len(held) + len(self._reserved)
            memory = self._held_bytes() - sum(e.memory_bytes for e in evict)
            return count >= settings.max_models, bool(limit) and memory + info.size_bytes > limit

        while any(over()) and make_room and idle:
            evict.append(self._extra[idle.pop(0)])
        too_many, too_big = over()
        if too_many:
            loaded = ", ".join([self.default.info.name, *(e.info.name for e in self._extra.values())])
            raise ModelConflictError(
                f"cannot load {info.name}: this server holds at most {settings.max_models} models "
                f"(--max-models) and holds {loaded}{' (in use)' if make_room else ''}; "
                "unload one with DELETE /v1/models/{id}", "model_limit")
        if too_big:
            raise ModelMemoryError(
                f"cannot load {info.name} ({info.size_bytes / 2**20:.0f} MiB): the models held would pass the "
                f"memory limit of {settings.max_model_memory_mb:g} MiB (--max-model-memory-mb)")
        free = available_bytes()
        if free is not None and info.size_bytes > HOST_MEMORY_SHARE * (free + sum(e.memory_bytes for e in evict)):
            raise ModelMemoryError(f"cannot load {info.name} ({info.size_bytes / 2**20:.0f} MiB): the host has "
                                   f"{free / 2**20:.0f} MiB of memory available")
        for entry in evict:
            del self._extra[entry.info.path]
        return evict

    def unload(self, info: ModelInfo) -> int:
        """Unload `info` now (DELETE /v1/models/{id}); returns the resident bytes handed back. Raises
        ModelConflictError for the default model or one in use, ModelError when it is not loaded."""
        if info.path == self.default.info.path:
            raise ModelConflictError(f"{info.name} is this server's default model (--model) and stays loaded",
                                     "model_pinned")
        with self._lock:
            if info.path not in self._extra:
                raise ModelError(f"model {info.name!r} is not loaded")
            if self._busy(info.path):
                raise ModelConflictError(f"model {info.name} is in use by a request or realtime session; "
                                         "try again when it ends", "model_in_use")
            unloading = [self._extra.pop(info.path)]
        before = process_rss_bytes() or 0
        self._free(unloading, "on request")
        return max(0, before - (process_rss_bytes() or 0))

    def unload_idle(self, now: float | None = None) -> list[str]:
        """Unload the models idle for `model_ttl` seconds or more (never the default); their names."""
        ttl = self.settings.model_ttl
        if not ttl:
            return []
        now = time.monotonic() if now is None else now
        with self._lock:
            stale = [e for p, e in self._extra.items() if not self._busy(p) and now - e.last_used >= ttl]
            names = [e.info.name for e in stale]
            for path in [e.info.path for e in stale]:
                del self._extra[path]
        self._free(stale, f"idle for {ttl:g} s")
        return names

    def _free(self, entries: list[LoadedModel], why: str) -> None:
        """Forget unloaded models everywhere (their schedulers closed) and return their memory."""
        if not entries:
            return
        for entry in entries:
            self._drop_scheduler(entry.transcriber)
            log.info("model unloaded (%s): name=%s path=%s", why, entry.info.name, entry.info.path)
        del entry
        entries.clear()  # the last references: the caller keeps none
        release_freed_memory()

    def _live(self, slot: int) -> Transcriber:
        """The default model's copy for realtime session `slot`: one of `realtime_workers` copies that share
        the cores, loaded at the first session, so that live decodes neither wait behind file requests
        nor run two threads on one copy (on 2 cores, two 1-thread copies met the 4-stream latency targets
        that one 2-thread copy missed)."""
        with self._live_lock:
            if not self.live:
                threads = self.settings.threads_per_realtime_worker()
                before = process_rss_bytes() or 0
                self.live = [self._load(self.settings.model, threads) for _ in range(self.settings.realtime_workers)]
                self.default_memory += max(0, (process_rss_bytes() or 0) - before)
        return self.live[slot % len(self.live)]

    def _drop_scheduler(self, transcriber: Transcriber) -> None:
        """Close an unloaded model's scheduler and wait for its thread: it ends once its queue is empty (a
        request still using the model decodes its remaining chunks unbatched)."""
        mine = getattr(transcriber, "_scheduler", None)
        with self._lock:
            closing = [s for s in self.schedulers if s is mine]
            for scheduler in closing:
                self.schedulers.remove(scheduler)
        for scheduler in closing:
            scheduler.close()

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
            extra = [entry.info for entry in self._extra.values()]
        return ([self.default.info] if self.replicas else []) + extra

    def states(self) -> dict[str, dict]:
        """By model path: how each loaded model stands (memory, users, idle seconds, TTL left)."""
        now, ttl = time.monotonic(), self.settings.model_ttl
        with self._lock:
            found = {e.info.path: {"memory_bytes": e.memory_bytes, "in_use": self._busy(p),
                                   "loaded_at": round(e.loaded_at, 3), "idle_s": round(now - e.last_used, 1),
                                   "unload_in_s": round(max(0.0, ttl - (now - e.last_used)), 1) if ttl else None}
                     for p, e in self._extra.items()}
        if self.replicas:
            found[self.default.info.path] = {"memory_bytes": self.default_memory, "in_use": True,
                                             "loaded_at": None, "idle_s": None, "unload_in_s": None}
        return found
