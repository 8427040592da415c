"""Routes that describe the server: /health, /ready (open even with API keys), /status, /metrics, /v1/models."""

from __future__ import annotations

import asyncio
import os

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..models import ModelInfo, list_models
from .errors import ApiError
from .pool import OPENAI_ALIAS
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


def _model_object(model_id: str, info: ModelInfo, loaded: bool, default: bool) -> dict:
    try:
        created = int(os.stat(info.path).st_mtime)
    except OSError:
        created = 0
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "amanuensis",
        "source": info.source,
        "multilingual": info.multilingual,
        "loaded": loaded,
        "default": default,
    }


def _catalogue(service: TranscriptionService) -> list[dict]:
    default = service.pool.default.info
    loaded = {info.path for info in service.pool.loaded_models()}
    found = {info.name: info for info in list_models()}
    found.update({info.name: info for info in service.pool.loaded_models()})
    objects = [_model_object(OPENAI_ALIAS, default, True, True)]
    for name, info in found.items():
        if name != OPENAI_ALIAS:
            objects.append(_model_object(name, info, info.path in loaded, info.path == default.path))
    return objects


@router.get("/v1/models", summary="Models this server can use (OpenAI shape)")
async def models(request: Request) -> dict:
    """OpenAI's model list: whisper-1 (the default model) and every installed model."""
    data = await asyncio.to_thread(_catalogue, _service(request))
    return {"object": "list", "data": data}


@router.get("/v1/models/{model_id:path}", summary="One model (OpenAI shape)")
async def model(request: Request, model_id: str) -> dict:
    """One entry of /v1/models, or 404 naming `model`."""
    for entry in await asyncio.to_thread(_catalogue, _service(request)):
        if entry["id"] == model_id:
            return entry
    raise ApiError(404, f"model {model_id!r} is not available on this server", code="model_not_found",
                   param="model")
