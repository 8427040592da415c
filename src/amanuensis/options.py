"""Every transcription option, declared once: name, type, default, bounds or choices, help, doors.

The doors (the `transcribe` command, POST /transcribe, the OpenAI routes, /v1/jobs and `jobs submit`)
build their flags and form parsing from OPTIONS, so an option has one default and one check
everywhere. Values are checked by `Option.parse` (text from a door) and `Option.check` (any value,
also for library callers); checks that need the model are in `TranscribeOptions.validate`.
"""

from __future__ import annotations

import binascii
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .asr.decoding import DecodeSettings
from .asr.vad import VadOptions
from .errors import OptionsError
from .subtitles import SubtitleStyle

if TYPE_CHECKING:
    from .models import ModelInfo

TASKS = ("transcribe", "translate")
MODES = ("batched", "sequential")
WORD_ALIGNMENTS = ("acoustic", "attention")
DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
"""Whisper's fallback schedule: decode at 0, and again hotter while the result fails its checks."""

CLI = "cli"
NATIVE = "transcribe"
OPENAI = "openai"
JOBS = "jobs"
REALTIME = "realtime"
FILE_DOORS = (CLI, NATIVE, OPENAI, JOBS)
"""The doors that take files: `amanuensis transcribe`; POST /transcribe; POST /v1/audio/transcriptions
and /translations; POST /v1/jobs and `amanuensis jobs submit` (a client of /v1/jobs, so the same options)."""
DOORS = (*FILE_DOORS, REALTIME)
"""Every door: the file doors and WS /v1/realtime (a session's `audio.input.transcription`)."""
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Option:
    """One transcription option as every door sees it."""

    name: str
    """The form field, the error `param` and (with dashes) the command-line flag."""
    kind: str
    """bool, int, float, str, choice, temperature or speakers (NAME=REFERENCE pairs, one per value)."""
    default: Any
    help: str
    doors: tuple[str, ...] = FILE_DOORS
    attribute: str = ""
    """The TranscribeOptions field (default: `name`)."""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    flag: str = ""
    """The command-line flag (default: --name-with-dashes)."""
    door_defaults: tuple[tuple[str, Any], ...] = ()
    """Doors whose own protocol fixes another default (only OpenAI's timestamp_granularities)."""
    lowercase: bool = False
    """Text values are case-insensitive codes (language): taken in lower case."""

    @property
    def field(self) -> str:
        """The TranscribeOptions attribute this option sets."""
        return self.attribute or self.name

    @property
    def cli_flag(self) -> str:
        """The command-line flag."""
        return self.flag or "--" + self.name.replace("_", "-")

    def default_on(self, door: str) -> Any:
        """The default a door applies when the option is not given."""
        return dict(self.door_defaults).get(door, self.default)

    def parse(self, text: str) -> Any:
        """Turn a door's text into a checked value; raises OptionsError naming the option."""
        text = text.strip()
        if self.kind == "bool":
            return parse_bool(self.name, text)
        if self.kind == "int":
            try:
                value: Any = int(text)
            except ValueError:
                raise OptionsError(f"{self.name} must be a whole number, not {text!r}", self.name) from None
        elif self.kind == "float":
            try:
                value = float(text)
            except ValueError:
                raise OptionsError(f"{self.name} must be a number, not {text!r}", self.name) from None
        elif self.kind == "temperature":
            value = _temperatures(self.name, text)
        elif self.kind == "choice":
            value = text.lower()
        elif self.kind == "speakers":
            value = (known_speaker(self.name, text),)
        else:
            value = text.lower() if self.lowercase else text
        return self.check(value)

    def check(self, value: Any) -> Any:
        """Return `value` if it is within this option's choices or bounds; raise OptionsError otherwise."""
        if value is None:
            return value
        if self.choices and value not in self.choices:
            raise OptionsError(f"{self.name} must be one of {', '.join(self.choices)}, not {value!r}", self.name)
        if self.kind in ("int", "float"):
            low = -math.inf if self.minimum is None else self.minimum
            high = math.inf if self.maximum is None else self.maximum
            if not low <= value <= high:  # False for NaN too
                bounds = f"between {self.minimum} and {self.maximum}" if self.maximum else f"at least {self.minimum}"
                raise OptionsError(f"{self.name} must be {bounds}, not {value}", self.name)
        if self.kind == "speakers":
            names = [name for name, _ in value]
            if len(names) > MAX_KNOWN_SPEAKERS:
                raise OptionsError(f"{self.name}: at most {MAX_KNOWN_SPEAKERS} known speakers", self.name)
            if len(set(names)) != len(names):
                raise OptionsError(f"{self.name}: each known speaker needs a different name", self.name)
        if self.kind == "temperature":
            temps = temperature_schedule(value)
            if not temps or any(not (math.isfinite(t) and 0.0 <= t <= 1.0) for t in temps):
                raise OptionsError(f"{self.name} must be between 0 and 1, not {value!r}", self.name)
        return value


