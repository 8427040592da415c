"""Bad input over HTTP: each a 4xx with OpenAI's JSON error naming the problem; the server keeps serving
and leaves no upload on disk."""

from __future__ import annotations

import uuid

import httpx
import pytest

from .server_fixtures import JFK, MP3, SHORT_CLIP, RunningServer, assert_error, run_server, upload, words

pytestmark = pytest.mark.slow

LIMIT_MB = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> RunningServer:
    with run_server(tmp_path_factory.mktemp("server"), "--max-upload-mb", str(LIMIT_MB),
                    "--max-audio-seconds", "8") as running:
        yield running


@pytest.fixture(scope="module")
def http(server) -> httpx.Client:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


BOTH = ("/transcribe", "/v1/audio/transcriptions")


@pytest.mark.parametrize("route", BOTH)
def test_empty_upload(http, route):
    error = assert_error(http.post(route, files=upload(SHORT_CLIP, content=b"")), 400, "file", "invalid_audio")
    assert "empty" in error["message"]


@pytest.mark.parametrize("route", BOTH)
def test_not_audio(http, route):
    junk = b"this is a shopping list, not a recording\n" * 200
    error = assert_error(http.post(route, files=upload(SHORT_CLIP, "list.txt", junk)), 400, "file", "invalid_audio")
    assert "audio" in error["message"]


def test_truncated_mp3(http):
    data = MP3.read_bytes()
    error = assert_error(http.post("/transcribe", files=upload(MP3, "cut.mp3", data[: len(data) // 2])),
                         400, "file", "invalid_audio")
    assert "truncated" in error["message"]


def test_oversize_upload_with_content_length(http):
    body = b"\0" * (LIMIT_MB * 1024 * 1024 + 300_000)
    error = assert_error(http.post("/transcribe", files=upload(SHORT_CLIP, "big.wav", body)),
                         413, "file", "upload_too_large")
    assert "limit" in error["message"]


def test_oversize_upload_refused_by_its_declared_length(http):
    body = b"\0" * (LIMIT_MB * 1024 * 1024 * 2)
    assert_error(http.post("/transcribe", files=upload(SHORT_CLIP, "huge.wav", body)), 413, "file", "upload_too_large")


def test_oversize_upload_streamed_without_length(server):
    """A chunked body has no Content-Length: the limit is enforced while reading, chunk by chunk."""
    boundary = uuid.uuid4().hex

    def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
               "Content-Type: audio/wav\r\n\r\n").encode()
        for _ in range(LIMIT_MB * 16 + 8):
            yield b"\1" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    response = httpx.post(f"{server.url}/transcribe", content=body(), timeout=60,
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "file", "upload_too_large")


def test_audio_longer_than_the_limit(http):
    error = assert_error(http.post("/transcribe", files=upload(JFK)), 413, "file", "audio_too_long")
    assert "8 s" in error["message"]


@pytest.mark.parametrize("route", BOTH)
def test_unknown_response_format(http, route):
    response = http.post(route, files=upload(SHORT_CLIP), data={"response_format": "docx"})
    assert "docx" in assert_error(response, 400, "response_format")["message"]


def test_tsv_is_not_an_openai_format(http):
    response = http.post("/v1/audio/transcriptions", files=upload(SHORT_CLIP), data={"response_format": "tsv"})
    assert_error(response, 400, "response_format")


@pytest.mark.parametrize("route", BOTH)
def test_unknown_model(http, route):
    response = http.post(route, files=upload(SHORT_CLIP), data={"model": "whisper-galactic"})
    assert "whisper-galactic" in assert_error(response, 400, "model", "model_not_found")["message"]


@pytest.mark.parametrize("route", BOTH)
def test_missing_file(http, route):
    response = http.post(route, data={"model": "whisper-1"}, files={"other": ("x", b"", "text/plain")})
    assert_error(response, 400, "other")
    response = http.post(route, data={"model": "whisper-1", "language": "en"})
    assert_error(response, 400, "file")


def test_missing_file_in_a_multipart_form(server):
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            f"--{boundary}--\r\n").encode()
    response = httpx.post(f"{server.url}/transcribe", content=body,
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert_error(response, 400, "file", "missing_file")


@pytest.mark.parametrize(
    ("route", "data", "param"),
    [
        ("/transcribe", {"vad_filter": "maybe"}, "vad_filter"),
        ("/transcribe", {"min_speakers": "2"}, "min_speakers"),
        ("/transcribe", {"enable_diarization": "true", "min_speakers": "two"}, "min_speakers"),
        ("/transcribe", {"language": "fr"}, "language"),
        ("/transcribe", {"beam_size": "3"}, "beam_size"),
        ("/v1/audio/transcriptions", {"temperature": "1.5"}, "temperature"),
        ("/v1/audio/transcriptions", {"temperature": "warm"}, "temperature"),
        ("/v1/audio/transcriptions", {"timestamp_granularities[]": "word"}, "timestamp_granularities"),
        ("/v1/audio/transcriptions", {"response_format": "verbose_json", "timestamp_granularities[]": "char"},
         "timestamp_granularities"),
        ("/v1/audio/transcriptions", {"stream": "true", "response_format": "srt"}, "stream"),
        ("/v1/audio/transcriptions", {"include[]": "logprobs", "response_format": "srt"}, "include"),
        ("/v1/audio/transcriptions", {"include[]": "tokens"}, "include"),
        ("/v1/audio/transcriptions", {"chunking_strategy": '{"type": "server_vad"}'}, "chunking_strategy"),
        ("/v1/audio/translations", {"model": "whisper-1"}, "model"),
    ],
)
def test_parameters_that_cannot_be_honoured(http, route, data, param):
    assert_error(http.post(route, files=upload(SHORT_CLIP), data=data), 400, param)


def test_body_that_is_not_a_form(http):
    response = http.post("/v1/audio/transcriptions", json={"file": "jfk.flac", "model": "whisper-1"})
    assert_error(response, 400, "file", "invalid_content_type")


def test_unknown_route_and_method(http):
    assert_error(http.get("/v2/nothing"), 404, None, "not_found")
    assert_error(http.get("/transcribe"), 405, None, "method_not_allowed")


def test_server_keeps_serving_and_cleans_up(server, http):
    response = http.post("/transcribe", files=upload(SHORT_CLIP), data={"response_format": "text"})
    assert response.status_code == 200
    assert words(response.text) == ["in", "being", "comparatively", "modern"]
    assert server.process.poll() is None
    status = http.get("/status").json()
    assert status["requests"]["failed"] >= 20 and status["requests"]["served"] >= 1
    assert server.uploads_left() == []
    assert "Traceback" not in server.log()
