"""Optional API keys, checked once for every HTTP request by `ApiKeyGuard` (deny by default: a new route,
mount or docs page needs the key without saying so), and the client identity used for fair queueing.

API clients send `Authorization: Bearer <key>`. A browser cannot set that header when it opens the web
page, its assets or the API docs, so for those (GET/HEAD only) the key may also come in the cookie
`amanuensis_key`, which the page's key form sets (SameSite=Strict: another site cannot make the browser
send it). Without a key, a browser asking for a page gets that form with the 401; everything else gets
the JSON error. The realtime WebSocket checks its key itself (it answers with an `error` event)."""

from __future__ import annotations

import hmac
from pathlib import Path
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import ApiError, error_response

KEY_COOKIE = "amanuensis_key"
KEY_PAGE = Path(__file__).parent / "static" / "key.html"
ALWAYS_OPEN = frozenset({"/health", "/ready"})
STATIC_PREFIX = "/static/"
DOCS_ASSETS = STATIC_PREFIX + "docs"
"""Where Swagger UI's and ReDoc's scripts are served from (the fastapi-offline package): the docs pages
need nothing from the internet."""
DOCS_URL = "/docs"
REDOC_URL = "/redoc"


def match_api_key(keys: list[str], token: str) -> str | None:
    """The client id ("key-<index>") of the configured key equal to `token`, or None."""
    for index, key in enumerate(keys):
        if hmac.compare_digest(token.encode(), key.encode()):
            return f"key-{index}"
    return None


def docs_paths(app: FastAPI) -> frozenset[str]:
    """The API docs' paths: Swagger UI, its OAuth redirect, ReDoc and the OpenAPI schema."""
    return frozenset(filter(None, (DOCS_URL, app.swagger_ui_oauth2_redirect_url, REDOC_URL, app.openapi_url)))


class ApiKeyGuard:
    """Refuse every HTTP request without one of `keys` (401), except `open_paths`; a no-op without keys.

    `page_paths` (and everything under /static/) are what a browser loads by itself: for GET/HEAD on
    those the key cookie counts too, and a browser without a key gets the key form. Paths starting with
    one of `open_prefixes` are open as well."""

    def __init__(self, app: ASGIApp, keys: list[str], open_paths: frozenset[str], page_paths: frozenset[str],
                 open_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.keys = keys
        self.open_paths = ALWAYS_OPEN | open_paths
        self.open_prefixes = open_prefixes
        self.page_paths = page_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not self.keys or path in self.open_paths or path.startswith(self.open_prefixes):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        page = request.method in ("GET", "HEAD") and self._is_page(scope["path"])
        token = _bearer(request) or (_cookie_key(request) if page else None)
        client = match_api_key(self.keys, token) if token else None
        if client is not None:
            scope.setdefault("state", {})["client"] = client
            await self.app(scope, receive, send)
            return
        message = "wrong API key" if token else "missing API key: send the header 'Authorization: Bearer <key>'"
        error = ApiError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        if page and "text/html" in request.headers.get("accept", ""):
            response = HTMLResponse(KEY_PAGE.read_text(encoding="utf-8"), status_code=401, headers=error.headers)
        else:
            response = error_response(error)
        await response(scope, receive, send)

    def _is_page(self, path: str) -> bool:
        return path in self.page_paths or path.startswith(STATIC_PREFIX)


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _cookie_key(request: Request) -> str | None:
    value = cookie_parser(request.headers.get("cookie", "")).get(KEY_COOKIE, "")
    return unquote(value) or None


def install_api_key_guard(app: FastAPI, keys: list[str], public_docs: bool) -> None:
    """Guard `app` with `keys` (the web page and the docs included; the docs open with `public_docs`)."""
    docs = docs_paths(app)
    app.add_middleware(ApiKeyGuard, keys=keys, open_paths=docs if public_docs else frozenset(),
                       page_paths=docs | {"/"}, open_prefixes=(DOCS_ASSETS + "/",) if public_docs else ())


def client_key(request: Request) -> str:
    """Who is asking, for fairness: the API key's index, else the peer address."""
    client = getattr(request.state, "client", None)
    if client:
        return client
    return request.client.host if request.client else "unknown"
