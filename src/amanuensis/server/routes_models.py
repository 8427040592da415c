"""Models on demand: GET /v1/models (every model this host can serve, with its state), GET, POST (load;
download first where allowed) and DELETE (unload) /v1/models/{id}."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..errors import ModelError
from ..models import HUB_NAMES, ModelInfo, list_models, resolve_model
from .downloads import ModelDownloads
from .errors import ApiError
from .memory import available_bytes, process_rss_bytes
from .pool import OPENAI_ALIAS
from .service import TranscriptionService

router = APIRouter(tags=["models"])


def _service(request: Request) -> TranscriptionService:
    return request.app.state.service


def _downloads(request: Request) -> ModelDownloads:
    downloads = getattr(request.app.state, "downloads", None)
    if downloads is None:
        downloads = request.app.state.downloads = ModelDownloads(_service(request).pool)
    return downloads


def _model_object(model_id: str, info: ModelInfo | None, *, state: str, default: bool = False,
                  loaded: dict | None = None, download: dict | None = None) -> dict[str, Any]:
    created = 0
    if info is not None:
        try:
            created = int(os.stat(info.path).st_mtime)
        except OSError:
            created = 0
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "amanuensis",
        "source": info.source if info else "hub",
        "multilingual": info.multilingual if info else not model_id.endswith(".en"),
        "size_bytes": info.size_bytes if info else None,
        "state": state,
        "loaded": state == "loaded",
        "default": default,
        "memory_bytes": loaded["memory_bytes"] if loaded else None,
        "in_use": loaded["in_use"] if loaded else False,
        "idle_s": loaded["idle_s"] if loaded else None,
        "unload_in_s": loaded["unload_in_s"] if loaded else None,
        "download": download,
    }


def _installed(service: TranscriptionService) -> dict[str, ModelInfo]:
    """Models here without a download, by id: embedded, packaged, cached, local directories, and the loaded."""
    found = {info.name: info for info in list_models()}
    found.update({info.name: info for info in service.pool.loaded_models()})
    return found


def _catalogue(service: TranscriptionService, downloads: ModelDownloads) -> list[dict]:
    pool, allow_download = service.pool, service.settings.allow_download
    default, states = pool.default.info, pool.states()
    objects = [_model_object(OPENAI_ALIAS, default, state="loaded", default=True, loaded=states[default.path])]
    installed = _installed(service)
    for name, info in installed.items():
        if name == OPENAI_ALIAS:
            continue
        loaded = states.get(info.path)
        fetch = downloads.by_name.get(name)
        state = "loaded" if loaded else fetch.state if fetch and fetch.active else "available"
        objects.append(_model_object(name, info, state=state, default=info.path == default.path, loaded=loaded,
                                     download=fetch.view() if fetch else None))
    fetchable = [*(HUB_NAMES if allow_download else ()), *downloads.by_name]
    for name in dict.fromkeys(fetchable):
        if name not in installed:
            fetch = downloads.by_name.get(name)
            objects.append(_model_object(name, None, state=fetch.state if fetch else "downloadable",
                                         download=fetch.view() if fetch else None))
    return objects


def _memory(service: TranscriptionService) -> dict[str, Any]:
    limit = service.settings.max_model_memory_mb
    return {"rss_bytes": process_rss_bytes(), "available_bytes": available_bytes(),
            "limit_bytes": int(limit * 2**20) if limit else None, "max_models": service.settings.max_models,
            "model_ttl_s": service.settings.model_ttl or None}


def _not_found(model_id: str, reason: str) -> ApiError:
    return ApiError(404, f"model {model_id!r} is not available on this server: {reason}", code="model_not_found",
                    param="model")


def _find(service: TranscriptionService, model_id: str) -> ModelInfo:
    """The model `model_id` names, here without a download (blocking); ModelError when there is none."""
    if model_id in service.pool.aliases():
        return service.pool.default.info
    installed = _installed(service).get(model_id)
    if installed is not None and os.path.isdir(installed.path):
        return installed
    return resolve_model(model_id, allow_download=False)


async def _entry(request: Request, model_id: str) -> dict:
    service = _service(request)
    for entry in await asyncio.to_thread(_catalogue, service, _downloads(request)):
        if entry["id"] == model_id:
            return entry
    raise _not_found(model_id, "see GET /v1/models")


@router.get("/v1/models", summary="Every model this host can serve, with its state (OpenAI shape)")
async def models(request: Request) -> dict:
    """OpenAI's model list: whisper-1 (the default model), then every model here (embedded, packaged,
    cached, local directories; hub names too when downloads are allowed), each with `state` (loaded,
    available, downloadable, downloading, loading, failed), `memory_bytes` once loaded, and `download`
    progress. `memory` is the server process's resident memory and the limits."""
    service = _service(request)
    data = await asyncio.to_thread(_catalogue, service, _downloads(request))
    return {"object": "list", "data": data, "memory": _memory(service)}


@router.get("/v1/models/{model_id:path}", summary="One model (OpenAI shape) and its state")
async def model(request: Request, model_id: str) -> dict:
    """One entry of /v1/models, or 404 naming `model`."""
    return await _entry(request, model_id)


@router.post("/v1/models/{model_id:path}", summary="Load a model (download it first where allowed)")
async def load_model(request: Request, model_id: str) -> JSONResponse:
    """Loads the model and answers 200 with it; a hub model that is not cached is downloaded first where
    downloads are allowed: 202 at once, follow `download` on GET /v1/models/{id}. 409 past --max-models
    (code model_limit), 507 past the memory limit or what the host has left (insufficient_memory)."""
    service = _service(request)
    try:
        info = await asyncio.to_thread(_find, service, model_id)
    except ModelError as exc:
        if not (service.settings.allow_download and (model_id in HUB_NAMES or model_id.count("/") == 1)):
            raise _not_found(model_id, str(exc)) from exc
        _downloads(request).start(model_id)
        return JSONResponse(await _entry(request, model_id), 202)
    await asyncio.to_thread(service.pool.load, info)
    return JSONResponse(await _entry(request, model_id))


@router.delete("/v1/models/{model_id:path}", summary="Unload a model")
async def unload_model(request: Request, model_id: str) -> dict:
    """Unloads the model and returns the resident bytes handed back (`freed_bytes`). 409 for the
    default model (model_pinned) or one in use (model_in_use); 404 when it is not loaded."""
    service = _service(request)
    try:
        info = await asyncio.to_thread(_find, service, model_id)
    except ModelError as exc:
        raise _not_found(model_id, str(exc)) from exc
    if info.path not in {loaded.path for loaded in service.pool.loaded_models()}:
        raise ApiError(404, f"model {model_id!r} is not loaded", code="model_not_loaded", param="model")
    freed = await asyncio.to_thread(service.pool.unload, info)
    return {"id": model_id, "object": "model", "deleted": True, "state": "available", "freed_bytes": freed}
