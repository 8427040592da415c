"""Helpers for the realtime tests: clips as pcm16 / G.711 bytes, and streaming them through the
official `openai` realtime client while collecting the server's events with their arrival times."""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from amanuensis.audio import decode_audio


def pcm16(path: Path, rate: int = 24000, silence_s: float = 0.0) -> bytes:
    """A clip as little-endian pcm16 at `rate`, with `silence_s` of silence after it."""
    samples = decode_audio(path)
    if rate != 16000:
        samples = resample_poly(samples, rate // 1000, 16)
    samples = np.concatenate([samples, np.zeros(int(silence_s * rate), dtype=np.float32)])
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def session_update(turn_detection: dict | None, fmt: dict | None = None, **transcription: object) -> dict:
    """A GA transcription session.update body."""
    return {"type": "transcription", "audio": {"input": {
        "format": fmt or {"type": "audio/pcm", "rate": 24000},
        "transcription": {"model": "whisper-1", **transcription},
        "turn_detection": turn_detection,
    }}}


@dataclass
class Received:
    """Server events as dicts, each with the monotonic time it arrived."""

    events: list[tuple[float, dict]] = field(default_factory=list)

    def of(self, kind: str) -> list[dict]:
        """Events of one type, in order."""
        return [event for _, event in self.events if event["type"] == kind]

    def times(self, kind: str) -> list[float]:
        """Arrival times of the events of one type."""
        return [at for at, event in self.events if event["type"] == kind]

    def types(self) -> list[str]:
        """Every event type, in order."""
        return [event["type"] for _, event in self.events]

    def completed_texts(self) -> list[str]:
        """The final transcript of every turn."""
        return [e["transcript"] for e in self.of("conversation.item.input_audio_transcription.completed")]


async def send_audio(connection: object, data: bytes, chunk_bytes: int, pace_s: float) -> float:
    """Append `data` in pieces of `chunk_bytes`, one every `pace_s` seconds; returns when the last went."""
    for start in range(0, len(data), chunk_bytes):
        piece = base64.b64encode(data[start : start + chunk_bytes]).decode()
        await connection.input_audio_buffer.append(audio=piece)
        if pace_s:
            await asyncio.sleep(pace_s)
    return time.monotonic()


async def receive_until(connection: object, received: Received, done: object, timeout_s: float = 120.0) -> None:
    """Collect events until `done(received)` is true (fails after `timeout_s`)."""

    async def loop() -> None:
        async for event in connection:
            received.events.append((time.monotonic(), event.to_dict()))
            if done(received):
                return

    await asyncio.wait_for(loop(), timeout_s)
