"""Prometheus metrics: HTTP requests, audio processed, realtime factor, queue and front-end counters.

Each app has its own registry (several apps in one process do not collide). Queue depth and the
front end's per-backend counters are read live from the service on every scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)

LiveSource = Callable[[], dict]
"""Returns {"queue": {"waiting", "running", "workers"}, "frontend": chain status or None,
"batching": {"batches", "chunks", "shared_batches"}}."""


class _LiveCollector(Collector):
    def __init__(self, source: LiveSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        live = self.source()
        queue = live.get("queue", {})
        yield GaugeMetricFamily("amanuensis_queue_depth", "Requests waiting for a worker", queue.get("waiting", 0))
        yield GaugeMetricFamily("amanuensis_queue_running", "Transcriptions running now", queue.get("running", 0))
        yield GaugeMetricFamily("amanuensis_workers", "Transcription workers", queue.get("workers", 0))
        yield from _batching_metrics(live.get("batching") or {})
        backends = (live.get("frontend") or {}).get("backends", [])
        active = (live.get("frontend") or {}).get("active")
        families = {
            "calls": CounterMetricFamily("amanuensis_frontend_calls", "Front-end calls served", labels=["backend"]),
            "failures": CounterMetricFamily(
                "amanuensis_frontend_failures", "Front-end backend failures", labels=["backend"]
            ),
            "fallbacks": CounterMetricFamily(
                "amanuensis_frontend_fallbacks", "Calls passed on to the next backend", labels=["backend"]
            ),
            "seconds": CounterMetricFamily(
                "amanuensis_frontend_seconds", "Seconds spent in each backend", labels=["backend"]
            ),
        }
        healthy = GaugeMetricFamily("amanuensis_frontend_healthy", "1 if the backend is healthy", labels=["backend"])
        is_active = GaugeMetricFamily("amanuensis_frontend_active", "1 for the active backend", labels=["backend"])
        for backend in backends:
            name = str(backend.get("name"))
            for key, family in families.items():
                family.add_metric([name], float(backend.get(key) or 0))
            healthy.add_metric([name], 1.0 if backend.get("healthy") else 0.0)
            is_active.add_metric([name], 1.0 if name == active else 0.0)
        yield from families.values()
        yield healthy
        yield is_active


def _batching_metrics(batching: dict) -> Iterator[Metric]:
    yield CounterMetricFamily("amanuensis_engine_batches", "Engine batches run (encode + generate calls)",
                              batching.get("batches", 0))
    yield CounterMetricFamily("amanuensis_engine_batch_chunks", "30 s chunks decoded in engine batches",
                              batching.get("chunks", 0))
    yield CounterMetricFamily("amanuensis_engine_shared_batches",
                              "Engine batches holding chunks of more than one request",
                              batching.get("shared_batches", 0))


class _RealtimeCollector(Collector):
    def __init__(self, source: LiveSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        live = self.source()
        yield GaugeMetricFamily("amanuensis_realtime_sessions_open", "Realtime WebSocket sessions open now",
                                live.get("open", 0))
        yield GaugeMetricFamily("amanuensis_realtime_sessions_limit", "Realtime sessions allowed at once",
                                live.get("limit", 0))
        yield CounterMetricFamily("amanuensis_realtime_sessions_rejected", "Realtime sessions refused at the limit",
                                  live.get("rejected", 0))
        yield CounterMetricFamily("amanuensis_realtime_turns", "Realtime turns transcribed", live.get("turns", 0))
        yield CounterMetricFamily("amanuensis_realtime_audio_seconds", "Seconds of audio in realtime turns",
                                  live.get("audio_seconds", 0.0))
        lag = GaugeMetricFamily("amanuensis_realtime_session_lag_seconds",
                                "Audio of the open turn no decode has seen yet (or the wait of a closed turn "
                                "for its final decode), per open session", labels=["session"])
        for session, seconds in (live.get("lag_s") or {}).items():
            lag.add_metric([session], float(seconds))
        yield lag
        yield GaugeMetricFamily("amanuensis_realtime_max_lag_seconds", "The largest lag of the open sessions",
                                live.get("max_lag_s", 0.0))
        early = CounterMetricFamily("amanuensis_realtime_early_finals",
                                    "Final decodes started at a pause: the turn's final (final), speech went on "
                                    "(resumed: its words still confirmed), the turn cleared (cleared)",
                                    labels=["outcome"])
        for outcome, count in (live.get("early_finals") or {}).items():
            early.add_metric([outcome], count)
        yield early


class Metrics:
    """The app's metrics and the helpers that record them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes & co. (Linux), for soak runs
        self.requests = Counter(
            "amanuensis_http_requests", "HTTP requests by route and status",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "amanuensis_http_request_duration_seconds", "HTTP request duration by route and status",
            ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.audio_seconds = Counter(
            "amanuensis_audio_seconds", "Seconds of audio transcribed", ["model"], registry=self.registry
        )
        self.transcriptions = Counter(
            "amanuensis_transcriptions", "Transcriptions by outcome", ["model", "outcome"], registry=self.registry
        )
        self.realtime_factor = Histogram(
            "amanuensis_realtime_factor", "Processing seconds per audio second (lower is faster)",
            ["model"], buckets=RTF_BUCKETS, registry=self.registry,
        )
        self.queue_wait = Histogram(
            "amanuensis_queue_wait_seconds", "Seconds a request waited for a worker",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.rejected = Counter(
            "amanuensis_queue_rejected", "Requests refused because the queue was full", registry=self.registry
        )

    def watch(self, source: LiveSource) -> None:
        """Read queue and front-end state from `source` at every scrape."""
        self.registry.register(_LiveCollector(source))

    def watch_realtime(self, source: LiveSource) -> None:
        """Read the realtime sessions' state (open, lag per session, turns) from `source` at every scrape."""
        self.registry.register(_RealtimeCollector(source))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request and its duration."""
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def observe_transcription(self, model: str, audio_seconds: float, processing_seconds: float) -> None:
        """Record one finished transcription."""
        self.transcriptions.labels(model, "ok").inc()
        self.audio_seconds.labels(model).inc(audio_seconds)
        if audio_seconds > 0:
            self.realtime_factor.labels(model).observe(processing_seconds / audio_seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
