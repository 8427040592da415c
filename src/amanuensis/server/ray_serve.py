"""`amanuensis serve --ray`: the HTTP API as a Ray Serve application.

The existing FastAPI app is the ingress (one replica: it keeps the job store, the queue and the
uploads); the model is a separate deployment whose replicas spread over the cluster, each one a
ModelPool of one model with its own cross-request batch scheduler. The ingress decodes the audio and
sends the samples to a model replica; /status lists the replicas and the node each runs on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..errors import ModelError
from ..models import ModelInfo
from ..pipeline import TranscribeOptions
from ..ray_support import RayUnavailableError, connect, import_ray
from ..transcript import Transcript
from .metrics import Metrics
from .pool import ModelPool
from .service import TranscriptionService
from .settings import ServerSettings

log = logging.getLogger(__name__)

APP_NAME = "amanuensis"
NAMESPACE = "amanuensis"
REGISTRY_NAME = "amanuensis-model-replicas"
REPLY_TIMEOUT_MARGIN_S = 5.0
REPLICAS_READY_TIMEOUT_S = 120.0


def import_ray_serve():
    """(ray, ray.serve), or RayUnavailableError with the install line."""
    ray = import_ray("Ray Serve")
    try:
        from ray import serve
    except ImportError as exc:
        raise RayUnavailableError("--ray needs Ray Serve, which is not installed: "
                                  "pip install 'amanuensis[ray]'") from exc
    return ray, serve


@dataclass
class ReplicaAnswer:
    """A model replica's answer: the transcript, who served it, and that replica's batching counts."""

    transcript: Transcript
    replica: dict
    batching: dict


class ModelReplica:
    """The model deployment: one loaded model (a ModelPool of one worker) per replica."""

    def __init__(self, settings: dict) -> None:
        import ray
        from ray import serve

        self.settings = ServerSettings(**settings).model_copy(update={"workers": 1})
        self.pool = ModelPool(self.settings)
        self.pool.load_default()
        context = ray.get_runtime_context()
        self.identity = {
            "replica": serve.get_replica_context().replica_id.unique_id,
            "node": context.get_node_id(),
            "ip": ray.util.get_node_ip_address(),
            "pid": os.getpid(),
            "actor": context.get_actor_name() or "",
        }
        self.served = 0
        # Registered before the replica counts as started, so /status lists it as soon as Serve routes to it.
        ray.get(ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE).register.remote(self.identity))

    def describe(self) -> dict:
        """What the ingress needs to know about this replica's model."""
        default = self.pool.default
        return {"info": default.info, "compute_type": default.compute_type, "device": default.device}

    async def transcribe(self, samples: np.ndarray, options: TranscribeOptions,
                         speech_scores: np.ndarray | None = None) -> ReplicaAnswer:
        """Transcribe decoded samples on this replica's model (concurrent calls share engine batches)."""
        transcriber = self.pool.get(self.pool.default.info, 0)
        transcript = await asyncio.to_thread(transcriber.transcribe, samples, options, speech_scores=speech_scores)
        self.served += 1
        return ReplicaAnswer(transcript, {**self.identity, "served": self.served}, self.pool.batching())

    def __del__(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.close()


class ReplicaRegistry:
    """A small actor where model replicas say which node they run on (for /status)."""

    def __init__(self) -> None:
        self.replicas: dict[str, dict] = {}

    def register(self, identity: dict) -> None:
        self.replicas[identity["replica"]] = identity

    def list(self) -> list[dict]:
        return list(self.replicas.values())


class RemoteTranscriber:
    """Stands in for a Transcriber on the ingress: transcribe() runs on a model replica."""

    def __init__(self, pool: RayModelPool, info: ModelInfo, compute_type: str, device: str) -> None:
        self.pool = pool
        self.info = info
        self.compute_type = compute_type
        self.device = device

    @property
    def name(self) -> str:
        return self.info.name

    def transcribe(self, samples: np.ndarray, options: TranscribeOptions | None = None, *, progress=None,
                   on_segment=None, speech_scores: np.ndarray | None = None) -> Transcript:
        """Send the samples to a replica and wait (call from a worker thread, never the event loop)."""
        options = options or TranscribeOptions()
        options.validate(self.info)
        response = self.pool.handle.transcribe.remote(samples, options, speech_scores)
        answer: ReplicaAnswer = response.result(timeout_s=self.pool.settings.request_timeout + REPLY_TIMEOUT_MARGIN_S)
        self.pool.record(answer)
        for segment in answer.transcript.segments:  # the segments arrive together, after the replica is done
            if on_segment:
                on_segment(segment)
        if progress:
            progress(answer.transcript.duration, answer.transcript.duration)
        return answer.transcript


class RayModelPool(ModelPool):
    """The ingress's view of the model deployment: the default model only, served by remote replicas."""

    def __init__(self, settings: ServerSettings, handle: object) -> None:
        super().__init__(settings)
        self.handle = handle
        self._answers: dict[str, ReplicaAnswer] = {}
        self._answers_lock = threading.Lock()

    def _load(self, model: object, threads: int | None = None) -> RemoteTranscriber:
        described = self.handle.describe.remote().result()
        return RemoteTranscriber(self, described["info"], described["compute_type"], described["device"])

    def load_default(self) -> None:
        """One stand-in (the replicas load the model themselves); ready once the initial replicas are up."""
        self.replicas = [self._load(self.settings.model)]
        scaling = autoscaling_config(self.settings)
        wanted = scaling["initial_replicas"] if scaling else self.settings.workers
        deadline = time.monotonic() + REPLICAS_READY_TIMEOUT_S
        while len(self.replicas_status()) < wanted and time.monotonic() < deadline:
            time.sleep(0.2)
        if len(self.replicas_status()) < wanted:
            log.warning("serving before every model replica is up", extra={"wanted": wanted})

    def resolve(self, name: str | None) -> ModelInfo:
        info = super().resolve(name)
        if info.path != self.default.info.path:
            raise ModelError(f"model {name!r} is not served here: this Ray deployment serves {self.default.info.name}")
        return info

    def load(self, info: ModelInfo) -> None:
        """Only the default model is served (by the replicas): loading another one here is refused."""
        if info.path != self.default.info.path:
            raise ModelError(f"model {info.name!r} is not served here: this Ray deployment serves "
                             f"{self.default.info.name}")

    def record(self, answer: ReplicaAnswer) -> None:
        """Keep each replica's newest answer (its served count and batching counts): the one with the
        highest served count, since answers to concurrent requests can arrive here out of order."""
        key = answer.replica["replica"]
        with self._answers_lock:
            kept = self._answers.get(key)
            if kept is None or answer.replica["served"] >= kept.replica["served"]:
                self._answers[key] = answer

    def batching(self) -> dict:
        """The settings and the engine batches of every replica that has answered, added up."""
        with self._answers_lock:
            stats = [answer.batching for answer in self._answers.values()]
        summed = {key: sum(s[key] for s in stats) for key in ("batches", "chunks", "shared_batches")}
        return {
            "enabled": self.settings.cross_request_batching,
            "wait_ms": self.settings.batch_wait_ms,
            "max_batch": self.settings.batch_size,
            "max_concurrent": self.settings.max_concurrent,
            **summed,
            "largest_batch": max((s["largest_batch"] for s in stats), default=0),
            "mean_batch": round(summed["chunks"] / summed["batches"], 3) if summed["batches"] else None,
        }

    def replicas_status(self) -> list[dict]:
        """The live model replicas: id, node, ip, pid and requests served."""
        import ray

        alive = {entry["name"] for entry in ray.util.list_named_actors(all_namespaces=True)}
        registered = ray.get(ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE).list.remote())
        with self._answers_lock:
            served = {key: answer.replica["served"] for key, answer in self._answers.items()}
        return [
            {**{k: v for k, v in identity.items() if k != "actor"}, "served": served.get(identity["replica"], 0)}
            for identity in registered
            if not identity["actor"] or identity["actor"] in alive
        ]


