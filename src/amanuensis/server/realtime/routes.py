"""`WS /v1/realtime?intent=transcription`: admission (API key, intent, readiness, session limit), then
the session. A refused socket is accepted, told why in an `error` event, and closed with a code:
1008 (policy: wrong key, wrong intent) or 1013 (try again later: session limit, model not loaded)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, WebSocket

from ...errors import AmanuensisError
from ..auth import match_api_key
from .config import SessionConfig
from .protocol import ProtocolError, error_event, new_id
from .registry import SessionRegistry
from .session import RealtimeSession

log = logging.getLogger(__name__)

router = APIRouter()

CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
KEY_SUBPROTOCOL = "openai-insecure-api-key."


def _token(websocket: WebSocket) -> str | None:
    """The API key a client sent: `Authorization: Bearer`, `?api_key=`, or the browser subprotocol
    `openai-insecure-api-key.<key>` (browsers cannot set headers on a WebSocket)."""
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if websocket.query_params.get("api_key"):
        return websocket.query_params["api_key"]
    for protocol in websocket.scope.get("subprotocols") or []:
        if protocol.startswith(KEY_SUBPROTOCOL):
            return protocol[len(KEY_SUBPROTOCOL) :]
    return None


def _subprotocol(websocket: WebSocket) -> str | None:
    """The subprotocol to answer with: `realtime` when offered, else the first offered (browsers drop
    a socket whose answer names none of those they offered)."""
    offered = list(websocket.scope.get("subprotocols") or [])
    if "realtime" in offered:
        return "realtime"
    return offered[0] if offered else None


async def _refuse(websocket: WebSocket, code: int, message: str, error_code: str, param: str | None = None) -> None:
    await websocket.send_json(error_event(ProtocolError(message, param, error_code)))
    await websocket.close(code, message[:120])


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    """An OpenAI Realtime transcription session."""
    app = websocket.app
    settings = app.state.settings
    sessions: SessionRegistry = app.state.realtime
    await websocket.accept(subprotocol=_subprotocol(websocket))
    if settings.api_keys:
        token = _token(websocket)
        if token is None or match_api_key(settings.api_keys, token) is None:
            message = "wrong API key" if token else ("missing API key: send 'Authorization: Bearer <key>', "
                                                     "?api_key=<key> or the subprotocol openai-insecure-api-key.<key>")
            await _refuse(websocket, CLOSE_POLICY, message, "invalid_api_key")
            return
    intent = websocket.query_params.get("intent", "transcription")
    if intent != "transcription":
        await _refuse(websocket, CLOSE_POLICY, f"intent {intent!r} is not served here: this server runs "
                      "transcription sessions only (intent=transcription)", "unsupported_intent", "intent")
        return
    service = app.state.service
    if not service.ready:
        await _refuse(websocket, CLOSE_TRY_AGAIN, "the server is starting: the model is not loaded yet",
                      "not_ready")
        return
    session_id = new_id("sess")
    serial = await sessions.admit(session_id)
    if serial is None:
        if sessions.shutting_down:
            await _refuse(websocket, CLOSE_TRY_AGAIN, "the server is shutting down", "server_shutdown")
        else:
            await _refuse(websocket, CLOSE_TRY_AGAIN, f"this server runs at most {sessions.limit} realtime sessions "
                          "at once; try again later", "session_limit")
        return
    try:
        config = SessionConfig(model=websocket.query_params.get("model") or None)
        try:
            await service.resolve_model(config.model)
        except AmanuensisError as exc:  # an unknown model in the URL: say so, go on with the default
            await websocket.send_json(error_event(ProtocolError(f"{exc}; using the default model", "model",
                                                                "model_not_found")))
            config = SessionConfig()
        session = RealtimeSession(websocket, session_id=session_id, registry=sessions, pool=service.pool,
                                  slot=serial, config=config, idle_timeout=settings.realtime_idle_timeout,
                                  send_timeout=settings.realtime_send_timeout)
        log.info("realtime session opened: session_id=%s", session_id)
        await session.run()
    finally:
        sessions.close(session_id)
        service.pool.release(session_id)
        log.info("realtime session closed: session_id=%s", session_id)
