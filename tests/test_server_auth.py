"""API keys guard every route: a walk over the app's route table (routes, mounts, the docs FastAPI adds,
WebSockets) finds that each one but /health and /ready refuses a request without a key, so a route added
later cannot slip past. The page's key cookie counts only where a browser loads something by itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

from amanuensis.server import ServerSettings
from amanuensis.server.app import create_app

KEY = "k-1;=, x"  # a character cookies cannot hold bare: the page encodes it
OPEN = {"/health", "/ready"}
DOCS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}


def _app(tmp_path: Path, **settings: object):
    return create_app(ServerSettings(api_keys=[KEY], data_dir=tmp_path, **settings))


def _concrete(path: str) -> str:
    """A request path for a route pattern: every {parameter} filled in."""
    return re.sub(r"\{[^}]+\}", "x1", path)


def _walk(routes, prefix: str = ""):
    """(full path, route) for every route of a route table, into included routers (FastAPI keeps them as
    branches with the router and its include prefix) and mounts; fails on a kind it does not know."""
    for route in routes:
        router = getattr(route, "original_router", None)
        if router is not None:
            yield from _walk(router.routes, prefix + route.include_context.prefix)
        elif isinstance(route, APIRoute | Route | Mount | APIWebSocketRoute | WebSocketRoute):
            yield prefix + route.path, route
        else:
            pytest.fail(f"the walk does not know the route kind {type(route).__name__}: teach it")


def _http_targets(app) -> list[tuple[str, str]]:
    """(method, path) for every HTTP route and mount of `app`."""
    targets = []
    for path, route in _walk(app.routes):
        if isinstance(route, APIRoute | Route):
            targets += [(method, _concrete(path)) for method in sorted(route.methods or {"GET"})]
        elif isinstance(route, Mount):
            targets += [("GET", f"{path}/app.js"), ("GET", f"{path}/missing.js")]
    return targets


def _websocket_paths(app) -> list[str]:
    return [path for path, route in _walk(app.routes) if isinstance(route, APIWebSocketRoute | WebSocketRoute)]


def test_every_route_but_liveness_needs_the_key(tmp_path):
    app = _app(tmp_path)
    targets = _http_targets(app)
    paths = {path for _, path in targets}
    assert {"/", "/static/app.js", "/transcribe", "/v1/jobs", "/metrics"} | DOCS <= paths, paths
    client = TestClient(app)
    for method, path in targets:
        if path in OPEN:
            continue
        response = client.request(method, path)
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.headers["www-authenticate"] == "Bearer"
        wrong = client.request(method, path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401, (method, path)
        if method != "HEAD":
            assert response.json()["error"]["code"] == "invalid_api_key", (method, path)
            assert wrong.json()["error"]["message"] == "wrong API key", (method, path)
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code != 401


def test_every_websocket_route_refuses_without_the_key(tmp_path):
    app = _app(tmp_path)
    client = TestClient(app)
    paths = _websocket_paths(app)
    assert paths == ["/v1/realtime"]
    for path in paths:
        with client.websocket_connect(path) as websocket:
            event = websocket.receive_json()
            assert event["type"] == "error" and event["error"]["code"] == "invalid_api_key", event
            with pytest.raises(WebSocketDisconnect) as closed:
                websocket.receive_json()
            assert closed.value.code == 1008


def test_a_route_added_later_is_guarded_too(tmp_path):
    app = _app(tmp_path)

    @app.get("/added-later")
    async def added_later() -> dict:
        return {"open": True}

    client = TestClient(app)
    assert client.get("/added-later").status_code == 401
    assert client.get("/added-later", headers={"Authorization": f"Bearer {KEY}"}).json() == {"open": True}


def test_the_page_and_its_assets_open_with_the_key(tmp_path):
    client = TestClient(_app(tmp_path))
    bearer = {"Authorization": f"Bearer {KEY}"}
    for path in ("/", "/static/app.js", "/static/live.js", "/static/app.css", "/openapi.json", "/docs", "/redoc",
                 "/static/docs/swagger-ui-bundle.js"):
        assert client.get(path, headers=bearer).status_code == 200, path


def test_a_browser_without_the_key_gets_the_key_form(tmp_path):
    client = TestClient(_app(tmp_path))
    for path in ("/", "/docs"):
        response = client.get(path, headers={"Accept": "text/html,application/xhtml+xml"})
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("text/html")
        assert 'id="key-form"' in response.text and "amanuensis_key=" in response.text
    api = client.get("/v1/models", headers={"Accept": "text/html"})
    assert api.status_code == 401 and api.json()["error"]["code"] == "invalid_api_key"


def test_the_key_cookie_opens_the_page_assets_and_docs_only(tmp_path):
    client = TestClient(_app(tmp_path))
    client.cookies.set("amanuensis_key", "k-1%3B%3D%2C%20x")  # encodeURIComponent(KEY)
    for path in ("/", "/static/app.js", "/openapi.json", "/docs", "/static/docs/swagger-ui.css"):
        assert client.get(path).status_code == 200, path
    assert client.head("/static/app.js").status_code == 200
    for method, path in (("GET", "/v1/models"), ("GET", "/status"), ("GET", "/v1/jobs"), ("POST", "/v1/jobs"),
                         ("POST", "/transcribe")):
        assert client.request(method, path).status_code == 401, (method, path)
    client.cookies.set("amanuensis_key", "wrong")
    assert client.get("/").status_code == 401


def test_public_docs_opens_the_docs_and_nothing_else(tmp_path):
    client = TestClient(_app(tmp_path, public_docs=True))
    for path in ("/docs", "/redoc", "/openapi.json", "/static/docs/swagger-ui-bundle.js",
                 "/static/docs/redoc.standalone.js"):
        assert client.get(path).status_code == 200, path
    for path in ("/", "/static/app.js", "/status", "/static/docs-not/app.js"):
        assert client.get(path).status_code == 401, path


def test_the_docs_pages_load_nothing_from_the_internet(tmp_path):
    client = TestClient(create_app(ServerSettings(data_dir=tmp_path)))
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert sources and all(source.startswith("/") for source in sources), (page, sources)
        for source in sources:
            assert client.get(source).status_code == 200, source
    script = client.get("/static/docs/swagger-ui-bundle.js")
    assert "javascript" in script.headers["content-type"] and "SwaggerUIBundle" in script.text


def test_without_keys_everything_is_open(tmp_path):
    client = TestClient(create_app(ServerSettings(data_dir=tmp_path)))
    for path in ("/", "/static/app.js", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200, path
