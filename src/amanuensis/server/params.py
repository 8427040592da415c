"""Form fields → TranscribeOptions, strictly: every parameter is used or refused with a 400 naming it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import DiarizationUnavailableError, OptionsError
from ..formats import FORMATS
from ..pipeline import DEFAULT_TEMPERATURES, TranscribeOptions

OPENAI_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
GRANULARITIES = ("word", "segment")
STREAM_FORMATS = ("json", "text")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


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

    def boolean(self, name: str, default: bool) -> bool:
        """A true/false field."""
        value = self.text(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise OptionsError(f"{name} must be true or false, not {value!r}", name)

    def integer(self, name: str) -> int | None:
        """A whole-number field."""
        value = self.text(name)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise OptionsError(f"{name} must be a whole number, not {value!r}", name) from None

    def number(self, name: str) -> float | None:
        """A finite number field."""
        value = self.text(name)
        if value is None:
            return None
        try:
            number = float(value)
        except ValueError:
            raise OptionsError(f"{name} must be a number, not {value!r}", name) from None
        if not math.isfinite(number):
            raise OptionsError(f"{name} must be a finite number, not {value!r}", name)
        return number

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


def _response_format(form: Form, allowed: tuple[str, ...]) -> str:
    fmt = (form.text("response_format") or "json").lower()
    if fmt not in allowed:
        raise OptionsError(f"unknown response_format {fmt!r}: use one of {', '.join(allowed)}", "response_format")
    return fmt


def _language(form: Form) -> str | None:
    language = form.text("language")
    return language.lower() if language else None


def native_params(form: Form) -> Params:
    """Parameters of POST /transcribe."""
    model = form.text("model")
    fmt = _response_format(form, FORMATS)
    diarize = form.boolean("enable_diarization", False)
    options = TranscribeOptions(
        language=_language(form),
        vad_filter=form.boolean("vad_filter", True),
        word_timestamps=form.boolean("word_timestamps", True),
        diarize=diarize,
        min_speakers=form.integer("min_speakers"),
        max_speakers=form.integer("max_speakers"),
    )
    for name in ("min_speakers", "max_speakers"):
        if getattr(options, name) is not None and not diarize:
            raise OptionsError(f"{name} needs enable_diarization=true", name)
    if diarize:
        from ..diarize import is_available

        if not is_available():
            raise DiarizationUnavailableError(
                "diarization needs the optional extra: pip install 'amanuensis[diarize]'"
            )
    form.refuse_unknown()
    return Params(model, fmt, options)


def openai_params(form: Form, task: str) -> Params:
    """Parameters of POST /v1/audio/transcriptions (task "transcribe") and /translations ("translate")."""
    model = form.text("model")
    fmt = _response_format(form, OPENAI_FORMATS)
    granularities = tuple(dict.fromkeys(g.lower() for g in form.values("timestamp_granularities")))
    for value in granularities:
        if value not in GRANULARITIES:
            raise OptionsError(
                f"timestamp_granularities accepts word and segment, not {value!r}", "timestamp_granularities"
            )
    if granularities and fmt != "verbose_json":
        raise OptionsError("timestamp_granularities needs response_format=verbose_json", "timestamp_granularities")
    stream = form.boolean("stream", False)
    if stream and fmt not in STREAM_FORMATS:
        raise OptionsError(f"stream=true works with response_format json or text, not {fmt}", "stream")
    chunking = form.text("chunking_strategy")
    if chunking is not None and chunking != "auto":
        raise OptionsError("chunking_strategy supports only 'auto' (voice activity detection)", "chunking_strategy")
    temperature = form.number("temperature")
    if temperature is not None and not 0.0 <= temperature <= 1.0:
        raise OptionsError(f"temperature must be between 0 and 1, not {temperature:g}", "temperature")
    options = TranscribeOptions(
        language=_language(form),
        task=task,
        temperature=temperature or DEFAULT_TEMPERATURES,
        initial_prompt=form.text("prompt"),
        vad_filter=True,
        word_timestamps="word" in granularities,
    )
    if stream:
        # Batched decoding publishes a lane's segments only after a whole batch step; window by window
        # (sequential) decoding hands each 30 s window's segments over as soon as it is decoded.
        options.mode = "sequential"
    form.refuse_unknown()
    return Params(model, fmt, options, stream=stream, granularities=granularities)