class RayTranscriptionService(TranscriptionService):
    """The server's service with its models on Ray Serve replicas; /status gains a `ray` part."""

    def status(self) -> dict:
        status = super().status()
        import ray

        status["ray"] = {
            "address": ray.get_runtime_context().gcs_address,
            "replicas": self.pool.replicas_status() if isinstance(self.pool, RayModelPool) else [],
            "autoscaling": autoscaling_config(self.settings),
        }
        return status


class Ingress:
    """The ingress deployment: the existing FastAPI app on a service whose models are remote."""

    def __init__(self, settings: dict, model: object) -> None:
        self.settings = ServerSettings(**settings)
        self.model = model

    def __serve_build_asgi_app__(self):
        from .app import create_app

        metrics = Metrics()
        pool = RayModelPool(self.settings, self.model)
        return create_app(self.settings, service=RayTranscriptionService(self.settings, metrics, pool=pool))


def autoscaling_config(settings: ServerSettings) -> dict | None:
    """Serve's autoscaling bounds from the settings (None: a fixed `workers` replicas)."""
    if settings.ray_max_replicas is None:
        return None
    low = settings.ray_min_replicas if settings.ray_min_replicas is not None else 1
    return {"min_replicas": low, "max_replicas": max(low, settings.ray_max_replicas),
            "initial_replicas": min(max(low, settings.workers), settings.ray_max_replicas),
            "target_ongoing_requests": settings.max_concurrent}


def build_application(settings: ServerSettings):
    """The Serve application: Ingress(FastAPI) bound to the model deployment."""
    _, serve = import_ray_serve()
    data = settings.model_dump(mode="json")
    threads = settings.threads_per_worker()
    scaling = autoscaling_config(settings)
    model = serve.deployment(
        ModelReplica, name="Model",
        max_ongoing_requests=settings.max_concurrent if settings.cross_request_batching else 1,
        ray_actor_options={"num_cpus": threads},
        **({"autoscaling_config": scaling} if scaling else {"num_replicas": settings.workers}),
    )
    ingress = serve.deployment(serve.ingress()(Ingress), name="Ingress", num_replicas=1,
                               max_ongoing_requests=max(100, 4 * settings.slots()),
                               ray_actor_options={"num_cpus": 0})
    return ingress.bind(data, model.bind(data))


def serve_on_ray(settings: ServerSettings) -> int:
    """Run the app on Ray Serve until SIGINT/SIGTERM (2 when Ray is missing or unreachable)."""
    try:
        ray, serve = import_ray_serve()
    except RayUnavailableError as exc:
        log.error("cannot start: %s", exc)
        return 2
    started = time.perf_counter()
    address = settings.ray_address or None
    needed = settings.threads_per_worker() * (settings.ray_max_replicas or settings.workers)
    try:
        connect(ray, address, num_cpus=max(os.cpu_count() or 1, needed), namespace=NAMESPACE)
    except RayUnavailableError as exc:
        log.error("cannot start: %s", exc)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        registry = ray.remote(ReplicaRegistry).options(name=REGISTRY_NAME, namespace=NAMESPACE, num_cpus=0,
                                                       get_if_exists=True).remote()  # held while serving
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(build_application(settings), name=APP_NAME, route_prefix="/", blocking=False)
        log.info("serving on Ray", extra={"host": settings.host, "port": settings.port, "replicas": settings.workers,
                                          "start_s": round(time.perf_counter() - started, 2)})
        stop.wait()
        del registry
        return 0
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
