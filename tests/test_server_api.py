"""End-to-end: the real server over HTTP — every endpoint, every response_format, the openai client,
SSE streaming, and the event loop staying free while transcribing."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest
from openai import BadRequestError, OpenAI

from amanuensis.diarize import is_available as diarization_available
from amanuensis.models import base_parts_installed

from .server_fixtures import (
    JFK,
    LONG_CLIP,
    SHORT_CLIP,
    RunningServer,
    assert_error,
    long_recording,
    run_server,
    upload,
    words,
)

pytestmark = pytest.mark.slow

JFK_WORDS = words("And so my fellow Americans, ask not what your country can do for you, "
                  "ask what you can do for your country.")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> RunningServer:
    with run_server(tmp_path_factory.mktemp("server"), "--max-upload-mb", "8") as running:
        yield running


@pytest.fixture(scope="module")
def http(server) -> httpx.Client:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def openai_client(server) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def _close_to_jfk(text: str) -> None:
    got = words(text)
    assert len(set(got) & set(JFK_WORDS)) >= len(set(JFK_WORDS)) - 2, text


def test_health_ready_and_request_id(http):
    response = http.get("/health", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response.headers["x-request-id"] == "abc-123"
    ready = http.get("/ready")
    assert ready.status_code == 200 and ready.json()["model"] == "tiny.en"


def test_transcribe_json_has_every_field(http):
    response = http.post("/transcribe", files=upload(JFK))
    assert response.status_code == 200, response.text
    body = response.json()
    for key in ("text", "language", "duration", "segments", "processing_time", "realtime_factor", "frontend",
                "model", "job_id"):
        assert key in body, key
    _close_to_jfk(body["text"])
    assert body["language"] == "en" and body["model"] == "tiny.en"
    assert body["duration"] == pytest.approx(11.0, abs=0.1)
    assert isinstance(body["realtime_factor"], float) and 0 < body["realtime_factor"] < 5
    assert body["frontend"] and body["job_id"] == response.headers["x-request-id"]
    segment = body["segments"][0]
    assert {"start", "end", "text", "words"} <= set(segment)
    word = segment["words"][0]
    assert set(word) >= {"word", "start", "end", "probability"}
    assert 0 <= word["start"] <= word["end"] <= body["duration"]


def test_transcribe_options_are_honoured(http):
    body = http.post("/transcribe", files=upload(JFK),
                     data={"word_timestamps": "false", "vad_filter": "false", "language": "en",
                           "model": "whisper-1"}).json()
    assert all("words" not in s for s in body["segments"])
    _close_to_jfk(body["text"])


@pytest.mark.parametrize(
    ("fmt", "media", "check"),
    [
        ("text", "text/plain", lambda t: "fellow americans" in t.lower()),
        ("srt", "application/x-subrip", lambda t: re.match(r"1\n00:00:0\d,\d{3} --> 00:00:\d\d,\d{3}\n", t)),
        ("vtt", "text/vtt", lambda t: t.startswith("WEBVTT") and " --> " in t),
        ("tsv", "text/tab-separated-values", lambda t: re.match(r"start\tend\ttext\n\d+\t\d+\t\w", t)),
        ("verbose_json", "application/json", lambda t: json.loads(t)["segments"][0]["words"]),
        ("json", "application/json", lambda t: json.loads(t)["segments"]),
    ],
)
def test_transcribe_every_response_format(http, fmt, media, check):
    response = http.post("/transcribe", files=upload(JFK), data={"response_format": fmt})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(media)
    assert check(response.text), response.text[:300]


def test_subtitle_options_shape_the_answer(http):
    srt = http.post("/transcribe", files=upload(JFK),
                    data={"response_format": "srt", "max_line_width": "20", "max_words_per_line": "3"}).text
    lines = [line for block in srt.strip().split("\n\n") for line in block.split("\n")[2:]]
    assert lines and all(len(line) <= 20 and len(line.split()) <= 3 for line in lines), srt
    vtt = http.post("/v1/audio/transcriptions", files=upload(JFK),
                    data={"response_format": "vtt", "max_cue_seconds": "3"}).text
    times = re.findall(r"(\d\d):(\d\d)\.(\d{3}) --> \d\d:(\d\d):(\d\d)\.(\d{3})", vtt)
    durations = [(int(m2) * 60 + int(s2) + int(ms2) / 1000) - (int(m1) * 60 + int(s1) + int(ms1) / 1000)
                 for m1, s1, ms1, m2, s2, ms2 in times]
    assert len(durations) >= 4 and max(durations) <= 3.0, vtt


def test_openai_client_json_and_text_formats(openai_client):
    with open(JFK, "rb") as audio:
        result = openai_client.audio.transcriptions.create(model="whisper-1", file=audio)
    _close_to_jfk(result.text)
    assert result.usage is not None and result.usage.seconds == pytest.approx(11.0, abs=0.1)
    for fmt, marker in (("text", "country"), ("srt", "-->"), ("vtt", "WEBVTT")):
        with open(JFK, "rb") as audio:
            text = openai_client.audio.transcriptions.create(model="whisper-1", file=audio, response_format=fmt)
        assert isinstance(text, str) and marker in text, (fmt, text)


def test_openai_client_verbose_json_granularities(openai_client):
    with open(JFK, "rb") as audio:
        both = openai_client.audio.transcriptions.create(
            model="whisper-1", file=audio, response_format="verbose_json",
            timestamp_granularities=["word", "segment"], language="en", temperature=0.0,
            prompt="A speech by President Kennedy.",
        )
    assert both.duration == pytest.approx(11.0, abs=0.1) and both.language == "en"
    assert both.words and both.segments and len(both.words) >= 18
    assert both.words[0].start <= both.words[-1].end <= 11.1
    with open(JFK, "rb") as audio:
        only_words = openai_client.audio.transcriptions.create(
            model="whisper-1", file=audio, response_format="verbose_json", timestamp_granularities=["word"]
        )
    assert only_words.words and not only_words.segments
    with open(JFK, "rb") as audio:
        default = openai_client.audio.transcriptions.create(
            model="tiny.en", file=audio, response_format="verbose_json"
        )
    assert default.segments and not default.words


def test_granularities_spelling_without_brackets(http):
    response = http.post("/v1/audio/transcriptions", files=upload(JFK),
                         data={"model": "whisper-1", "response_format": "verbose_json",
                               "timestamp_granularities": "word"})
    assert response.status_code == 200, response.text
    assert response.json()["words"] and "segments" not in response.json()


def test_temperature_above_zero_is_used(http):
    response = http.post("/v1/audio/transcriptions", files=upload(SHORT_CLIP),
                         data={"model": "whisper-1", "temperature": "0.3", "response_format": "verbose_json"})
    assert response.status_code == 200, response.text
    assert {s["temperature"] for s in response.json()["segments"]} == {0.3}


def test_openai_client_stream(openai_client):
    with open(LONG_CLIP, "rb") as audio:
        events = list(openai_client.audio.transcriptions.create(model="whisper-1", file=audio, stream=True))
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) >= 3 and events[-1].type == "transcript.text.done"
    assert "".join(d.delta for d in deltas).strip() == events[-1].text


def test_openai_client_logprobs_are_the_text_s_tokens(openai_client, http):
    with open(JFK, "rb") as audio:
        result = openai_client.audio.transcriptions.create(model="whisper-1", file=audio, include=["logprobs"])
    _close_to_jfk(result.text)
    tokens = result.logprobs
    assert tokens and len(tokens) >= 20
    assert "".join(t.token for t in tokens).strip() == result.text  # every token of the text, in order
    assert all(t.logprob <= 0.0 and bytes(int(b) for b in t.bytes).decode("utf-8") == t.token for t in tokens)
    assert sum(t.logprob > -0.7 for t in tokens) >= 0.8 * len(tokens)  # a clean speech: mostly sure
    with open(JFK, "rb") as audio:
        events = list(openai_client.audio.transcriptions.create(model="whisper-1", file=audio, stream=True,
                                                                include=["logprobs"]))
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert [t.token for d in deltas for t in d.logprobs] == [t.token for t in events[-1].logprobs]
    assert [t.token for t in events[-1].logprobs] == [t.token for t in tokens]
    plain = http.post("/v1/audio/transcriptions", files=upload(JFK), data={"model": "whisper-1"}).json()
    assert "logprobs" not in plain
    assert_error(http.post("/v1/audio/transcriptions", files=upload(JFK),
                           data={"include[]": "logprobs", "response_format": "verbose_json"}), 400, "include")
    assert_error(http.post("/v1/audio/transcriptions", files=upload(JFK), data={"include[]": "tokens"}),
                 400, "include")


def test_sse_delivers_segments_before_the_end(server, tmp_path):
    """Read the raw stream of a 77 s recording (three 30 s decoding windows): the first window's
    segments arrive while the later windows are still being decoded, well before `done`."""
    recording = long_recording(tmp_path / "long.wav")
    arrivals: list[tuple[float, dict]] = []
    started = time.perf_counter()
    with httpx.stream("POST", f"{server.url}/v1/audio/transcriptions", files=upload(recording),
                      data={"model": "whisper-1", "stream": "true"}, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append((time.perf_counter() - started, json.loads(line[6:])))
    kinds = [event["type"] for _, event in arrivals]
    assert kinds[-1] == "transcript.text.done" and kinds.count("transcript.text.delta") >= 3
    first_delta, done = arrivals[0][0], arrivals[-1][0]
    assert done - first_delta > 0.2 * done, [(round(t, 3), e["type"]) for t, e in arrivals]
    assert len({round(t, 1) for t, _ in arrivals[:-1]}) >= 2, "deltas came in one burst"


def test_stream_stops_the_job_when_the_client_leaves(server, http, tmp_path):
    recording = long_recording(tmp_path / "long.wav")
    before = http.get("/status").json()["jobs"]["cancelled"]
    with httpx.stream("POST", f"{server.url}/v1/audio/transcriptions", files=upload(recording),
                      data={"model": "whisper-1", "stream": "true"}, timeout=120) as response:
        first = next(line for line in response.iter_lines() if line.startswith("data: "))
        assert json.loads(first[6:])["type"] == "transcript.text.delta"
    deadline = time.monotonic() + 30
    while http.get("/status").json()["jobs"]["cancelled"] == before:
        assert time.monotonic() < deadline, "the abandoned stream's job was not stopped"
        time.sleep(0.1)
    assert http.get("/status").json()["queue"]["running"] == 0


@pytest.mark.skipif(not diarization_available(), reason="the diarize extra is not installed")
def test_diarization_labels_every_segment(http):
    response = http.post("/transcribe", files=upload(JFK), data={"enable_diarization": "true", "max_speakers": "2"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["speakers"] and all(s["speaker"] in body["speakers"] for s in body["segments"])
    assert all(w.get("speaker") for s in body["segments"] for w in s["words"])


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
def test_translation_needs_a_multilingual_model(openai_client):
    with open(SHORT_CLIP, "rb") as audio, pytest.raises(BadRequestError) as caught:
        openai_client.audio.translations.create(model="whisper-1", file=audio)
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == "model"


@pytest.mark.skipif(not base_parts_installed(), reason="the multilingual base model is not installed")
@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
def test_translation_loads_a_multilingual_model_on_demand(openai_client, http):
    with open(SHORT_CLIP, "rb") as audio:
        result = openai_client.audio.translations.create(model="base", file=audio)
    assert words(result.text) == ["in", "being", "comparatively", "modern"]
    assert http.get("/status").json()["models_loaded"] == ["tiny.en", "base"]
    ids = {model.id: model for model in openai_client.models.list().data}
    assert ids["base"].loaded is True and ids["base"].multilingual is True


def test_models_list_and_retrieve(openai_client, http):
    ids = [model.id for model in openai_client.models.list().data]
    assert ids[0] == "whisper-1" and "tiny.en" in ids
    assert openai_client.models.retrieve("whisper-1").id == "whisper-1"
    assert_error(http.get("/v1/models/no-such-model"), 404, "model", "model_not_found")


def test_status_reports_model_frontend_and_traffic(http):
    http.post("/transcribe", files=upload(SHORT_CLIP))
    status = http.get("/status").json()
    assert status["version"] and status["uptime_s"] > 0 and status["ready"] is True
    assert status["model"]["name"] == "tiny.en" and status["model"]["languages"] == ["en"]
    assert status["model"]["device"] == "cpu" and status["model"]["compute_type"]
    frontend = status["frontend"]
    assert frontend["active"] in [b["name"] for b in frontend["backends"]]
    for backend in frontend["backends"]:
        assert {"name", "device", "batch_frames", "healthy", "calls", "failures", "last_error"} <= set(backend)
    assert sum(b["calls"] for b in frontend["backends"]) > 0
    assert status["requests"]["served"] >= 1
    assert set(status["queue"]) >= {"waiting", "running", "workers"}
    assert status["realtime_factor"]["last"] and status["realtime_factor"]["mean"] > 0


def test_metrics_exposition(http):
    http.post("/transcribe", files=upload(SHORT_CLIP))
    text = http.get("/metrics").text
    assert 'amanuensis_http_requests_total{method="POST",route="/transcribe",status="200"}' in text
    assert 'amanuensis_http_request_duration_seconds_bucket{le="0.005",method="GET"' in text
    for name in ("amanuensis_audio_seconds_total", "amanuensis_realtime_factor_bucket", "amanuensis_queue_depth",
                 "amanuensis_frontend_calls_total", "amanuensis_frontend_fallbacks_total"):
        assert name in text, name


def test_health_and_status_answer_fast_while_busy(server):
    """Four long transcriptions keep the only worker busy; /health and /status still answer in <100 ms."""

    async def scenario() -> tuple[list[float], list[int]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            jobs = [asyncio.create_task(client.post("/transcribe", files=upload(LONG_CLIP))) for _ in range(4)]
            await asyncio.sleep(0.5)
            latencies: list[float] = []
            while not all(job.done() for job in jobs) and len(latencies) < 40:
                for path in ("/health", "/status"):
                    started = time.perf_counter()
                    response = await client.get(path)
                    latencies.append(time.perf_counter() - started)
                    assert response.status_code == 200
                await asyncio.sleep(0.05)
            statuses = [(await job).status_code for job in jobs]
            return latencies, statuses

    latencies, statuses = asyncio.run(scenario())
    assert statuses == [200] * 4
    assert len(latencies) >= 6, latencies
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.1, latencies
    assert latencies[int(len(latencies) * 0.9)] < 0.1, latencies


def test_openapi_document_lists_the_routes(http):
    paths = http.get("/openapi.json").json()["paths"]
    for path in ("/transcribe", "/v1/audio/transcriptions", "/v1/audio/translations", "/v1/models", "/status",
                 "/health", "/ready", "/metrics"):
        assert path in paths, path


def test_uploads_are_removed(server, http):
    assert http.get("/health").status_code == 200
    assert server.uploads_left() == []
