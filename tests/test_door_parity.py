"""Door parity: one recording through the library, `amanuensis transcribe`, `/transcribe`,
`/v1/audio/transcriptions` (json, verbose_json and stream=true), `/v1/jobs` and `amanuensis batch`
gives the same text and the same segment times at every door, for English speech in several lanes
and for a recording that changes language (multilingual, with the packaged base model)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from amanuensis.formats import render
from amanuensis.models import base_parts_installed
from amanuensis.pipeline import TranscribeOptions, Transcriber

from .conftest import MULTILINGUAL
from .corpus_fixtures import batch_env, run_batch
from .server_fixtures import long_recording, run_server, upload

pytestmark = pytest.mark.slow
TIMEOUT_S = 600


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with run_server(tmp_path_factory.mktemp("parity-server")) as running:
        yield running


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=TIMEOUT_S) as client:
        yield client


def _timed(data: dict) -> tuple[str, list[tuple[float, float, str]]]:
    """(text, [(start, end, stripped text)]) of a JSON answer."""
    return data["text"], [(s["start"], s["end"], s["text"].strip()) for s in data["segments"]]


def _library(path: Path, model: str, multilingual: bool) -> dict:
    options = TranscribeOptions(word_timestamps=False, multilingual=multilingual)
    return json.loads(render(Transcriber(model).transcribe(path, options), "json"))


def _cli(path: Path, model: str, multilingual: bool) -> dict:
    command = [sys.executable, "-m", "amanuensis.cli", "transcribe", str(path), "--format", "json",
               "--no-word-timestamps", "--model", model, *(["--multilingual"] if multilingual else [])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=batch_env())
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _batch(path: Path, model: str, multilingual: bool, tmp: Path) -> dict:
    corpus, out = tmp / "corpus", tmp / "out"
    corpus.mkdir()
    (corpus / path.name).write_bytes(path.read_bytes())
    done = run_batch(str(corpus), "-o", str(out), "--format", "json", "--workers", "1", "--no-progress",
                     "--no-word-timestamps", "--model", model, *(["--multilingual"] if multilingual else []),
                     timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    return json.loads((out / f"{path.stem}.json").read_text(encoding="utf-8"))


def _stream(server, path: Path, form: dict) -> tuple[list[str], str]:
    """The deltas and the done event's text of a streamed answer."""
    deltas, text = [], None
    with httpx.stream("POST", f"{server.url}/v1/audio/transcriptions", files=upload(path),
                      data={**form, "stream": "true"}, timeout=TIMEOUT_S) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["type"] == "transcript.text.delta":
                    deltas.append(event["delta"])
                elif event["type"] == "transcript.text.done":
                    text = event["text"]
    assert text is not None
    return deltas, text


def _job(http, path: Path, form: dict) -> dict:
    queued = http.post("/v1/jobs", files=upload(path), data={**form, "word_timestamps": "false"})
    assert queued.status_code == 202, queued.text
    deadline = time.monotonic() + TIMEOUT_S
    while (job := http.get(f"/v1/jobs/{queued.json()['id']}").json())["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.25)
    assert job["status"] == "done", job
    return job["result"]


def _every_door(server, http, path: Path, model: str, multilingual: bool, tmp: Path) -> None:
    reference = _library(path, model, multilingual)
    text, segments = _timed(reference)
    assert len(segments) >= 3 and text
    form = {"model": model, **({"multilingual": "true"} if multilingual else {})}
    answers = {
        "cli": _cli(path, model, multilingual),
        "batch": _batch(path, model, multilingual, tmp),
        "/transcribe": http.post("/transcribe", files=upload(path), data={**form, "word_timestamps": "false"}).json(),
        "/v1/jobs": _job(http, path, form),
        "/v1/audio/transcriptions verbose_json": http.post(
            "/v1/audio/transcriptions", files=upload(path), data={**form, "response_format": "verbose_json"}).json(),
    }
    for door, answer in answers.items():
        assert _timed(answer) == (text, segments), door
    plain = http.post("/v1/audio/transcriptions", files=upload(path), data=form)
    assert plain.status_code == 200 and plain.json()["text"] == text
    deltas, streamed = _stream(server, path, form)
    assert streamed == text
    assert [d.strip() for d in deltas] == [s[2] for s in segments]  # one delta per segment, in order


def test_english_speech_in_several_lanes_is_the_same_at_every_door(server, http, tmp_path):
    recording = long_recording(tmp_path / "monologues.wav")  # 77 s: three lanes, two batch steps
    _every_door(server, http, recording, "tiny.en", False, tmp_path)


@pytest.mark.skipif(not base_parts_installed(), reason="the multilingual base model is not installed")
def test_a_recording_that_changes_language_is_the_same_at_every_door(server, http, tmp_path):
    _every_door(server, http, MULTILINGUAL, "base", True, tmp_path)
