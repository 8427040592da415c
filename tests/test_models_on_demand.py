"""Models on demand on the real server: list with states, load by POST, transcribe with it on the doors,
unload by DELETE with the process's resident memory back where it was, idle unload after the TTL, and
loads past --max-models or the memory limit refused."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from amanuensis.models import assemble_base_model, base_parts_installed, embedded_model_path
from amanuensis.server.memory import process_rss_bytes

from .realtime_client import Received, pcm16, receive_until, send_audio, session_update
from .server_fixtures import JFK, assert_error, run_server, upload, words
from .test_jobs import JFK_WORDS, submit, wait_done

COMPLETED = "conversation.item.input_audio_transcription.completed"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not base_parts_installed(), reason="the multilingual base model is not installed")]


def _link_model(source: Path, target: Path) -> None:
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.is_file():
            (target / item.name).symlink_to(item)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A model cache holding the packaged base model (assembled once, linked) and a local directory model
    (`tiny-copy`: the embedded model's files)."""
    root = tmp_path_factory.mktemp("cache")
    _link_model(assemble_base_model(), root / "models" / "base")
    _link_model(embedded_model_path(), root / "models" / "tiny-copy")
    return root


async def _realtime_turn_holding(url: str, http: httpx.Client) -> dict:
    """A realtime session switched to tiny-copy by session.update: its turn's `.completed`, after checking
    that the model stays loaded past the TTL and cannot be unloaded while the session holds it."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url + "/v1", api_key="unused")
    received = Received()
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        await connection.session.update(session=session_update(None, model="tiny-copy"))
        await send_audio(connection, pcm16(JFK, 24000), 48000, 0.0)
        await connection.input_audio_buffer.commit()
        await receive_until(connection, received, lambda r: bool(r.of(COMPLETED)))
        assert not received.of("error"), received.of("error")  # tiny-copy was admitted, not refused
        await asyncio.sleep(3.0)  # past the 2 s TTL
        state = await asyncio.to_thread(lambda: _models(http)["tiny-copy"])
        assert state["state"] == "loaded" and state["in_use"], state
        busy = await asyncio.to_thread(http.delete, "/v1/models/tiny-copy")
        assert_error(busy, 409, "model", "model_in_use")
    return received.of(COMPLETED)[0]


async def _realtime_turn(url: str) -> dict:
    """A realtime session's one turn on the default model, committed by hand: its `.completed`."""
    from openai import AsyncOpenAI

    received = Received()
    async with AsyncOpenAI(base_url=url + "/v1", api_key="unused").realtime.connect(
            extra_query={"intent": "transcription"}) as connection:
        await connection.session.update(session=session_update(None))  # one turn, committed by hand
        await send_audio(connection, pcm16(JFK, 24000), 48000, 0.0)
        await connection.input_audio_buffer.commit()
        await receive_until(connection, received, lambda r: bool(r.of(COMPLETED)))
    return received.of(COMPLETED)[0]


def _rss(pid: int) -> int:
    rss = process_rss_bytes(pid)
    assert rss, "no /proc/PID/status here"
    return rss


def _models(http: httpx.Client) -> dict[str, dict]:
    return {model["id"]: model for model in http.get("/v1/models").json()["data"]}


