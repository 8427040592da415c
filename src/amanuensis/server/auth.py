"""Optional API keys (`Authorization: Bearer <key>`) and the client identity used for fair queueing."""

from __future__ import annotations

import hmac

from fastapi import Request

from .errors import ApiError


def require_api_key(request: Request) -> None:
    """Refuse with 401 unless no keys are configured or the request carries one of them."""
    keys: list[str] = request.app.state.settings.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("missing API key: send the header 'Authorization: Bearer <key>'")
    client = match_api_key(keys, token)
    if client is None:
        raise _unauthorized("wrong API key")
    request.state.client = client


def match_api_key(keys: list[str], token: str) -> str | None:
    """The client id ("key-<index>") of the configured key equal to `token`, or None."""
    for index, key in enumerate(keys):
        if hmac.compare_digest(token.encode(), key.encode()):
            return f"key-{index}"
    return None


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def client_key(request: Request) -> str:
    """Who is asking, for fairness: the API key's index, else the peer address."""
    client = getattr(request.state, "client", None)
    if client:
        return client
    return request.client.host if request.client else "unknown"
