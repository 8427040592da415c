"""API keys, CORS, the queue limit (503 + Retry-After) and the request timeout, on real servers."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from openai import AuthenticationError, OpenAI

from .server_fixtures import SHORT_CLIP, RunningServer, assert_error, long_recording, run_server, upload

pytestmark = pytest.mark.slow

KEY = "test-key-1"
ORIGIN = "http://app.example"


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    return long_recording(tmp_path_factory.mktemp("audio") / "long.wav")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> RunningServer:
    with run_server(tmp_path_factory.mktemp("guarded"), "--api-key", "other-key", "--max-queue", "1",
                    "--workers", "1", "--max-concurrent", "1", "--cors-origin", ORIGIN,
                    env={"AMANUENSIS_API_KEYS": KEY}) as running:
        yield running


@pytest.fixture(scope="module")
def impatient(tmp_path_factory) -> RunningServer:
    with run_server(tmp_path_factory.mktemp("impatient"), "--request-timeout", "1.0",
                    env={"AMANUENSIS_LOG_FORMAT": "json"}) as running:
        yield running


def _auth(key: str = KEY) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_flags_override_environment(guarded):
    """--api-key on the command line wins over AMANUENSIS_API_KEYS."""
    assert httpx.get(f"{guarded.url}/status", headers=_auth("other-key")).status_code == 200
    assert_error(httpx.get(f"{guarded.url}/status", headers=_auth(KEY)), 401, None, "invalid_api_key")


@pytest.mark.parametrize("path", ["/status", "/metrics", "/v1/models"])
def test_keys_guard_everything_but_liveness(guarded, path):
    assert_error(httpx.get(f"{guarded.url}{path}"), 401, None, "invalid_api_key")
    response = httpx.get(f"{guarded.url}{path}", headers=_auth("wrong"))
    assert_error(response, 401, None, "invalid_api_key")
    assert response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{guarded.url}/health").status_code == 200
    assert httpx.get(f"{guarded.url}/ready").status_code == 200


def test_openai_client_with_and_without_key(guarded):
    with open(SHORT_CLIP, "rb") as audio, pytest.raises(AuthenticationError):
        OpenAI(base_url=f"{guarded.url}/v1", api_key="wrong", max_retries=0).audio.transcriptions.create(
            model="whisper-1", file=audio)
    with open(SHORT_CLIP, "rb") as audio:
        text = OpenAI(base_url=f"{guarded.url}/v1", api_key="other-key", max_retries=0).audio.transcriptions.create(
            model="whisper-1", file=audio, response_format="text")
    assert "comparatively" in text


def test_cors(guarded):
    preflight = httpx.options(f"{guarded.url}/v1/audio/transcriptions", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.get(f"{guarded.url}/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_queue_limit_answers_503_with_retry_after(guarded, recording):
    """One worker, one waiting place: a long job runs, one request waits, the rest are refused."""

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=guarded.url, timeout=120, headers=_auth("other-key")) as client:
            blocker = asyncio.create_task(client.post("/transcribe", files=upload(recording)))
            deadline = time.monotonic() + 30
            while (await client.get("/status")).json()["queue"]["running"] < 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            others = [asyncio.create_task(client.post("/transcribe", files=upload(SHORT_CLIP))) for _ in range(4)]
            return [await blocker] + [await task for task in others]

    responses = asyncio.run(scenario())
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 503, 503, 503], [(r.status_code, r.text[:120]) for r in responses]
    for response in responses:
        if response.status_code == 503:
            assert_error(response, 503, None, "queue_full")
            assert int(response.headers["retry-after"]) >= 1
    status = httpx.get(f"{guarded.url}/status", headers=_auth("other-key")).json()
    assert status["requests"]["rejected_queue_full"] == 3 and status["queue"]["waiting"] == 0
    assert guarded.uploads_left() == []


def test_request_timeout_is_504_and_the_job_stops(impatient, recording):
    response = httpx.post(f"{impatient.url}/transcribe", files=upload(recording), timeout=60)
    assert_error(response, 504, None, "request_timeout")
    deadline = time.monotonic() + 30
    while httpx.get(f"{impatient.url}/status").json()["jobs"]["cancelled"] < 1:
        assert time.monotonic() < deadline, "the timed-out job kept running"
        time.sleep(0.1)
    ok = httpx.post(f"{impatient.url}/transcribe", files=upload(SHORT_CLIP), timeout=60)
    assert ok.status_code == 200, ok.text
    assert impatient.uploads_left() == []


def test_json_logs(impatient):
    import json

    httpx.get(f"{impatient.url}/health")
    lines = [json.loads(line) for line in impatient.log().splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "amanuensis.access"]
    assert access and {"request_id", "route", "status", "duration_ms"} <= set(access[-1])