def test_load_transcribe_unload_gives_the_memory_back_and_the_limit_holds(tmp_path, cache):
    env = {"AMANUENSIS_CACHE_DIR": str(cache)}
    with run_server(tmp_path, "--max-models", "2", "--model-ttl", "0", env=env) as server, \
            httpx.Client(base_url=server.url, timeout=120) as http:
        pid = server.process.pid
        assert http.post("/transcribe", files=upload(JFK)).status_code == 200  # the default model warmed up
        listed = _models(http)
        assert listed["tiny.en"]["state"] == "loaded" and listed["tiny.en"]["default"]
        assert listed["base"]["state"] == "available" and listed["base"]["memory_bytes"] is None
        assert listed["tiny-copy"]["source"] == "local" and listed["tiny-copy"]["state"] == "available"
        before = _rss(pid)

        loaded = http.post("/v1/models/base")
        assert loaded.status_code == 200, loaded.text
        assert loaded.json()["state"] == "loaded" and loaded.json()["memory_bytes"] > 100 * 2**20
        assert _rss(pid) > before + 100 * 2**20
        openai = http.post("/v1/audio/transcriptions", files=upload(JFK), data={"model": "base"})
        assert openai.status_code == 200 and set(words(openai.json()["text"])) >= JFK_WORDS
        native = http.post("/transcribe", files=upload(JFK), data={"model": "base"}).json()
        assert native["model"] == "base"
        job = wait_done(http, submit(http, JFK, model="base")["id"])
        assert job["status"] == "done" and job["model"] == "base" and set(words(job["result"]["text"])) >= JFK_WORDS

        refused = http.post("/v1/models/tiny-copy")  # the default and base make two: the limit
        assert_error(refused, 409, "model", "model_limit")
        assert _models(http)["tiny-copy"]["state"] == "available"

        unloaded = http.delete("/v1/models/base")
        assert unloaded.status_code == 200 and unloaded.json()["deleted"] is True, unloaded.text
        after = _rss(pid)
        assert after <= before * 1.10, (before, after)
        assert unloaded.json()["freed_bytes"] > 100 * 2**20
        assert _models(http)["base"]["state"] == "available"
        assert_error(http.delete("/v1/models/base"), 404, "model", "model_not_loaded")
        assert_error(http.delete("/v1/models/tiny.en"), 409, "model", "model_pinned")
        assert_error(http.post("/v1/models/no-such-model"), 404, "model", "model_not_found")
        assert_error(http.post("/v1/models/small"), 404, "model", "model_not_found")  # offline: not cached

        # the realtime sessions' copies of the default model (loaded at the first session) count in its memory,
        # which the memory limit adds up
        alone = _models(http)["tiny.en"]["memory_bytes"]
        assert set(words(asyncio.run(_realtime_turn(server.url))["transcript"])) >= JFK_WORDS
        assert _models(http)["tiny.en"]["memory_bytes"] > alone + 50 * 2**20, (alone, _models(http)["tiny.en"])


def test_idle_models_unload_after_the_ttl_unless_a_realtime_session_holds_them_and_memory_limit_507(
        tmp_path, cache):
    env = {"AMANUENSIS_CACHE_DIR": str(cache)}
    # without realtime copies of the default model, so the limit's margins do not hang on their measured size
    with run_server(tmp_path, "--max-models", "3", "--model-ttl", "2", "--max-model-memory-mb", "290",
                    "--realtime-workers", "0", env=env) as server, \
            httpx.Client(base_url=server.url, timeout=120) as http:
        copy = http.post("/v1/models/tiny-copy")
        assert copy.status_code == 200 and copy.json()["state"] == "loaded", copy.text
        assert 0 < copy.json()["unload_in_s"] <= 2
        assert_error(http.post("/v1/models/base"), 507, "model", "insufficient_memory")
        deadline = time.monotonic() + 30
        while _models(http)["tiny-copy"]["state"] == "loaded" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _models(http)["tiny-copy"]["state"] == "available"
        assert "model unloaded (idle for 2 s): name=tiny-copy" in server.log()
        assert _models(http)["tiny.en"]["state"] == "loaded"  # the default model stays
        assert http.post("/v1/models/base").status_code == 200  # with the idle model gone, base fits
        assert http.delete("/v1/models/base").status_code == 200

        completed = asyncio.run(_realtime_turn_holding(server.url, http))  # session.update picks tiny-copy
        assert completed["amanuensis"]["model"] == "tiny-copy"
        assert set(words(completed["transcript"])) >= JFK_WORDS
        deadline = time.monotonic() + 30  # the session ended: the model is idle again, and unloads
        while _models(http)["tiny-copy"]["state"] == "loaded" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _models(http)["tiny-copy"]["state"] == "available"
