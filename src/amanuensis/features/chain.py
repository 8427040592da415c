"""The fallback chain: ordered backends, each call served by the first healthy one.

A backend that fails at start-up is skipped; one that fails on a call is retried with the same input
on the next backend down the chain, and after `max_failures` failures in a row it is marked unhealthy
and re-probed after `reprobe_after_s`. Every call records which backend served it, its time and any
failure; `status()` exposes these counters for /status and /metrics.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import BackendError
from . import spec
from .backends import Backend, BackendSpec, auto_specs, create, parse_specs
from .backends.base import as_audio

log = logging.getLogger(__name__)

ENV_CHAIN = "AMANUENSIS_FRONTEND"
ENV_FAULTS = "AMANUENSIS_FRONTEND_FAULTS"
DEFAULT_MAX_FAILURES = 3
DEFAULT_REPROBE_S = 30.0
RECENT_CALLS = 32


@dataclass
class _Entry:
    """A configured backend (or the spec of one that failed to start) and its counters."""

    label: str
    name: str
    device: str
    batch_frames: int | None
    backend: Backend | None
    available: bool = True
    healthy: bool = True
    calls: int = 0
    failures: int = 0
    fallbacks: int = 0
    consecutive_failures: int = 0
    seconds: float = 0.0
    audio_seconds: float = 0.0
    last_error: str | None = None
    unhealthy_since: float | None = None

    def as_dict(self) -> dict:
        return {
            "name": self.label,
            "backend": self.name,
            "device": self.device,
            "batch_frames": self.batch_frames,
            "available": self.available,
            "healthy": self.available and self.healthy,
            "calls": self.calls,
            "failures": self.failures,
            "fallbacks": self.fallbacks,
            "seconds": round(self.seconds, 6),
            "audio_seconds": round(self.audio_seconds, 3),
            "last_error": self.last_error,
        }


@dataclass
class _Faults:
    """Injected failures: backend label or name -> calls left to fail (None: every call)."""

    remaining: dict[str, int | None] = field(default_factory=dict)

    def take(self, entry: _Entry) -> bool:
        for key in (entry.label, entry.name):
            if key in self.remaining:
                left = self.remaining[key]
                if left is None:
                    return True
                if left > 0:
                    self.remaining[key] = left - 1
                    return True
        return False

    def permanent(self, entry: _Entry) -> bool:
        return any(key in self.remaining and self.remaining[key] is None for key in (entry.label, entry.name))


def parse_faults(text: str) -> dict[str, int | None]:
    """Parse AMANUENSIS_FRONTEND_FAULTS: `cpu`, `cpu:3`, `torch:cuda:2,onnx` (count: calls that fail)."""
    faults: dict[str, int | None] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        head, _, tail = part.rpartition(":")
        if head and tail.isdigit():
            faults[head] = int(tail)
        else:
            faults[part] = None
    return faults


class FrontendChain:
    """Log-mel features from the first healthy backend of an ordered chain, with fallback."""

    def __init__(
        self,
        backends: Sequence[Backend | BackendSpec | str],
        max_failures: int = DEFAULT_MAX_FAILURES,
        reprobe_after_s: float = DEFAULT_REPROBE_S,
        faults: Mapping[str, int | None] | str | None = None,
        probe: bool = True,
    ) -> None:
        self.max_failures = max(1, max_failures)
        self.reprobe_after_s = reprobe_after_s
        self._lock = threading.Lock()
        self._faults = _Faults(parse_faults(faults) if isinstance(faults, str) else dict(faults or {}))
        self._recent: deque[dict] = deque(maxlen=RECENT_CALLS)
        self.entries = [self._start(item, probe) for item in backends]
        if not any(e.available for e in self.entries):
            raise BackendError(
                "no front-end backend could start: " + "; ".join(f"{e.label}: {e.last_error}" for e in self.entries)
            )
        log.info(
            "front-end chain: %s",
            ", ".join(f"{e.label}{'' if e.available else ' (unavailable)'}" for e in self.entries),
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs) -> FrontendChain:
        """Build from AMANUENSIS_FRONTEND (e.g. `torch:cuda,cpu,reference`) or detect the host's chain;
        AMANUENSIS_FRONTEND_FAULTS injects failures (e.g. `cpu` or `cpu:3`)."""
        env = os.environ if env is None else env
        text = env.get(ENV_CHAIN, "").strip()
        specs = parse_specs(text) if text and text != "auto" else auto_specs()
        kwargs.setdefault("faults", env.get(ENV_FAULTS) or None)
        return cls(specs, **kwargs)

    def _start(self, item: Backend | BackendSpec | str, probe: bool) -> _Entry:
        if isinstance(item, str):
            item = BackendSpec.parse(item)
        if isinstance(item, BackendSpec):
            entry = _Entry(str(item), item.name, item.device or "default", item.batch_frames, None)
            try:
                item = create(item)
            except BackendError as exc:
                entry.available, entry.healthy, entry.last_error = False, False, str(exc)
                log.warning("front-end backend %s skipped: %s", entry.label, exc)
                return entry
        entry = _Entry(_label(item), item.name, item.device, item.batch_frames, item)
        if probe:  # injected faults hit calls and re-probes, not this first probe: the backend starts
            try:
                item.health()
            except BackendError as exc:
                entry.available, entry.healthy, entry.last_error = False, False, str(exc)
                log.warning("front-end backend %s failed its start-up probe: %s", entry.label, exc)
        return entry

    def _probe(self, entry: _Entry) -> None:
        if self._faults.permanent(entry):
            raise BackendError(f"injected fault in {entry.label} (probe)")
        assert entry.backend is not None
        entry.backend.health()

    @property
    def active(self) -> str | None:
        """Label of the backend the next call goes to first."""
        for entry in self.entries:
            if entry.available and entry.healthy:
                return entry.label
        return None

    def inject_fault(self, backend_name: str, times: int | None = None) -> None:
        """Make the next `times` calls (None: every call, probes too) to a backend raise BackendError."""
        with self._lock:
            self._faults.remaining[backend_name] = times

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        with self._lock:
            self._faults.remaining.clear()

    def compute(self, audio: np.ndarray, n_mels: int = 80) -> np.ndarray:
        """Features float32 (n_mels, len(audio) // 160); the clamp's max is over all of `audio`."""
        return self.compute_batch([audio], n_mels)[0]

    def compute_batch(self, audio_batch: Sequence[np.ndarray], n_mels: int = 80) -> list[np.ndarray]:
        """Features for each array (e.g. whole 30 s windows of several requests), each over its own max."""
        spec.check_n_mels(n_mels)
        arrays = [as_audio(a) for a in audio_batch]
        audio_seconds = sum(len(a) for a in arrays) / spec.SAMPLE_RATE
        errors: list[str] = []
        fallback = False
        for entry in self.entries:
            if not self._ready(entry):
                continue
            started = time.perf_counter()
            try:
                with self._lock:
                    injected = self._faults.take(entry)
                if injected:
                    raise BackendError(f"injected fault in {entry.label}")
                assert entry.backend is not None
                result = entry.backend.compute(arrays, n_mels)
                _check(result, arrays, n_mels)
            except Exception as exc:  # every failure of a backend moves the call down the chain
                self._failed(entry, exc, time.perf_counter() - started)
                errors.append(f"{entry.label}: {exc}")
                fallback = True
                continue
            self._served(entry, time.perf_counter() - started, audio_seconds, fallback, errors)
            return result
        raise BackendError("every front-end backend failed: " + "; ".join(errors or ["none is healthy"]))

    def _ready(self, entry: _Entry) -> bool:
        if not entry.available:
            return False
        if entry.healthy:
            return True
        if entry.unhealthy_since is None or time.monotonic() - entry.unhealthy_since < self.reprobe_after_s:
            return False
        try:
            self._probe(entry)
        except Exception as exc:
            with self._lock:
                entry.unhealthy_since = time.monotonic()
                entry.last_error = str(exc)
            log.info("front-end backend %s still unhealthy: %s", entry.label, exc)
            return False
        with self._lock:
            entry.healthy, entry.consecutive_failures, entry.unhealthy_since = True, 0, None
        log.info("front-end backend %s is healthy again", entry.label)
        return True

    def _failed(self, entry: _Entry, exc: Exception, seconds: float) -> None:
        with self._lock:
            entry.failures += 1
            entry.consecutive_failures += 1
            entry.last_error = f"{type(exc).__name__}: {exc}"
            if entry.consecutive_failures >= self.max_failures and entry.healthy:
                entry.healthy, entry.unhealthy_since = False, time.monotonic()
                log.error(
                    "front-end backend %s marked unhealthy after %d failures",
                    entry.label,
                    entry.consecutive_failures,
                )
            self._recent.append({"backend": entry.label, "seconds": round(seconds, 6), "error": entry.last_error})
        log.warning("front-end backend %s failed, falling back: %s", entry.label, exc)

    def _served(self, entry: _Entry, seconds: float, audio_seconds: float, fallback: bool, errors: list) -> None:
        with self._lock:
            entry.calls += 1
            entry.seconds += seconds
            entry.audio_seconds += audio_seconds
            entry.consecutive_failures = 0
            if fallback:
                entry.fallbacks += 1
            self._recent.append(
                {
                    "backend": entry.label,
                    "seconds": round(seconds, 6),
                    "audio_seconds": round(audio_seconds, 3),
                    "error": "; ".join(errors) or None,
                }
            )

    def status(self) -> dict:
        """JSON-able state: active backend, per-backend counters, recent calls, injected faults."""
        with self._lock:
            return {
                "active": self.active,
                "max_failures": self.max_failures,
                "reprobe_after_s": self.reprobe_after_s,
                "backends": [e.as_dict() for e in self.entries],
                "recent": list(self._recent),
                "faults": dict(self._faults.remaining),
            }


def _label(backend: Backend) -> str:
    return (
        backend.name
        + (f":{backend.device}" if backend.device != "cpu" or backend.name in ("torch", "onnx") else "")
        + (f"@{backend.batch_frames}" if backend.batch_frames else "")
    )


def _check(result: list[np.ndarray], arrays: list[np.ndarray], n_mels: int) -> None:
    if len(result) != len(arrays):
        raise BackendError(f"backend returned {len(result)} results for {len(arrays)} inputs")
    for features, audio in zip(result, arrays, strict=True):
        want = (n_mels, spec.n_frames(len(audio)))
        if features.shape != want or features.dtype != np.float32:
            raise BackendError(f"backend returned {features.dtype} {features.shape}, wanted float32 {want}")


_default: FrontendChain | None = None
_default_lock = threading.Lock()


def default_chain() -> FrontendChain:
    """The process-wide chain, built once from the environment (see `FrontendChain.from_env`)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = FrontendChain.from_env()
        return _default
