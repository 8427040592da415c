"""OpenAI Realtime transcription events: the client events we accept (pydantic models, validated
into `ProtocolError`s that name the field) and the server events we send (plain dicts).

GA names throughout; the beta `transcription_session.update` is accepted and answered with
`transcription_session.updated`. Fields of OpenAI's schema that have no meaning here
(`noise_reduction`, `include`, `delay`, `keywords`, …) are accepted and ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...transcript import Transcript

MAX_APPEND_BASE64 = 10 * 1024 * 1024
"""Longest `audio` string one input_audio_buffer.append may carry (about 7.5 MiB of audio); a longer one
gets `append_too_large` on `audio` and the session goes on."""
SHOWN_TYPE_CHARS = 64
"""An unknown event type is quoted in the error up to this many characters (a message may be 16 MiB)."""
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Largest WebSocket message the server reads (uvicorn's `ws_max_size`, transport.py). Between
MAX_APPEND_BASE64 and this an append gets `append_too_large` and the session goes on; past this the
message is not read: the same `error`, then close code 1009."""

CONVERSATION_EVENTS = {
    "conversation.item.create", "conversation.item.delete", "conversation.item.retrieve",
    "conversation.item.truncate", "response.create", "response.cancel", "output_audio_buffer.clear",
}


class ProtocolError(Exception):
    """A client event we cannot honour; becomes an `error` event (the session goes on)."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value",
                 event_id: str | None = None, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.message, self.param, self.code, self.event_id, self.kind = message, param, code, event_id, kind


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AudioFormat(_Model):
    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"] = "audio/pcm"
    rate: Literal[24000, 16000, 8000] | None = None


class Transcription(_Model):
    model: str | None = None
    language: str | None = Field(None, max_length=16)
    prompt: str | None = Field(None, max_length=2000)
    hotwords: str | None = Field(None, max_length=2000)


class ServerVad(_Model):
    type: Literal["server_vad"]
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    prefix_padding_ms: int | None = Field(None, ge=0, le=5000)
    silence_duration_ms: int | None = Field(None, ge=100, le=10000)


class AudioInput(_Model):
    format: AudioFormat | None = None
    transcription: Transcription | None = None
    turn_detection: ServerVad | None = None


class SessionAudio(_Model):
    input: AudioInput | None = None


class TranscriptionSession(_Model):
    type: Literal["transcription"]
    audio: SessionAudio | None = None


class SessionUpdate(_Model):
    type: Literal["session.update"]
    event_id: str | None = None
    session: TranscriptionSession


class BetaSession(_Model):
    input_audio_format: Literal["pcm16", "g711_ulaw", "g711_alaw"] | None = None
    input_audio_transcription: Transcription | None = None
    turn_detection: ServerVad | None = None


class BetaSessionUpdate(_Model):
    type: Literal["transcription_session.update"]
    event_id: str | None = None
    session: BetaSession


class Append(_Model):
    type: Literal["input_audio_buffer.append"]
    event_id: str | None = None
    audio: str = Field(max_length=MAX_APPEND_BASE64)


class BufferEvent(_Model):
    type: Literal["input_audio_buffer.commit", "input_audio_buffer.clear"]
    event_id: str | None = None


ClientEvent = SessionUpdate | BetaSessionUpdate | Append | BufferEvent
_MODELS: dict[str, type[BaseModel]] = {
    "session.update": SessionUpdate,
    "transcription_session.update": BetaSessionUpdate,
    "input_audio_buffer.append": Append,
    "input_audio_buffer.commit": BufferEvent,
    "input_audio_buffer.clear": BufferEvent,
}
BETA_FORMATS = {"pcm16": ("audio/pcm", 24000), "g711_ulaw": ("audio/pcmu", 8000), "g711_alaw": ("audio/pcma", 8000)}


def parse_event(text: str | bytes) -> ClientEvent:
    """One client message → its event model (raises ProtocolError naming the field)."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"the message is not JSON: {exc}", None, "invalid_json") from exc
    if not isinstance(data, dict):
        raise ProtocolError("an event must be a JSON object", None, "invalid_event")
    event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("the event has no `type`", "type", "missing_required_parameter", event_id)
    model = _MODELS.get(kind)
    if model is None:
        if kind in CONVERSATION_EVENTS:
            raise ProtocolError(f"{kind} is a conversation event; this server runs transcription sessions only",
                                "type", "unsupported_event", event_id)
        shown = kind if len(kind) <= SHOWN_TYPE_CHARS else kind[:SHOWN_TYPE_CHARS] + "…"
        raise ProtocolError(f"unknown event type {shown!r}", "type", "invalid_event_type", event_id)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(part) for part in error["loc"]) or None
        code = "append_too_large" if param == "audio" and error["type"] == "string_too_long" else "invalid_value"
        raise ProtocolError(f"{param}: {error['msg']}", param, code, event_id) from exc


def decode_base64(event: Append) -> bytes:
    """The audio bytes of an append (raises ProtocolError naming `audio`)."""
    try:
        return base64.b64decode(event.audio, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"audio is not valid base64: {exc}", "audio", "invalid_base64", event.event_id) from exc


def new_id(prefix: str) -> str:
    """An id like OpenAI's (`item_…`, `event_…`, `sess_…`)."""
    return f"{prefix}_{uuid.uuid4().hex[:22]}"


def server_event(kind: str, **fields: Any) -> dict:
    """A server event: `type`, a fresh `event_id`, then the fields."""
    return {"type": kind, "event_id": new_id("event"), **fields}


def error_event(error: ProtocolError) -> dict:
    """The `error` event for `error`."""
    return server_event("error", error={"type": error.kind, "code": error.code, "message": error.message,
                                        "param": error.param, "event_id": error.event_id})


def delta_event(item_id: str | None, text: str) -> dict:
    """`conversation.item.input_audio_transcription.delta`: words added to a turn's text."""
    return server_event("conversation.item.input_audio_transcription.delta", item_id=item_id, content_index=0,
                        delta=text)


def completed_event(item_id: str, transcript: Transcript, start_s: float, seconds: float, model: str) -> dict:
    """`conversation.item.input_audio_transcription.completed` for the final transcript of a turn that
    starts `start_s` into the session and lasts `seconds`, with word times on the session's clock in the
    `amanuensis` extension field."""
    start_ms, end_ms = int(start_s * 1000 + 1e-6), int((start_s + seconds) * 1000 + 1e-6)  # as _ms() would
    words = [{"word": w.word, "start": round(w.start + start_s, 3), "end": round(w.end + start_s, 3),
              "probability": w.probability}
             for segment in transcript.segments for w in (segment.words or [])]
    return server_event(
        "conversation.item.input_audio_transcription.completed", item_id=item_id, content_index=0,
        transcript=transcript.text, usage={"type": "duration", "seconds": round(seconds, 3)},
        amanuensis={"words": words, "audio_start_ms": start_ms, "audio_end_ms": end_ms,
                    "language": transcript.language, "model": model})
