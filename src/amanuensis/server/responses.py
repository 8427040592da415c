"""Answer bodies: the native /transcribe JSON, OpenAI's shapes, and server-sent events."""

from __future__ import annotations

import json

from fastapi.responses import JSONResponse, Response

from ..formats import diarized_segment_json, media_type, render, segment_json
from ..subtitles import SubtitleStyle
from ..transcript import TokenLogprob, Transcript
from .service import JobResult


def native_json(result: JobResult, job_id: str) -> dict:
    """The /transcribe JSON answer."""
    transcript = result.transcript
    data: dict = {
        "text": transcript.text,
        "language": transcript.language,
        "language_probability": round(transcript.language_probability, 4),
        "duration": round(transcript.duration, 3),
        "segments": [segment_json(s) for s in transcript.segments],
        "processing_time": round(result.processing_time, 4),
        "queue_time": round(result.queue_time, 4),
        "realtime_factor": result.realtime_factor,
        "frontend": result.frontend,
        "model": transcript.model,
        "job_id": job_id,
    }
    if transcript.speakers:
        data["speakers"] = transcript.speakers
    return data


def native_response(result: JobResult, fmt: str, job_id: str, style: SubtitleStyle) -> Response:
    """The /transcribe answer in `fmt` (subtitles to `style`)."""
    if fmt == "json":
        return JSONResponse(native_json(result, job_id))
    return Response(render(result.transcript, fmt, style), media_type=media_type(fmt))


def _usage(transcript: Transcript) -> dict:
    return {"type": "duration", "seconds": round(transcript.duration, 3)}


def logprobs_json(logprobs: list[TokenLogprob] | None) -> list[dict]:
    """OpenAI's `logprobs` list: token, logprob, bytes."""
    return [t.to_openai() for t in logprobs or []]


def openai_response(transcript: Transcript, fmt: str, granularities: tuple[str, ...],
                    style: SubtitleStyle, logprobs: bool = False) -> Response:
    """OpenAI's answer for `fmt`; json carries the tokens' log-probabilities with `logprobs`; verbose_json
    keeps segments and words as the granularities ask, subtitles follow `style`."""
    if fmt == "json":
        data: dict = {"text": transcript.text}
        if logprobs:
            data["logprobs"] = logprobs_json(transcript.logprobs)
        return JSONResponse({**data, "usage": _usage(transcript)})
    if fmt == "diarized_json":
        return JSONResponse({**json.loads(render(transcript, fmt)), "usage": _usage(transcript)})
    if fmt != "verbose_json":
        return Response(render(transcript, fmt, style), media_type=media_type(fmt))
    data = json.loads(render(transcript, "verbose_json"))
    wanted = granularities or ("segment",)
    if "segment" not in wanted:
        data.pop("segments", None)
    else:
        for segment in data.get("segments", []):
            segment.pop("words", None)
    if "word" not in wanted:
        data.pop("words", None)
    data["usage"] = _usage(transcript)
    return JSONResponse(data)


def sse(event: dict) -> bytes:
    """One server-sent event carrying `event` as JSON."""
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


def delta_event(text: str, logprobs: list[TokenLogprob] | None = None) -> bytes:
    """OpenAI's transcript.text.delta event (with its tokens' log-probabilities when asked for)."""
    return sse({"type": "transcript.text.delta", "delta": text,
                "logprobs": logprobs_json(logprobs) if logprobs is not None else None})


def segment_events(transcript: Transcript) -> list[bytes]:
    """OpenAI's transcript.text.segment events: one per speaker-labelled segment (diarized_json)."""
    return [sse(diarized_segment_json(s)) for s in transcript.segments if s.text.strip()]


def done_event(transcript: Transcript, logprobs: bool = False) -> bytes:
    """OpenAI's transcript.text.done event with the whole text (and every token's log-probability)."""
    return sse({"type": "transcript.text.done", "text": transcript.text,
                "logprobs": logprobs_json(transcript.logprobs) if logprobs else None})
