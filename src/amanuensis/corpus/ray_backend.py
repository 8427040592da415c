"""Corpus runs on a Ray cluster (Ray Core): decoding as CPU tasks placed on the node of the model actor
that will use the samples, transcription in a pool of actors holding one model each, outputs and
manifest written by the driver. A lost actor or node costs only its in-flight files, which are retried."""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..pipeline import TranscribeOptions
from ..ray_support import RayUnavailableError, connect, import_ray
from .work import CorpusWorker, FileResult, WorkerSpec, decode, describe_error

log = logging.getLogger(__name__)

IN_FLIGHT_PER_REPLICA = 2
"""Files handed to one actor at once: one transcribing while the next one's samples are decoded."""
MAX_SYSTEM_RETRIES = 3
"""How often a file is retried after losing its actor or node before it is recorded as failed."""
MAX_FAILED_STARTS_PER_REPLICA = 2
ACTOR_WAIT_S = float(os.environ.get("AMANUENSIS_RAY_ACTOR_WAIT_S", "600"))
"""How long the run waits with no live model actor (e.g. for a replacement to find room) before failing."""


@dataclass
class DecodeFailure:
    """A decode task's answer for a file that is not audio (kept out of Ray's error channel)."""

    error: str


def decode_or_failure(path: str) -> np.ndarray | DecodeFailure:
    """Decode a file, returning the error as a value (a bad file is data, not a lost task)."""
    try:
        return decode(path)
    except Exception as exc:  # noqa: BLE001 - recorded in the manifest by the driver
        return DecodeFailure(describe_error(exc))


class TranscriberActor:
    """A Ray actor holding one model; `run` transcribes one file's decoded samples."""

    def __init__(self, spec: WorkerSpec, name: str) -> None:
        import ray

        context = ray.get_runtime_context()
        self.node_id = context.get_node_id()
        self.ip = ray.util.get_node_ip_address()
        self.worker = CorpusWorker(spec, name, node=f"{self.ip}:{self.node_id[:12]}")

    def ready(self) -> str:
        """The node this actor runs on (answers once the model is loaded)."""
        return self.node_id

    def run(self, path: str, options: TranscribeOptions, samples: np.ndarray | DecodeFailure) -> FileResult:
        """Transcribe `samples` of `path`, or report the decode failure."""
        if isinstance(samples, DecodeFailure):
            return FileResult(path, None, samples.error, None, 0.0, self.worker.name, self.worker.node)
        return self.worker.run(path, options, samples)


@dataclass
class _Replica:
    handle: object
    name: str
    ready_ref: object
    node_id: str | None = None
    in_flight: set = field(default_factory=set)