MAX_KNOWN_SPEAKERS = 4
"""OpenAI's limit on known_speaker_names[]."""
MAX_REFERENCE_BYTES = 2 * 1024 * 1024
"""A reference clip is a few seconds of speech (2 MiB: a minute of 16 kHz 16-bit WAV); more is refused."""


def known_speaker(option: str, text: str) -> tuple[str, str]:
    """`NAME=data:…;base64,…` → (name, data URL), the URL checked as base64 (its audio is decoded when
    used); raises OptionsError naming `option`."""
    name, sep, reference = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise OptionsError(f"{option} takes NAME=REFERENCE, not {text[:40]!r}", option)
    header, comma, payload = reference.strip().partition(",")
    if not (header.startswith("data:") and header.endswith(";base64") and comma):
        raise OptionsError(f"{option}: the reference of {name!r} must be a data URL (data:audio/…;base64,…)", option)
    if len(payload) * 3 // 4 > MAX_REFERENCE_BYTES:
        raise OptionsError(f"{option}: the reference of {name!r} is over {MAX_REFERENCE_BYTES >> 20} MiB", option)
    try:
        binascii.a2b_base64(payload.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise OptionsError(f"{option}: the reference of {name!r} is not valid base64", option) from None
    return name, reference.strip()


def parse_bool(name: str, text: str) -> bool:
    """true/false, yes/no, on/off or 1/0; raises OptionsError naming `name` otherwise."""
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise OptionsError(f"{name} must be true or false, not {text!r}", name)


def _temperatures(name: str, text: str) -> float | tuple[float, ...]:
    """A door's temperature, by OpenAI's rule: 0 means Whisper's fallback schedule from 0, a number
    above 0 that temperature alone; a comma-separated list is the schedule itself."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise OptionsError(f"{name} must be a number or a comma-separated list, not {text!r}", name) from None
    if len(values) > 1:
        return values
    return DEFAULT_TEMPERATURES if values[0] == 0 else values[0]


def temperature_schedule(value: float | Sequence[float]) -> tuple[float, ...]:
    """The temperatures to try in order: one number alone, or a sequence as given."""
    if isinstance(value, (int, float)):
        return (float(value),)
    return tuple(float(t) for t in value)


_SPEAKER_DOORS = (CLI, NATIVE, JOBS)
_STYLE = SubtitleStyle()
_VAD = VadOptions()

OPTIONS: tuple[Option, ...] = (
    Option("language", "str", None, "language code (en, de, …); detected when omitted", lowercase=True,
           doors=(*FILE_DOORS, REALTIME)),
    Option("task", "choice", "transcribe", "transcribe, or translate into English (multilingual models); "
           "the OpenAI routes take it from the path", choices=TASKS, doors=(CLI, NATIVE, JOBS)),
    Option("prompt", "str", None, "initial prompt: vocabulary, names, spelling, style", attribute="initial_prompt",
           doors=(*FILE_DOORS, REALTIME)),
    Option("hotwords", "str", None, "names and terms the decoder should prefer (they lead every window's "
           "prompt, as faster-whisper's hotwords)", doors=(*FILE_DOORS, REALTIME)),
    Option("temperature", "temperature", DEFAULT_TEMPERATURES,
           "sampling temperature 0-1: 0 decodes greedily and falls back to higher temperatures where a result "
           "fails Whisper's checks; above 0, that temperature alone; or a comma-separated schedule"),
    Option("beam_size", "int", 5, "beams searched at temperature 0 (1 = greedy; a server-side cost, so "
           "not a per-request option over HTTP)", doors=(CLI,), minimum=1, maximum=20),
    Option("vad_filter", "bool", True, "skip non-speech found by voice activity detection (Silero VAD)"),
    Option("vad_threshold", "float", None, "speech probability (0.01-0.99) from which the VAD hears speech "
           f"(unset: {_VAD.threshold}); lower keeps quieter speech, higher drops more noise",
           minimum=0.01, maximum=0.99),
    Option("vad_min_silence_ms", "int", None, "a pause this long (ms) ends a stretch of speech "
           f"(unset: {_VAD.min_silence_ms})", minimum=0, maximum=10_000),
    Option("vad_speech_pad_ms", "int", None, f"audio kept (ms) each side of speech (unset: {_VAD.speech_pad_ms})",
           minimum=0, maximum=2_000),
    Option("word_timestamps", "bool", True, "time every word (OpenAI routes: timestamp_granularities[]=word, "
           "off unless asked)", doors=(CLI, NATIVE, JOBS), door_defaults=((OPENAI, False),)),
    Option("word_alignment", "choice", "acoustic", "how English words are timed: acoustic (each word's phones "
           "fitted to the audio, 10 ms steps) or attention (the model's cross-attention, 20 ms steps, cheaper); "
           "other languages and translations use attention", choices=WORD_ALIGNMENTS),
    Option("logprobs", "bool", False, "give each segment its text tokens' log-probabilities (needs "
           "word_timestamps; library only: the OpenAI routes take include[]=logprobs)", doors=()),
    Option("multilingual", "bool", False, "detect the language of every window (multilingual models)"),
    Option("enable_diarization", "bool", False, "label speakers (needs the diarize extra)", attribute="diarize",
           flag="--diarize", doors=_SPEAKER_DOORS),
    Option("min_speakers", "int", None, "with diarization: at least this many speakers", doors=_SPEAKER_DOORS,
           minimum=1),
    Option("max_speakers", "int", None, "with diarization: at most this many speakers", doors=_SPEAKER_DOORS,
           minimum=1),
    Option("known_speakers", "speakers", (), "with diarization: a known voice gets its name — NAME=clip, a "
           "few seconds of that speaker alone (CLI: --speaker NAME=clip.wav, repeatable; HTTP: NAME=data URL "
           "per field; OpenAI: known_speaker_names[] with known_speaker_references[])",
           flag="--speaker", doors=(CLI, NATIVE, OPENAI, JOBS)),
    Option("best_of", "int", 5, "samples drawn at each temperature above 0 (library only)", doors=(),
           minimum=1, maximum=20),
    Option("condition_on_previous_text", "bool", True, "prompt each chunk with the text before it "
           "(library only)", doors=()),
    Option("max_line_width", "int", _STYLE.max_line_width, "srt/vtt: characters a subtitle line holds at most",
           minimum=10, maximum=100),
    Option("max_line_count", "int", _STYLE.max_line_count, "srt/vtt: lines a subtitle cue holds at most",
           minimum=1, maximum=3),
    Option("max_words_per_line", "int", _STYLE.max_words_per_line, "srt/vtt: words a subtitle line holds at most",
           minimum=1, maximum=100),
    Option("max_cue_seconds", "float", _STYLE.max_cue_seconds, "srt/vtt: seconds a cue stays on screen at most",
           minimum=1, maximum=60),
    Option("max_chars_per_second", "float", _STYLE.max_chars_per_second, "srt/vtt: reading speed a cue is held "
           "on screen for, where the next cue leaves time", minimum=1, maximum=100),
    Option("highlight_words", "bool", _STYLE.highlight_words, "srt/vtt: one entry per word said, that word "
           "underlined (karaoke; needs word_timestamps)"),
    Option("mode", "choice", "batched", "batched (speech dealt into lanes decoded side by side) or "
           "sequential (one lane: each chunk prompted with the text of the one before; library only)",
           choices=MODES, doors=()),
)
BY_NAME = {option.name: option for option in OPTIONS}
SUBTITLE_FIELDS = tuple(f.name for f in dataclasses.fields(SubtitleStyle))
"""The options that shape srt and vtt answers only (they also apply when a job's subtitles are fetched)."""
BY_FIELD = {option.field: option for option in OPTIONS}


def exposed(door: str) -> tuple[Option, ...]:
    """The options a door accepts from its users."""
    return tuple(option for option in OPTIONS if door in option.doors)


@dataclass
class TranscribeOptions:
    """Everything a caller can ask of one transcription (see OPTIONS for each field's meaning)."""

    language: str | None = None
    task: str = "transcribe"
    beam_size: int = 5
    best_of: int = 5
    temperature: float | Sequence[float] = DEFAULT_TEMPERATURES
    initial_prompt: str | None = None
    hotwords: str | None = None
    condition_on_previous_text: bool = True
    vad_filter: bool = True
    vad_threshold: float | None = None
    vad_min_silence_ms: int | None = None
    vad_speech_pad_ms: int | None = None
    word_timestamps: bool = False
    """Off for library callers (word alignment costs time); every door turns it on (see OPTIONS)."""
    word_alignment: str = "acoustic"
    logprobs: bool = False
    """Each segment's text tokens with their log-probabilities (needs word_timestamps: its alignment scores them)."""
    multilingual: bool = False
    diarize: bool = False
    min_speakers: int | None = None
    max_speakers: int | None = None
    max_line_width: int = _STYLE.max_line_width
    max_line_count: int = _STYLE.max_line_count
    max_words_per_line: int | None = _STYLE.max_words_per_line
    max_cue_seconds: float = _STYLE.max_cue_seconds
    max_chars_per_second: float = _STYLE.max_chars_per_second
    highlight_words: bool = _STYLE.highlight_words
    known_speakers: tuple[tuple[str, str], ...] = ()
    """(name, audio clip as a data URL) of each voice to label by name."""
    mode: str = "batched"
    decoding: DecodeSettings = field(default_factory=DecodeSettings)
    """The decoder's tuning (thresholds, encoder windows) for library and benchmark callers; beam size,
    best_of, temperatures and word timestamps come from the fields above."""

    @classmethod
    def from_door(cls, door: str, values: dict[str, Any]) -> TranscribeOptions:
        """Options from a door's parsed values (by option name); absent ones take the door's default."""
        given = {option.field: values.get(option.name, option.default_on(door)) for option in OPTIONS}
        return cls(**given)

    def validate(self, model: ModelInfo) -> None:
        """Raise OptionsError naming the first option that cannot be honoured by `model`."""
        for option in OPTIONS:
            option.check(getattr(self, option.field))
        if self.language is not None and self.language not in model.languages:
            raise OptionsError(
                f"language {self.language!r} is not supported by model {model.name}"
                + (" (an English-only model)" if not model.multilingual else ""),
                "language",
            )
        if self.task == "translate" and not model.multilingual:
            raise OptionsError(
                f"model {model.name} is English-only and cannot translate; use a multilingual model such as base",
                "task",
            )
        if not self.diarize:
            for name in ("min_speakers", "max_speakers", "known_speakers"):
                if getattr(self, name):
                    raise OptionsError(f"{name} needs enable_diarization=true (--diarize, or "
                                       "response_format diarized_json or rttm)", name)
        if self.min_speakers and self.max_speakers and self.min_speakers > self.max_speakers:
            raise OptionsError("min_speakers must not exceed max_speakers", "min_speakers")
        if self.diarize:
            from .diarize import is_available
            from .errors import DiarizationUnavailableError

            if not is_available():
                raise DiarizationUnavailableError(
                    "diarization needs the optional extra: pip install 'amanuensis[diarize]'")

    @property
    def temperatures(self) -> tuple[float, ...]:
        """The temperature schedule as a tuple (see temperature_schedule)."""
        return temperature_schedule(self.temperature)

    def vad_settings(self) -> dict[str, float]:
        """The VAD settings this request changes, by VadOptions field (unset options keep the VAD's own)."""
        given = {"threshold": self.vad_threshold, "min_silence_ms": self.vad_min_silence_ms,
                 "speech_pad_ms": self.vad_speech_pad_ms}
        return {name: value for name, value in given.items() if value is not None}

    def subtitle_style(self) -> SubtitleStyle:
        """The style guide srt and vtt answers are written to."""
        return SubtitleStyle(**{name: getattr(self, name) for name in SUBTITLE_FIELDS})

    def decode_settings(self) -> DecodeSettings:
        """The typed settings the engine decodes with."""
        return dataclasses.replace(self.decoding, beam_size=self.beam_size, best_of=self.best_of,
                                   temperatures=self.temperatures, word_timestamps=self.word_timestamps,
                                   hotwords=self.hotwords)

    def to_dict(self) -> dict[str, Any]:
        """The declared options as plain JSON (what a job stores)."""
        data = {option.field: getattr(self, option.field) for option in OPTIONS}
        if isinstance(data["temperature"], tuple):
            data["temperature"] = list(data["temperature"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TranscribeOptions:
        """Inverse of to_dict (unknown keys ignored)."""
        values = {key: value for key, value in data.items() if key in BY_FIELD}
        if "known_speakers" in values:  # JSON keeps the pairs as lists
            values["known_speakers"] = tuple((name, reference) for name, reference in values["known_speakers"])
        return cls(**values)


_DOOR_TITLES = {CLI: "`transcribe`", NATIVE: "`/transcribe`", OPENAI: "OpenAI", JOBS: "`/v1/jobs`, `jobs submit`",
                REALTIME: "`/v1/realtime`"}


def describe_default(value: Any) -> str:
    """A default as the README table and the command-line help show it."""
    if value == DEFAULT_TEMPERATURES:
        return "0 (falls back to 0.2 … 1.0)"
    if value is None or value == ():
        return "—"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _default_cell(option: Option) -> str:
    text = describe_default(option.default)
    for door, value in option.door_defaults:
        text += f" ({_DOOR_TITLES[door]}: {describe_default(value)})"
    return text


def markdown_table() -> str:
    """The README's table of options, made from OPTIONS (a test keeps the README equal to it)."""
    head = ["option", "flag", "default", *(_DOOR_TITLES[d] for d in DOORS), "meaning"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for option in OPTIONS:
        doors = ["✓" if door in option.doors else "" for door in DOORS]
        flag = f"`{option.cli_flag}`" if CLI in option.doors or JOBS in option.doors else "—"
        lines.append("| " + " | ".join([f"`{option.name}`", flag, _default_cell(option), *doors, option.help]) + " |")
    return "\n".join(lines)
