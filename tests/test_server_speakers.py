"""Speakers over HTTP with the official openai client: diarized_json (whole and streamed), a known voice
named by its reference clip, RTTM, and the refusals of bad known-speaker fields."""

from __future__ import annotations

import base64
import io
import json
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
from openai import BadRequestError, OpenAI

from amanuensis.diarize import is_available

from .diar_conversation import concatenate, load_clip, trim_silence
from .server_fixtures import JFK, RunningServer, run_server

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not is_available(), reason="needs the diarize extra")]

SPLIT = 40000  # samples: the left speaker's first 2.5 s are in the conversation, the rest is the reference


def wav_bytes(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def data_url(samples: np.ndarray) -> str:
    return "data:audio/wav;base64," + base64.b64encode(wav_bytes(samples)).decode("ascii")


@pytest.fixture(scope="module")
def voices() -> dict:
    """faster-whisper's two-speaker recording, its channels taken in turns (right, left, right), and a
    reference clip of the left speaker that is not in the conversation."""
    right = trim_silence(load_clip("faster-whisper/stereo_diarization_right.flac"))
    left = trim_silence(load_clip("faster-whisper/stereo_diarization_left.flac"))
    conversation = concatenate([("right", right), ("left", left[:SPLIT]), ("right", right)], (0.6, 0.6))
    return {"audio": wav_bytes(conversation.samples), "turns": conversation.turns, "left": data_url(left[SPLIT:]),
            "jfk": data_url(load_clip("whisper/jfk.flac"))}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> RunningServer:
    workdir = tmp_path_factory.mktemp("server")
    with run_server(workdir, "--data-dir", str(workdir / "data")) as running:
        yield running


@pytest.fixture(scope="module")
def client(server) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=180)


def speaker_of_turn(segments: list, start: float, end: float) -> set[str]:
    """Speakers of the segments whose middle lies in [start, end]."""
    return {s.speaker for s in segments if start <= (s.start + s.end) / 2 <= end}


def test_diarized_json_names_the_known_voice(client, voices):
    result = client.audio.transcriptions.create(
        model="whisper-1", file=("talk.wav", voices["audio"]), response_format="diarized_json",
        known_speaker_names=["lefty", "kennedy"], known_speaker_references=[voices["left"], voices["jfk"]])
    assert result.task == "transcribe" and result.text.strip()
    assert result.duration == pytest.approx(voices["turns"][-1][1], abs=0.05)
    assert all(s.type == "transcript.text.segment" and s.text and s.end > s.start for s in result.segments)
    first, middle, last = voices["turns"]
    assert speaker_of_turn(result.segments, middle[0], middle[1]) == {"lefty"}
    others = speaker_of_turn(result.segments, first[0], first[1]) | speaker_of_turn(result.segments, last[0], last[1])
    assert len(others) == 1 and others != {"lefty"}
    assert "kennedy" not in {s.speaker for s in result.segments}  # a voice that is not there names no one
    assert next(iter(others)).startswith("SPEAKER_")


def test_diarized_json_streams_segment_events_then_done(server, voices):
    with (httpx.Client(base_url=server.url, timeout=180) as http,
          http.stream("POST", "/v1/audio/transcriptions", files={"file": ("talk.wav", voices["audio"])},
                      data={"response_format": "diarized_json", "stream": "true"}) as response):
        assert response.status_code == 200
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "transcript.text.done" and set(kinds[:-1]) == {"transcript.text.segment"}
    segments = events[:-1]
    assert len({e["speaker"] for e in segments}) == 2
    assert all({"id", "start", "end", "text", "speaker"} <= e.keys() for e in segments)
    assert " ".join(e["text"] for e in segments).split() == events[-1]["text"].split()


def test_rttm_on_the_openai_and_native_doors(server, voices):
    with httpx.Client(base_url=server.url, timeout=180) as http:
        for route in ("/v1/audio/transcriptions", "/transcribe"):
            response = http.post(route, files={"file": ("talk.wav", voices["audio"])}, data={"response_format": "rttm"})
            assert response.status_code == 200, response.text
            lines = [line.split() for line in response.text.splitlines()]
            assert lines and all(f[0] == "SPEAKER" and len(f) == 10 and float(f[4]) > 0 for f in lines)
            assert len({f[7] for f in lines}) == 2


@pytest.mark.parametrize(("fields", "param"), [
    ({"known_speaker_names": ["a", "b"], "known_speaker_references": ["data:audio/wav;base64,UklG"]},
     "known_speaker_references"),
    ({"known_speaker_names": ["a"], "known_speaker_references": ["https://example.com/a.wav"]}, "known_speakers"),
    ({"known_speaker_names": ["a"], "known_speaker_references": ["data:audio/wav;base64,bm90IGF1ZGlv"]},
     "known_speakers"),
])
def test_bad_known_speakers_are_refused_by_name(client, fields, param):
    with pytest.raises(BadRequestError) as refused:
        client.audio.transcriptions.create(model="whisper-1", file=JFK.open("rb"), response_format="diarized_json",
                                           **fields)
    assert refused.value.status_code == 400
    assert refused.value.body["param"] == param


def test_a_job_names_the_known_voice_and_its_rttm_carries_the_file_name(server, voices):
    with httpx.Client(base_url=server.url, timeout=180) as http:
        response = http.post("/v1/jobs", files={"file": ("talk.wav", voices["audio"])},
                             data={"response_format": "rttm", "known_speakers": f"lefty={voices['left']}"})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        deadline = time.monotonic() + 170
        while http.get(f"/v1/jobs/{job_id}").json()["status"] not in ("done", "failed", "cancelled"):
            assert time.monotonic() < deadline, "the job did not finish"
            time.sleep(0.25)
        rttm = http.get(f"/v1/jobs/{job_id}", params={"format": "rttm"})
    assert rttm.status_code == 200, rttm.text
    lines = [line.split() for line in rttm.text.splitlines()]
    assert {f[1] for f in lines} == {"talk"}
    middle = voices["turns"][1]
    assert {f[7] for f in lines if middle[0] <= float(f[3]) + float(f[4]) / 2 <= middle[1]} == {"lefty"}