class RayBackend:
    """A pool of model actors on a Ray cluster (connected to, or started on the spot)."""

    def __init__(self, spec: WorkerSpec, address: str | None = None, replicas: int | None = None,
                 gpus_per_replica: float | None = None) -> None:
        ray = import_ray()
        self.ray = ray
        self.spec = spec
        self._owns_connection = False
        started = time.perf_counter()
        if not ray.is_initialized():
            connect(ray, address, num_cpus=os.cpu_count() or 1)
            self._owns_connection = True
        self.connect_seconds = time.perf_counter() - started
        log.info("ray: %s in %.1f s", "connected to " + address if address else "started a local Ray",
                 self.connect_seconds)
        resources = ray.cluster_resources()
        cpus, gpus = float(resources.get("CPU", 1)), float(resources.get("GPU", 0))
        self.gpus = gpus_per_replica if gpus_per_replica is not None else (1.0 if gpus >= 1 else 0.0)
        self.cpus = 0.0 if self.gpus else float(spec.threads)
        fit = int(gpus // self.gpus) if self.gpus else int(cpus // max(self.cpus, 1))
        self.replicas = replicas or max(1, fit)
        self._actor = ray.remote(TranscriberActor).options(num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=0)
        self._decode = ray.remote(decode_or_failure)
        self._next_name = 0
        self._failed_starts = 0
        self.pool: list[_Replica] = [self._start_replica() for _ in range(self.replicas)]

    def _start_replica(self) -> _Replica:
        name = f"ray-{self._next_name}"
        self._next_name += 1
        handle = self._actor.remote(self.spec, name)
        return _Replica(handle, name, handle.ready.remote())

    def wait_ready(self, timeout: float = ACTOR_WAIT_S) -> float:
        """Block until every model actor has loaded its model; returns the seconds waited."""
        started = time.perf_counter()
        for replica in self.pool:
            if replica.node_id is None:
                self.ray.get(replica.ready_ref, timeout=timeout)
                self._on_ready(replica)
        return time.perf_counter() - started

    def describe(self) -> str:
        """Where the run happens, for the log."""
        return f"ray: {self.replicas} model actor(s), {self.cpus:g} CPU / {self.gpus:g} GPU each"

    def run(self, paths: Sequence[str], options: TranscribeOptions, on_result: Callable[[FileResult], None]) -> None:
        """Transcribe every path on the actors; `on_result` is called in this thread as each file finishes."""
        ray = self.ray
        options_ref = ray.put(options)
        pending: deque[str] = deque(paths)
        attempts: dict[str, int] = {}
        in_flight: dict[object, tuple[str, _Replica]] = {}
        waiting_since = time.monotonic()
        while pending or in_flight:
            for replica in self.pool:
                while replica.node_id and pending and len(replica.in_flight) < IN_FLIGHT_PER_REPLICA:
                    path = pending.popleft()
                    ref = self._submit(replica, path, options_ref)
                    replica.in_flight.add(ref)
                    in_flight[ref] = (path, replica)
            starting = {r.ready_ref: r for r in self.pool if r.node_id is None}
            idle = not in_flight and not any(r.node_id for r in self.pool)
            if idle and time.monotonic() - waiting_since > ACTOR_WAIT_S:
                raise RayUnavailableError(f"no model actor could start within {ACTOR_WAIT_S:g} s "
                                              f"(the cluster has {ray.cluster_resources()})")
            done, _ = ray.wait([*in_flight, *starting], num_returns=1, timeout=1.0)
            for ref in done:
                if ref in starting:
                    self._on_ready(starting[ref])
                    waiting_since = time.monotonic()
                    continue
                path, replica = in_flight.pop(ref)
                replica.in_flight.discard(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    if isinstance(exc, ray.exceptions.RayActorError):
                        self._lost(replica, exc)
                    attempts[path] = attempts.get(path, 0) + 1
                    if attempts[path] <= MAX_SYSTEM_RETRIES:
                        log.warning("retrying %s after losing its worker (%s)", path, type(exc).__name__)
                        pending.appendleft(path)
                        continue
                    result = FileResult(path, None, f"lost {attempts[path]} times: {describe_error(exc)}",
                                        None, 0.0, replica.name, replica.node_id or "")
                on_result(result)

    def _submit(self, replica: _Replica, path: str, options_ref: object) -> object:
        strategy = self.ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(replica.node_id, soft=True)
        samples = self._decode.options(num_cpus=0, scheduling_strategy=strategy).remote(path)
        return replica.handle.run.remote(path, options_ref, samples)

    def _on_ready(self, replica: _Replica) -> None:
        try:
            replica.node_id = self.ray.get(replica.ready_ref)
            log.info("model actor %s ready on node %s", replica.name, replica.node_id)
        except self.ray.exceptions.RayActorError as exc:
            self._failed_starts += 1
            if self._failed_starts > MAX_FAILED_STARTS_PER_REPLICA * self.replicas:
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise RayUnavailableError(f"model actors keep failing to start: {first_line}") from exc
            self._lost(replica, exc)

    def _lost(self, replica: _Replica, exc: BaseException) -> None:
        """Replace an actor whose call failed for a system reason (its process or node is gone)."""
        if replica not in self.pool:
            return
        log.warning("model actor %s lost (%s): starting a replacement", replica.name, type(exc).__name__)
        self.pool.remove(replica)
        try:
            self.ray.kill(replica.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - it is gone already
            pass
        self.pool.append(self._start_replica())

    def close(self) -> None:
        """Stop the actors, and disconnect from (or stop) the Ray this backend started."""
        for replica in self.pool:
            try:
                self.ray.kill(replica.handle, no_restart=True)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        self.pool = []
        if self._owns_connection:
            self.ray.shutdown()
