"""POST /v1/models/{id} for a hub model that is not cached: offline by default (404), and where downloads
are allowed a background download with byte progress, then the load (the hub itself is replaced by a
fetch that writes a model directory piece by piece: tests never download)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from amanuensis.errors import ModelError
from amanuensis.models import embedded_model_path
from amanuensis.server.app import create_app
from amanuensis.server.downloads import ModelDownloads
from amanuensis.server.settings import ServerSettings

from .server_fixtures import assert_error

pytestmark = pytest.mark.slow


class SlowHub:
    """Writes the embedded model's files into `root/<name>` a piece at a time, reporting bytes; fails for
    names it does not know. `release` lets the last piece through."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.release = threading.Event()

    def __call__(self, name: str, progress) -> Path:
        if name != "small.en":
            raise ModelError(f"model {name!r} could not be downloaded: 404 Client Error")
        source = embedded_model_path()
        files = [f for f in sorted(source.iterdir()) if f.is_file()]
        total = sum(f.stat().st_size for f in files)
        target, done = self.root / name, 0
        target.mkdir(parents=True)
        for index, item in enumerate(files):
            if index == len(files) - 1:
                self.release.wait(30)
            (target / item.name).write_bytes(item.read_bytes())
            done += item.stat().st_size
            progress(done, total)
        return target


def _client(tmp_path: Path, **settings) -> TestClient:
    app = create_app(ServerSettings(data_dir=tmp_path / "data", tmp_dir=tmp_path, batch_wait_ms=0,
                                    realtime_workers=0, **settings))
    return app, TestClient(app)


def _wait_state(client: TestClient, model_id: str, states: tuple[str, ...]) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        model = client.get(f"/v1/models/{model_id}").json()
        if model["state"] in states:
            return model
        time.sleep(0.1)
    raise AssertionError(f"{model_id} never reached {states}: {model}")


def test_offline_a_hub_model_is_neither_listed_nor_fetched(tmp_path):
    app, client = _client(tmp_path)
    with client:
        ids = {model["id"] for model in client.get("/v1/models").json()["data"]}
        assert "small.en" not in ids and "tiny.en" in ids
        assert_error(client.post("/v1/models/small.en"), 404, "model", "model_not_found")


def test_allowed_downloads_show_progress_then_the_model_loads(tmp_path):
    app, client = _client(tmp_path, allow_download=True, max_models=3)
    hub = SlowHub(tmp_path / "hub")
    with client:
        app.state.downloads = ModelDownloads(app.state.service.pool, fetch=hub)
        listed = {model["id"]: model for model in client.get("/v1/models").json()["data"]}
        assert listed["small.en"]["state"] == "downloadable" and listed["large-v3"]["multilingual"]
        started = client.post("/v1/models/small.en")
        assert started.status_code == 202 and started.json()["state"] in ("downloading", "loading")
        midway = client.get("/v1/models/small.en").json()
        assert midway["state"] == "downloading"
        assert client.post("/v1/models/small.en").status_code == 202  # the same download, not a second
        while client.get("/v1/models/small.en").json()["download"]["done_bytes"] < 2**20:  # past model.bin
            time.sleep(0.05)
        partial = client.get("/v1/models/small.en").json()["download"]
        assert 0 < partial["done_bytes"] < partial["total_bytes"] and 0 < partial["percent"] < 100
        hub.release.set()
        loaded = _wait_state(client, "small.en", ("loaded", "failed"))
        assert loaded["state"] == "loaded" and loaded["download"]["percent"] == 100.0, loaded
        assert loaded["memory_bytes"] > 0 and loaded["source"] == "hub"

        assert client.post("/v1/models/medium").status_code == 202
        failed = _wait_state(client, "medium", ("failed",))
        assert failed["download"]["error"]["code"] == "model_not_found"
        assert "could not be downloaded" in failed["download"]["error"]["message"]
