"""Routes that describe the server: /health, /ready (open even with API keys), /status, /metrics
(models: routes_models)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .service import TranscriptionService

router = APIRouter()


def _service(request: Request) -> TranscriptionService:
    return request.app.state.service


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict:
    """Always 200 while the event loop runs; touches nothing else."""
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: the model is loaded and jobs are accepted")
async def ready(request: Request) -> JSONResponse:
    """200 when transcription requests will be served, else 503."""
    service = _service(request)
    if not service.ready:
        return JSONResponse({"status": "not_ready", "model_loaded": service.pool.loaded}, status_code=503,
                            headers={"Retry-After": "5"})
    return JSONResponse({"status": "ready", "model": service.pool.default.info.name})


@router.get("/status", summary="What is live now: model, front end, traffic, queue")
async def status(request: Request) -> dict:
    """Version, uptime, model, front-end chain, request counters, queue depth, recent realtime factors."""
    return _service(request).status()


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    """The Prometheus exposition of the app's registry."""
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type)
