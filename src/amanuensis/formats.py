"""Writers for every output format: json, verbose_json, text, srt, vtt (cues in amanuensis.subtitles), tsv,
diarized_json, rttm."""

from __future__ import annotations

import json

from .errors import OptionsError
from .subtitles import SubtitleStyle, to_srt, to_vtt
from .transcript import Segment, Transcript, Word

FORMATS = ("json", "verbose_json", "text", "srt", "vtt", "tsv", "diarized_json", "rttm")
SPEAKER_FORMATS = ("diarized_json", "rttm")
"""Formats that are about speakers: asking for one turns diarization on."""
MEDIA_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
    "diarized_json": "application/json",
    "rttm": "text/plain; charset=utf-8",
}
EXTENSIONS = {"json": "json", "verbose_json": "json", "text": "txt", "srt": "srt", "vtt": "vtt", "tsv": "tsv",
              "diarized_json": "diarized.json", "rttm": "rttm"}
RTTM_FILE_ID = "audio"
"""The file id of RTTM lines when the caller names no recording."""
SUBTITLES = ("srt", "vtt")
"""The formats written to a SubtitleStyle (amanuensis.subtitles)."""


def check_format(fmt: str, allowed: tuple[str, ...] = FORMATS, param: str = "response_format") -> str:
    """Return `fmt` if it is one of `allowed`, else raise OptionsError naming `param`."""
    if fmt not in allowed:
        raise OptionsError(f"unknown {param} {fmt!r}: use one of {', '.join(allowed)}", param)
    return fmt


def media_type(fmt: str) -> str:
    """The HTTP Content-Type of a format."""
    return MEDIA_TYPES[check_format(fmt)]


def render(transcript: Transcript, fmt: str, style: SubtitleStyle | None = None, name: str | None = None) -> str:
    """Render a transcript in `fmt` (one of FORMATS); subtitles to `style` (default: the declared one);
    `name` is the recording's id where a format carries one (RTTM)."""
    if check_format(fmt) in SUBTITLES:
        return _WRITERS[fmt](transcript, style)
    if fmt == "rttm":
        return to_rttm(transcript, name or RTTM_FILE_ID)
    return _WRITERS[fmt](transcript)


def segment_json(segment: Segment, verbose: bool = False) -> dict:
    """A segment as JSON: id, times, stripped text, speaker and words where present; `verbose` adds
    OpenAI's decoder fields (seek, tokens, temperature, log-probability, ratios, language)."""
    data: dict = {"id": segment.id, "start": segment.start, "end": segment.end, "text": segment.text.strip()}
    if verbose:
        data = {
            "id": segment.id,
            "seek": int(segment.start * 100),
            "start": segment.start,
            "end": segment.end,
            "text": segment.text,
            "tokens": segment.tokens,
            "temperature": segment.temperature,
            "avg_logprob": segment.avg_logprob,
            "compression_ratio": segment.compression_ratio,
            "no_speech_prob": segment.no_speech_prob,
        }
    if segment.speaker is not None:
        data["speaker"] = segment.speaker
    if segment.overlap:
        data["overlap"] = True
    if segment.language is not None and verbose:
        data["language"] = segment.language
    if segment.words is not None:
        data["words"] = [word_json(w) for w in segment.words]
    return data


def word_json(word: Word) -> dict:
    """A word as JSON: text, times, probability, and speaker when labelled."""
    data = {"word": word.word, "start": word.start, "end": word.end, "probability": word.probability}
    if word.speaker is not None:
        data["speaker"] = word.speaker
    if word.overlap:
        data["overlap"] = True
    return data


def to_json(transcript: Transcript) -> str:
    """Text, language, duration and segments (with words and speakers where present)."""
    data = {
        "text": transcript.text,
        "language": transcript.language,
        "duration": round(transcript.duration, 3),
        "segments": [segment_json(s, verbose=False) for s in transcript.segments],
    }
    if transcript.speakers:
        data["speakers"] = transcript.speakers
    return json.dumps(data, ensure_ascii=False)


def to_verbose_json(transcript: Transcript) -> str:
    """OpenAI's verbose_json shape: task, language, duration, text, segments, words."""
    data: dict = {
        "task": transcript.task,
        "language": transcript.language,
        "duration": round(transcript.duration, 3),
        "text": transcript.text,
        "segments": [segment_json(s, verbose=True) for s in transcript.segments],
    }
    words = [w for s in transcript.segments for w in (s.words or [])]
    if any(s.words is not None for s in transcript.segments):
        data["words"] = [word_json(w) for w in words]
    if transcript.speakers:
        data["speakers"] = transcript.speakers
    return json.dumps(data, ensure_ascii=False)


def to_text(transcript: Transcript) -> str:
    """Plain text; when diarized, one paragraph per speaker turn prefixed with its label."""
    if not transcript.speakers:
        return transcript.text.strip() + "\n"
    lines: list[str] = []
    current: str | None = None
    for segment in transcript.segments:
        text = segment.text.strip()
        if not text:
            continue
        if segment.speaker != current or not lines:
            current = segment.speaker
            lines.append(f"[{current}] {text}" if current else text)
        else:
            lines[-1] += " " + text
    return "\n".join(lines) + "\n"


def to_tsv(transcript: Transcript) -> str:
    """Whisper's TSV: start and end in integer milliseconds, text; a speaker column when diarized."""
    diarized = bool(transcript.speakers)
    rows = ["start\tend\ttext" + ("\tspeaker" if diarized else "")]
    for segment in transcript.segments:
        text = " ".join(segment.text.split()).replace("\t", " ")
        row = f"{round(segment.start * 1000)}\t{round(segment.end * 1000)}\t{text}"
        rows.append(row + (f"\t{segment.speaker or ''}" if diarized else ""))
    return "\n".join(rows) + "\n"


def diarized_segment_json(segment: Segment) -> dict:
    """A segment in OpenAI's diarized shape (`transcript.text.segment`): id, times, text, speaker."""
    return {"type": "transcript.text.segment", "id": f"seg_{segment.id}", "start": segment.start,
            "end": segment.end, "text": segment.text.strip(), "speaker": segment.speaker or "",
            **({"overlap": True} if segment.overlap else {})}


def to_diarized_json(transcript: Transcript) -> str:
    """OpenAI's diarized_json: task, duration, text and speaker-labelled segments."""
    data = {
        "task": "transcribe",
        "duration": round(transcript.duration, 3),
        "text": transcript.text,
        "segments": [diarized_segment_json(s) for s in transcript.segments if s.text.strip()],
    }
    return json.dumps(data, ensure_ascii=False)


def to_rttm(transcript: Transcript, name: str = RTTM_FILE_ID) -> str:
    """NIST RTTM: a SPEAKER line per segment (file id `name`, channel 1, onset, duration, speaker)."""
    file_id = "_".join(name.split()) or RTTM_FILE_ID
    lines = [
        f"SPEAKER {file_id} 1 {segment.start:.3f} {segment.end - segment.start:.3f} <NA> <NA> "
        f"{'_'.join((segment.speaker or 'SPEAKER_00').split())} <NA> <NA>"
        for segment in transcript.segments
        if segment.end > segment.start and segment.text.strip()
    ]
    return "".join(line + "\n" for line in lines)


_WRITERS = {
    "json": to_json,
    "verbose_json": to_verbose_json,
    "text": to_text,
    "srt": to_srt,
    "vtt": to_vtt,
    "tsv": to_tsv,
    "diarized_json": to_diarized_json,
}
