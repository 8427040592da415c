"""Form fields → Params, strictly: every field is one of the door's declared options (amanuensis.options)
or one of its answer parameters, or it is refused with a 400 naming it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..errors import OptionsError
from ..formats import FORMATS, SPEAKER_FORMATS, check_format
from ..options import JOBS, OPENAI, TranscribeOptions, exposed, parse_bool

OPENAI_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json", "rttm")
"""OpenAI's response formats and RTTM (tsv is ours: /transcribe and /v1/jobs only)."""
GRANULARITIES = ("word", "segment")
INCLUDES = ("logprobs",)
"""OpenAI's include[] values."""
STREAM_FORMATS = ("json", "text", "diarized_json")


class Form:
    """The text fields of a multipart form; remembers which were read so the rest can be refused."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self.fields = fields
        self.used: set[str] = set()

    def text(self, name: str) -> str | None:
        """The last non-blank value of `name`, stripped (None when absent or blank)."""
        self.used.add(name)
        values = [v.strip() for v in self.fields.get(name, []) if v.strip()]
        return values[-1] if values else None

    def values(self, name: str) -> list[str]:
        """Every non-blank value of `name` and `name[]` (both spellings are accepted)."""
        found: list[str] = []
        for key in (name, f"{name}[]"):
            self.used.add(key)
            found += [v.strip() for v in self.fields.get(key, []) if v.strip()]
        return found

    def refuse_unknown(self) -> None:
        """Raise OptionsError for the first field that nothing read."""
        for name in self.fields:
            if name not in self.used:
                raise OptionsError(f"unknown or unsupported parameter {name!r}", name)


@dataclass
class Params:
    """A parsed request: which model, which answer format, and the transcription options."""

    model: str | None
    response_format: str
    options: TranscribeOptions
    stream: bool = False
    granularities: tuple[str, ...] = ()
    callback_url: str | None = None
    """Jobs only: where the finished job is POSTed (checked by amanuensis.jobs.callbacks)."""


def option_values(form: Form, door: str) -> dict[str, Any]:
    """The declared options of `door` that the form sets, parsed and checked (by option name)."""
    values: dict[str, Any] = {}
    for option in exposed(door):
        if option.kind == "speakers":
            texts = form.values(option.name)
            if door == OPENAI:
                texts += openai_known_speakers(form)
            if texts:
                values[option.name] = option.check(tuple(pair for text in texts for pair in option.parse(text)))
            continue
        text = form.text(option.name)
        if text is not None:
            values[option.name] = option.parse(text)
    return values


def openai_known_speakers(form: Form) -> list[str]:
    """OpenAI's known_speaker_names[] and known_speaker_references[] (data URLs), paired in order, as
    NAME=REFERENCE texts."""
    names, references = form.values("known_speaker_names"), form.values("known_speaker_references")
    if len(names) != len(references):
        raise OptionsError(f"{len(names)} known_speaker_names[] but {len(references)} known_speaker_references[]: "
                           "give one reference clip per name", "known_speaker_references")
    return [f"{name}={reference}" for name, reference in zip(names, references)]


def parse_params(door: str, form: Form, task: str | None = None) -> Params:
    """The parameters of one request at `door` (a name in amanuensis.options.DOORS); `task` is set by
    a route that fixes it (OpenAI's /transcriptions and /translations)."""
    model = form.text("model")
    fmt = check_format((form.text("response_format") or "json").lower(), OPENAI_FORMATS if door == OPENAI else FORMATS)
    values = option_values(form, door)
    if fmt in SPEAKER_FORMATS:
        if values.get("enable_diarization") is False:
            raise OptionsError(f"response_format={fmt} labels speakers: leave enable_diarization on",
                               "enable_diarization")
        values["enable_diarization"] = True
    if task is not None:
        values["task"] = task
    stream, granularities, logprobs = False, (), False
    if door == OPENAI:
        stream, granularities = _openai_answer(form, fmt)
        logprobs = _openai_logprobs(form, fmt)
        values["word_timestamps"] = "word" in granularities or logprobs  # the word alignment scores the tokens
        if logprobs:
            values.setdefault("word_alignment", "attention")  # the words themselves are not in a json answer
    callback_url = form.text("callback_url") if door == JOBS else None
    form.refuse_unknown()
    options = replace(TranscribeOptions.from_door(door, values), logprobs=logprobs)
    return Params(model, fmt, options, stream, granularities, callback_url)


def _openai_logprobs(form: Form, fmt: str) -> bool:
    """OpenAI's include[]: only logprobs, and only with response_format=json (as OpenAI allows)."""
    included = tuple(dict.fromkeys(value.lower() for value in form.values("include")))
    for value in included:
        if value not in INCLUDES:
            raise OptionsError(f"include accepts {', '.join(INCLUDES)}, not {value!r}", "include")
    if included and fmt != "json":
        raise OptionsError(f"include[]=logprobs needs response_format=json, not {fmt}", "include")
    return "logprobs" in included


def _openai_answer(form: Form, fmt: str) -> tuple[bool, tuple[str, ...]]:
    """OpenAI's answer parameters: stream, timestamp_granularities[], chunking_strategy."""
    granularities = tuple(dict.fromkeys(g.lower() for g in form.values("timestamp_granularities")))
    for value in granularities:
        if value not in GRANULARITIES:
            raise OptionsError(
                f"timestamp_granularities accepts word and segment, not {value!r}", "timestamp_granularities"
            )
    if granularities and fmt != "verbose_json":
        raise OptionsError("timestamp_granularities needs response_format=verbose_json", "timestamp_granularities")
    stream_text = form.text("stream")
    stream = stream_text is not None and parse_bool("stream", stream_text)
    if stream and fmt not in STREAM_FORMATS:
        raise OptionsError(f"stream=true works with response_format {', '.join(STREAM_FORMATS)}, not {fmt}", "stream")
    chunking = form.text("chunking_strategy")
    if chunking is not None and chunking != "auto":
        raise OptionsError("chunking_strategy supports only 'auto' (voice activity detection)", "chunking_strategy")
    return stream, granularities
