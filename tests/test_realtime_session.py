"""A realtime session driven in-process through a stand-in socket: its decodes (the open turn's and the
final one) go to the model with the live VAD's scores, so the recognizer's VAD never runs on them."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from dataclasses import dataclass

import numpy as np
from starlette.websockets import WebSocketState

from amanuensis.audio import decode_audio
from amanuensis.pipeline import get_transcriber

from .server_fixtures import JFK

COMPLETED = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"


class StandInSocket:
    """What the session uses of a WebSocket: messages in from a queue, events out into a list."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[dict] = asyncio.Queue()
        self.sent: list[dict] = []
        self.client_state = WebSocketState.CONNECTED

    async def receive(self) -> dict:
        return await self.incoming.get()

    async def send_json(self, event: dict) -> None:
        self.sent.append(event)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.client_state = WebSocketState.DISCONNECTED

    def kinds(self) -> list[str]:
        return [event["type"] for event in self.sent]


@dataclass
class _Info:
    name: str


class _Pool:
    """The default model for every session."""

    def resolve(self, name: str | None) -> _Info:
        return _Info("tiny.en")

    def get(self, info: _Info, slot: int, live: bool) -> object:
        return get_transcriber()

    def hold(self, owner: str, info: _Info, slot: int) -> object:
        return self.get(info, slot, live=True)

    def release(self, owner: str) -> None:
        pass


async def _open_session() -> tuple[StandInSocket, asyncio.Task, object]:
    from amanuensis.server.realtime.config import SessionConfig
    from amanuensis.server.realtime.registry import SessionRegistry
    from amanuensis.server.realtime.session import RealtimeSession

    socket, registry = StandInSocket(), SessionRegistry(1)
    registry.try_open("sess_test")
    session = RealtimeSession(socket, session_id="sess_test", registry=registry, pool=_Pool(), slot=0,
                              config=SessionConfig(), idle_timeout=60, send_timeout=10)
    return socket, asyncio.create_task(session.run()), registry


async def _send(socket: StandInSocket, event: dict) -> None:
    await socket.incoming.put({"type": "websocket.receive", "text": json.dumps(event)})


async def _append(socket: StandInSocket, audio: np.ndarray) -> None:
    """16 kHz PCM in 100 ms appends, 10 ms apart (10x real time)."""
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    for start in range(0, len(pcm), 3200):
        await _send(socket, {"type": "input_audio_buffer.append",
                             "audio": base64.b64encode(pcm[start : start + 3200]).decode()})
        await asyncio.sleep(0.01)


async def _close_session(socket: StandInSocket, running: asyncio.Task, registry: object) -> None:
    """Wait until every turn that started has its `.completed`, then hang up."""
    for _ in range(600):
        if socket.kinds().count(COMPLETED) >= socket.kinds().count("input_audio_buffer.speech_started"):
            break
        await asyncio.sleep(0.1)
    await socket.incoming.put({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(running, 30)
    registry.shutdown()


def test_a_live_turn_is_decoded_without_running_the_vad_again(monkeypatch):
    """JFK at 10x real time with server VAD: deltas while it plays and the turn's `.completed`, and
    the recognizer's VAD is never called (the live VAD's scores are handed to every decode)."""
    import amanuensis.asr.batched as batched

    calls: list[int] = []

    def no_vad(samples, *args, **kwargs):
        calls.append(len(samples))
        raise AssertionError("the recognizer's VAD ran on a realtime window")

    monkeypatch.setattr(batched, "detect_speech", no_vad)
    audio = np.concatenate([np.zeros(16000, np.float32), decode_audio(JFK), np.zeros(24000, np.float32)])

    async def scenario() -> StandInSocket:
        socket, running, registry = await _open_session()
        await _send(socket, {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 16000}}}}})
        await _append(socket, audio)
        await _close_session(socket, running, registry)
        return socket

    socket = asyncio.run(scenario())
    kinds = socket.kinds()
    assert calls == [], calls
    assert "input_audio_buffer.speech_started" in kinds and DELTA in kinds, kinds
    completed = [event for event in socket.sent if event["type"] == COMPLETED]
    text = re.sub(r"[^\w' ]", "", " ".join(event["transcript"] for event in completed).lower())
    assert "fellow americans" in text and "ask not what your country can do for you" in text, text
    assert all(event["amanuensis"]["words"] for event in completed), completed


def test_turn_detection_changed_mid_stream_keeps_stream_time():
    """Two seconds of silence, new server VAD settings, then JFK: the turn starts where JFK does in the
    stream (a detector restarted at zero would put it two seconds early and cut the wrong audio)."""
    silence, jfk = np.zeros(32000, np.float32), decode_audio(JFK)

    async def scenario() -> StandInSocket:
        socket, running, registry = await _open_session()
        await _send(socket, {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 16000}}}}})
        await _append(socket, silence)
        await _send(socket, {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "turn_detection": {"type": "server_vad", "threshold": 0.4, "silence_duration_ms": 700}}}}})
        await _append(socket, np.concatenate([jfk, np.zeros(24000, np.float32)]))
        await _close_session(socket, running, registry)
        return socket

    socket = asyncio.run(scenario())
    started = [event for event in socket.sent if event["type"] == "input_audio_buffer.speech_started"]
    assert started and started[0]["audio_start_ms"] >= 2000, started
    completed = " ".join(event["transcript"] for event in socket.sent if event["type"] == COMPLETED).lower()
    assert "fellow americans" in completed, completed
