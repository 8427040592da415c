"""The FastAPI app: factory, lifespan (model loaded once), request middleware, and uvicorn start-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from .auth import DOCS_ASSETS, DOCS_URL, REDOC_URL, install_api_key_guard
from .errors import install_error_handlers
from .jobs_routes import install_jobs, start_jobs, stop_jobs
from .metrics import Metrics
from .realtime import SessionRegistry
from .realtime import router as realtime_router
from .routes_audio import TRANSCRIPTION_ROUTES
from .routes_audio import router as audio_router
from .routes_info import router as info_router
from .routes_models import router as models_router
from .service import TranscriptionService
from .settings import ServerSettings
from .upload import UPLOAD_PREFIX

log = logging.getLogger(__name__)
access = logging.getLogger("amanuensis.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestMiddleware:
    """Per request: an id (X-Request-ID in and out), metrics by route and status, one access log line."""

    def __init__(self, app: ASGIApp, metrics: Metrics, service: TranscriptionService, access_log: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.service = service
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, state, status, time.perf_counter() - started, request_id)

    def _record(self, scope: Scope, state: dict, status: int, seconds: float, request_id: str) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        method = scope.get("method", "")
        self.metrics.observe_request(method, route, status, seconds)
        outcome = state.get("outcome_status", status)
        if route in TRANSCRIPTION_ROUTES:
            self.service.record_request(outcome)
        if self.access_log:
            client = scope.get("client")
            access.info(
                "%s %s %s", method, scope.get("path", ""), outcome,
                extra={"request_id": request_id, "route": route, "status": outcome,
                       "duration_ms": round(seconds * 1000, 1), "client": client[0] if client else None},
            )


def sweep_stale_uploads(directory: Path, older_than_s: float) -> int:
    """Remove upload temp files left by a crashed process (older than any live request)."""
    removed = 0
    cutoff = time.time() - older_than_s
    with contextlib.suppress(OSError):
        for path in directory.glob(f"{UPLOAD_PREFIX}*"):
            with contextlib.suppress(OSError):
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
    return removed


def create_app(settings: ServerSettings | None = None, service: TranscriptionService | None = None) -> FastAPI:
    """Build the app; the model is loaded by the lifespan (once, at start-up)."""
    settings = settings or ServerSettings()
    metrics = service.metrics if service is not None else Metrics()
    service = service or TranscriptionService(settings, metrics)
    realtime = SessionRegistry(settings.max_realtime_sessions)
    metrics.watch_realtime(realtime.snapshot)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tmp = settings.tmp_dir or Path(tempfile.gettempdir())
        tmp.mkdir(parents=True, exist_ok=True)
        if not os.access(tmp, os.W_OK):
            raise RuntimeError(f"the upload directory {tmp} is not writable")
        swept = sweep_stale_uploads(tmp, 2 * settings.request_timeout)
        started = time.perf_counter()
        await service.start()
        await start_jobs(app)
        log.info(
            "ready", extra={"model": service.pool.default.info.name, "workers": settings.workers,
                            "threads_per_worker": settings.threads_per_worker(), "tmp_dir": str(tmp),
                            "stale_uploads_removed": swept, "load_s": round(time.perf_counter() - started, 2)},
        )
        try:
            yield
        finally:
            await stop_jobs(app)
            downloads = getattr(app.state, "downloads", None)
            if downloads is not None:
                await downloads.stop()
            await asyncio.to_thread(realtime.shutdown)
            await service.stop()
            log.info("stopped")

    app = FastAPIOffline(  # FastAPI, with /docs and /redoc served from local assets instead of a CDN
        title="Amanuensis",
        version=__version__,
        summary="Speech to text: Whisper on CTranslate2, OpenAI-compatible.",
        lifespan=lifespan,
        docs_url=DOCS_URL,
        redoc_url=REDOC_URL,
        static_url=DOCS_ASSETS,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.service = service
    app.state.realtime = realtime
    install_error_handlers(app)
    app.include_router(info_router)
    app.include_router(models_router)
    app.include_router(audio_router)
    app.include_router(realtime_router)
    install_jobs(app)
    install_api_key_guard(app, settings.api_keys, settings.public_docs)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(RequestMiddleware, metrics=metrics, service=service, access_log=settings.access_log)
    return app
