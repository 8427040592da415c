"""WS /v1/realtime?intent=transcription on the real server, driven by the official `openai` package's
realtime client: live deltas before the clip ends, final texts vs the references, manual commit, G.711,
bad events answered with `error` while the session goes on, the idle close finishing the open turn,
the session limit, API keys (header, query, browser subprotocol) and /metrics."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time

import httpx
import numpy as np
import pytest

from amanuensis.evaluation import read_references, word_error_rate

from .realtime_client import Received, pcm16, receive_until, send_audio, session_update
from .server_fixtures import DATA, JFK, RunningServer, run_server

KEY = "realtime-test-key"
IDLE_S = 4
LJ = DATA / "TTS" / "LJ001-0001.wav"  # 9.7 s of clean read speech
DEV_WER = 0.18  # offline WER of the dev clips streamed (docs/benchmarks.md, Realtime: 16-20 %)
COMPLETED = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"
REFERENCES = read_references(DATA / "transcripts.tsv")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> RunningServer:
    workdir = tmp_path_factory.mktemp("realtime-server")
    with run_server(workdir, "--api-key", KEY, "--max-realtime-sessions", "2",
                    "--realtime-idle-timeout", str(IDLE_S)) as running:
        yield running


def connect(server: RunningServer, api_key: str = KEY, **query: str) -> object:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=server.url + "/v1", api_key=api_key)
    return client.realtime.connect(extra_query={"intent": "transcription", **query})


def early_finals(server: RunningServer) -> dict[str, float]:
    """/metrics: final decodes started at a pause, by outcome (used, dropped)."""
    text = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    return {outcome: float(count) for outcome, count in
            re.findall(r'^amanuensis_realtime_early_finals_total\{outcome="(\w+)"\} (\S+)$', text, re.M)}


def reference(path) -> str:
    return REFERENCES[str(path.resolve())]


def completed_count(n: int):
    return lambda received: len(received.of(COMPLETED)) >= n


def every_turn_completed(sender: asyncio.Task):
    """Done once the audio is all sent and every turn that started has its `.completed`."""
    def done(received: Received) -> bool:
        started = len(received.of("input_audio_buffer.speech_started"))
        return sender.done() and started > 0 and len(received.of(COMPLETED)) >= started
    return done


def lin2ulaw(samples: np.ndarray) -> bytes:
    """G.711 µ-law encoding (the ITU-T formula, written here independently of the server's decoder)."""
    x = samples.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def test_live_deltas_before_the_clip_ends_and_final_text_matches_reference(server):
    """A 9.7 s clip at 1x in 100 ms appends with server VAD: deltas arrive while it plays (never
    retracted: each only adds text), the final texts match the reference within the dev WER, and the
    final decode of the last turn started at the pause that ended it."""
    data = pcm16(LJ, 24000, silence_s=1.5)

    async def scenario() -> tuple[Received, float, float]:
        received = Received()
        async with connect(server) as connection:
            await connection.session.update(session=session_update(
                {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 500, "prefix_padding_ms": 300}))
            started = time.monotonic()
            sender = asyncio.create_task(send_audio(connection, data, 4800, 0.1))
            await receive_until(connection, received, every_turn_completed(sender))
            return received, started, await sender

    before = early_finals(server)
    received, started, last_append = asyncio.run(scenario())
    after = early_finals(server)
    assert received.types()[:2] == ["session.created", "session.updated"], received.types()
    # the last turn's final decode started when the speaker paused, and was the turn's
    assert after["final"] > before.get("final", 0), (before, after)
    speech_end = started + len(pcm16(LJ, 24000)) / 48000
    early = [t for t in received.times(DELTA) if t < speech_end]
    assert len(early) >= 2, (received.types(), speech_end - started)
    final = " ".join(received.completed_texts())
    wer = word_error_rate([reference(LJ)], [final])
    assert wer <= DEV_WER, (wer, final)
    for item in {e["item_id"] for e in received.of(COMPLETED)}:
        deltas = "".join(e["delta"] for e in received.of(DELTA) if e["item_id"] == item)
        done = next(e for e in received.of(COMPLETED) if e["item_id"] == item)
        assert word_error_rate([done["transcript"]], [deltas]) <= 0.35, (deltas, done["transcript"])
        words = done["amanuensis"]["words"]
        assert words and all(0 <= w["start"] <= w["end"] <= last_append - started + 1 for w in words), words
        assert done["usage"]["type"] == "duration" and done["usage"]["seconds"] > 0
    assert received.of("input_audio_buffer.speech_stopped"), received.types()


def test_manual_commit_16k_faster_than_real_time(server):
    """turn_detection null: the client commits; pcm16 at 16 kHz sent as fast as it goes. Committing an
    empty buffer is an error and the session goes on."""

    async def scenario() -> Received:
        received = Received()
        async with connect(server) as connection:
            await connection.session.update(session=session_update(None, {"type": "audio/pcm", "rate": 16000}))
            await connection.input_audio_buffer.commit()
            await send_audio(connection, pcm16(JFK, 16000), 3200, 0.0)
            await connection.input_audio_buffer.commit()
            await receive_until(connection, received, completed_count(1))
        return received

    received = asyncio.run(scenario())
    errors = received.of("error")
    assert errors and errors[0]["error"]["code"] == "input_audio_buffer_commit_empty", errors
    assert "input_audio_buffer.speech_started" not in received.types()
    assert received.types().index("input_audio_buffer.committed") < received.types().index(COMPLETED)
    wer = word_error_rate([reference(JFK)], received.completed_texts())
    assert wer <= DEV_WER, (wer, received.completed_texts())
    assert received.of(COMPLETED)[0]["amanuensis"]["words"][0]["word"].strip()


def test_g711_ulaw_8k(server):
    """G.711 µ-law at 8 kHz (telephony) through the beta transcription_session.update."""
    ulaw = lin2ulaw(np.frombuffer(pcm16(JFK, 8000), dtype="<i2"))

    async def scenario() -> Received:
        received = Received()
        async with connect(server) as connection:
            await connection.send({"type": "transcription_session.update", "session": {
                "input_audio_format": "g711_ulaw", "turn_detection": None}})
            await send_audio(connection, ulaw, 1600, 0.0)
            await connection.input_audio_buffer.commit()
            await receive_until(connection, received, completed_count(1))
        return received

    received = asyncio.run(scenario())
    updated = received.of("transcription_session.updated")
    assert updated and updated[0]["session"]["input_audio_format"] == "g711_ulaw", received.types()
    wer = word_error_rate([reference(JFK)], received.completed_texts())
    assert wer <= DEV_WER, (wer, received.completed_texts())


def test_bad_events_get_errors_naming_the_field_and_the_session_goes_on(server):
    bad = [
        ({"type": "input_audio_buffer.apend", "audio": ""}, "type", "invalid_event_type"),
        ({"type": "response.create"}, "type", "unsupported_event"),
        ({"type": "input_audio_buffer.append", "audio": "not base64!"}, "audio", "invalid_base64"),
        ({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\x01\x02\x03").decode()}, "audio",
         "invalid_audio"),
        ({"type": "input_audio_buffer.append", "audio": "A" * (11 * 1024 * 1024)}, "audio", "append_too_large"),
        ({"type": "session.update", "session": session_update(None, {"type": "audio/pcm", "rate": 44100})},
         "session.audio.input.format.rate", "invalid_value"),
        ({"type": "session.update", "session": session_update({"type": "semantic_vad"})},
         "session.audio.input.turn_detection.type", "invalid_value"),
        ({"type": "session.update", "session": session_update(None, language="de")},
         "session.audio.input.transcription.language", "invalid_value"),
        ({"type": "session.update", "session": session_update(None, model="no-such-model")},
         "session.audio.input.transcription.model", "model_not_found"),
    ]

    async def scenario() -> Received:
        received = Received()
        async with connect(server) as connection:
            await connection.session.update(session=session_update(None))
            for event, _, _ in bad:
                await connection._connection.send(json.dumps({**event, "event_id": "client-1"}))
            await connection._connection.send("{not json")
            await send_audio(connection, pcm16(JFK, 24000), 48000, 0.0)
            await connection.input_audio_buffer.commit()
            await receive_until(connection, received, completed_count(1))
        return received

    received = asyncio.run(scenario())
    errors = [e["error"] for e in received.of("error")]
    assert len(errors) == len(bad) + 1, errors
    for error, (_, param, code) in zip(errors, bad):
        assert (error["param"], error["code"]) == (param, code), error
        assert error["message"] and error["event_id"] == "client-1", error
    assert errors[-1]["code"] == "invalid_json", errors[-1]
    assert len(received.of("session.updated")) == 1  # the bad updates changed nothing
    assert word_error_rate([reference(JFK)], received.completed_texts()) <= DEV_WER


def test_idle_close_mid_turn_still_sends_completed(server):
    """A client that stops sending in the middle of speech: after the idle timeout the open turn is
    decoded, `.completed` sent, then the socket closed with a code and a reason."""
    from websockets.exceptions import ConnectionClosed

    data = pcm16(LJ, 24000)[: 24000 * 2 * 5]  # the first 5 s, ending in speech

    async def scenario() -> tuple[Received, object]:
        received = Received()
        async with connect(server) as connection:
            await connection.session.update(session=session_update({"type": "server_vad"}))
            await send_audio(connection, data, 24000 * 2 // 5, 0.0)
            try:
                await receive_until(connection, received, lambda r: False, timeout_s=IDLE_S + 60)
            except ConnectionClosed as closed:
                return received, closed
        return received, None

    received, closed = asyncio.run(scenario())
    assert received.completed_texts() and received.completed_texts()[0].strip(), received.types()
    assert received.types().index(COMPLETED) < received.types().index("error")
    assert received.of("error")[-1]["error"]["code"] == "idle_timeout"
    assert closed is not None and closed.rcvd.code == 1008 and "idle" in closed.rcvd.reason, closed


def test_session_limit_error_and_close_code(server):
    """Two sessions (the limit) transcribe at once, sharing the engine; a third is refused with an
    `error` and close code 1013, and /metrics shows the open sessions and their lag."""
    from websockets.exceptions import ConnectionClosed

    async def one(received: Received, connection: object) -> None:
        await connection.session.update(session=session_update(None))
        await send_audio(connection, pcm16(JFK, 24000), 9600, 0.05)
        await connection.input_audio_buffer.commit()
        await receive_until(connection, received, completed_count(1))

    async def scenario() -> tuple[list[Received], Received, object, str]:
        results = [Received(), Received()]
        async with connect(server) as a, connect(server) as b:
            await asyncio.sleep(0.3)
            refused, closed = Received(), None
            async with connect(server) as c:
                try:
                    await receive_until(c, refused, lambda r: False, timeout_s=30)
                except ConnectionClosed as exc:
                    closed = exc
            tasks = [asyncio.create_task(one(results[0], a)), asyncio.create_task(one(results[1], b))]
            await asyncio.sleep(1.0)
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"})).text
            await asyncio.gather(*tasks)
        return results, refused, closed, metrics

    before = httpx.get(server.url + "/status", headers={"Authorization": f"Bearer {KEY}"}).json()["batching"]
    results, refused, closed, metrics = asyncio.run(scenario())
    after = httpx.get(server.url + "/status", headers={"Authorization": f"Bearer {KEY}"}).json()["batching"]
    assert after["batches"] > before["batches"], (before, after)  # the decodes went through the batch scheduler
    assert refused.of("error")[0]["error"]["code"] == "session_limit", refused.types()
    assert closed is not None and closed.rcvd.code == 1013, closed
    assert "amanuensis_realtime_sessions_open 2.0" in metrics, metrics
    assert metrics.count('amanuensis_realtime_session_lag_seconds{session="sess_') == 2, metrics
    for received in results:
        assert word_error_rate([reference(JFK)], received.completed_texts()) <= DEV_WER


def test_api_keys_header_query_and_subprotocol(server):
    """A wrong key gets `error` invalid_api_key and close 1008; the key is taken from the Bearer header
    (the openai client), `?api_key=`, or the browser subprotocol openai-insecure-api-key.<key>."""
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed

    async def refused() -> tuple[Received, object]:
        received = Received()
        async with connect(server, api_key="wrong") as connection:
            try:
                await receive_until(connection, received, lambda r: False, timeout_s=30)
            except ConnectionClosed as exc:
                return received, exc
        return received, None

    received, closed = asyncio.run(refused())
    assert received.of("error")[0]["error"]["code"] == "invalid_api_key"
    assert closed is not None and closed.rcvd.code == 1008

    async def first_event(url: str, **kwargs: object) -> tuple[dict, str | None]:
        async with ws_connect(url, **kwargs) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 30)), ws.subprotocol

    base = server.url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
    event, _ = asyncio.run(first_event(f"{base}&api_key={KEY}"))
    assert event["type"] == "session.created", event
    event, protocol = asyncio.run(first_event(base, subprotocols=["realtime", f"openai-insecure-api-key.{KEY}"]))
    assert event["type"] == "session.created" and protocol == "realtime", (event, protocol)
    event, _ = asyncio.run(first_event(base.replace("transcription", "conversation") + f"&api_key={KEY}"))
    assert event["error"]["param"] == "intent", event


def test_sigterm_finishes_the_open_turn_before_closing(tmp_path):
    """On SIGTERM the server finishes every open turn (its `.completed` is sent) and closes the socket
    with 1001, before uvicorn closes what is left with 1012."""
    import signal

    import websockets

    with run_server(tmp_path) as running:
        async def session() -> tuple[list[dict], int | None]:
            url = running.url.replace("http", "ws") + "/v1/realtime?intent=transcription"
            events: list[dict] = []
            async with websockets.connect(url) as ws:
                await ws.send(json.dumps({"type": "session.update", "session": session_update(
                    None, {"type": "audio/pcm", "rate": 16000})}))
                audio = pcm16(JFK, rate=16000)[: 2 * 16000 * 4]  # "And so my fellow Americans", no commit
                for i in range(0, len(audio), 3200):
                    await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                              "audio": base64.b64encode(audio[i : i + 3200]).decode()}))
                while not any(e["type"] == "session.updated" for e in events):
                    events.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
                running.process.send_signal(signal.SIGTERM)
                with contextlib.suppress(websockets.ConnectionClosed):
                    while True:
                        events.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
            return events, ws.close_code

        events, code = asyncio.run(session())
        running.process.wait(timeout=60)
    completed = [e for e in events if e["type"] == COMPLETED]
    assert len(completed) == 1 and "fellow americans" in completed[0]["transcript"].lower(), events
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "server_shutdown"
    assert code == 1001


def test_bench_realtime_replays_clips_at_1x_and_reports_latency_and_wer(server, capsys):
    """`amanuensis bench realtime` against a running server: two streams of two real clips at 1x, each
    with word deltas, `.completed` latencies, and final and offline texts near the references."""
    from amanuensis.bench import realtime

    clips = [str(JFK), str(DATA / "TTS" / "LJ001-0002.wav")]
    code = realtime.main([*clips, "--refs", str(DATA / "transcripts.tsv"), "--url", server.url,
                          "--api-key", KEY, "--streams", "2", "--json"])
    assert code == 0
    run = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert run["streams"] == 2 and run["machine"]["cpus"] >= 1
    *streams, overall = run["reports"]
    assert [r["stream"] for r in streams] == [0, 1] and overall["stream"] == -1
    for report in streams:
        assert report["errors"] == []
        assert report["turns"] >= 1 and report["words"] >= 20
        assert report["words_with_delta"] > 0 and 0 < report["delta_p50_s"] < 10
        assert 0 <= report["completed_p50_s"] < 10 and report["lag_end_s"] < 10
        assert report["wer_final"] < 25 and report["wer_offline"] < 25
    assert overall["words"] == sum(r["words"] for r in streams)
