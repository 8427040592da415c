"""A realtime session's settings: defaults, `session.update` (GA and beta) applied field by field,
the session object sent back, and the one mapping from a session to TranscribeOptions."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ...asr.decoding import DecodeSettings
from ...asr.live.final import FinalPolicy
from ...asr.live.turns import TurnDetection
from ...options import REALTIME, TranscribeOptions, exposed
from .codecs import InputFormat
from .protocol import BETA_FORMATS, BetaSessionUpdate, ProtocolError, SessionUpdate

GA_INPUT = "session.audio.input"
DECLARED = {option.name: option for option in exposed(REALTIME)}
"""The transcription options a session sets (amanuensis.options: language, prompt, hotwords), by name: fields
of `audio.input.transcription` and of SessionConfig."""
BETA_PARAMS = {"model": "session.input_audio_transcription.model",
               "language": "session.input_audio_transcription.language",
               "format": "session.input_audio_format"}


@dataclass(frozen=True)
class SessionConfig:
    """What a session transcribes with: input format, model, language, prompt, hotwords, server VAD (or
    None: the client commits each turn)."""

    format: InputFormat = InputFormat()
    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    hotwords: str | None = None
    turn_detection: TurnDetection | None = TurnDetection()

    def describe(self, model_name: str) -> dict:
        """The GA session object (session.created / session.updated)."""
        fmt = {"type": self.format.type, "rate": self.format.rate}
        turn = None
        if self.turn_detection is not None:
            turn = {"type": "server_vad", "threshold": self.turn_detection.threshold,
                    "prefix_padding_ms": self.turn_detection.prefix_padding_ms,
                    "silence_duration_ms": self.turn_detection.silence_duration_ms}
        return {"type": "transcription", "object": "realtime.transcription_session",
                "audio": {"input": {"format": fmt, "noise_reduction": None, "turn_detection": turn,
                                    "transcription": {"model": model_name, "language": self.language,
                                                      "prompt": self.prompt or ""}}},
                "include": []}

    def describe_beta(self, model_name: str) -> dict:
        """The beta session object (transcription_session.updated)."""
        ga = self.describe(model_name)["audio"]["input"]
        names = {BETA_FORMATS[name]: name for name in BETA_FORMATS}
        beta_format = names.get((self.format.type, self.format.rate), ga["format"])
        return {"object": "realtime.transcription_session", "input_audio_format": beta_format,
                "input_audio_transcription": ga["transcription"], "turn_detection": ga["turn_detection"],
                "input_audio_noise_reduction": None, "include": []}


def _format(kind: str, rate: int | None, param: str) -> InputFormat:
    if kind == "audio/pcm":
        if rate not in (None, 24000, 16000):
            raise ProtocolError(f"audio/pcm is taken at 24000 or 16000 Hz, not {rate}", f"{param}.rate")
        return InputFormat(kind, rate or 24000)
    if rate not in (None, 8000):
        raise ProtocolError(f"{kind} (G.711) is 8000 Hz, not {rate}", f"{param}.rate")
    return InputFormat(kind, 8000)


def _turn(current: TurnDetection | None, vad: object) -> TurnDetection:
    base = current or TurnDetection()
    given = {name: getattr(vad, name) for name in ("threshold", "prefix_padding_ms", "silence_duration_ms")
             if getattr(vad, name) is not None}
    return replace(base, **given)


def apply_update(config: SessionConfig, event: SessionUpdate | BetaSessionUpdate) -> tuple[SessionConfig, dict]:
    """The config after `event` (only the fields it names change) and the param name of each field
    that needs checking against the model ({"model": …, "language": …})."""
    if isinstance(event, BetaSessionUpdate):
        session = event.session
        changes: dict = {}
        if session.input_audio_format is not None:
            kind, rate = BETA_FORMATS[session.input_audio_format]
            changes["format"] = InputFormat(kind, rate)
        if "turn_detection" in session.model_fields_set:
            td = session.turn_detection
            changes["turn_detection"] = None if td is None else _turn(config.turn_detection, td)
        transcription = session.input_audio_transcription
        params = BETA_PARAMS
    else:
        audio_input = event.session.audio.input if event.session.audio else None
        changes, transcription = {}, None
        if audio_input is not None:
            if audio_input.format is not None:
                changes["format"] = _format(audio_input.format.type, audio_input.format.rate, f"{GA_INPUT}.format")
            if "turn_detection" in audio_input.model_fields_set:
                td = audio_input.turn_detection
                changes["turn_detection"] = None if td is None else _turn(config.turn_detection, td)
            transcription = audio_input.transcription
        params = {"model": f"{GA_INPUT}.transcription.model", "language": f"{GA_INPUT}.transcription.language"}
    if transcription is not None:
        for name in ("model", *DECLARED):
            if name in transcription.model_fields_set:
                value = getattr(transcription, name)
                changes[name] = (DECLARED[name].parse(value) if name in DECLARED and value else value) or None
    return replace(config, **changes), params


def transcribe_options(config: SessionConfig, *, partial: bool, prompt: str | None = None,
                       policy: FinalPolicy = FinalPolicy(), margin_s: float | None = None) -> TranscribeOptions:
    """The one mapping from a session to TranscribeOptions: the options the session sets (declared for
    the realtime door in amanuensis.options: language, prompt), then realtime's own decoding. Every
    decode is at temperature 0 alone, and stops generating at `policy.max_tokens_per_second`: tiny.en
    can loop on a short hesitant turn, and a loop run to 448 tokens at each fallback temperature kept
    the speaker waiting 9 s. Partial decodes (the open turn, again and again) are greedy and take the
    window as it is (it is speech already); the final decode of a turn is a transcription with
    `policy.beam_size` beams, VAD and word timestamps (cross-attention times: an acoustic alignment
    would add to every turn's wait), each turn on its own: prompting it with the
    earlier turns' text made tiny.en repeat itself (87.7 % WER against 73.7 % on the hard MFA dev
    clips; 37.5 % against 33.6 % on 4 x 600 s streams of speech2/). `prompt`: the partial decode's
    prompt (the session's prompt and the turn's words before the window); `margin_s`: the partial
    decode's encoder margin (`StreamingPolicy.encoder_margin_s`; None: the engine's)."""
    declared = TranscribeOptions.from_door(REALTIME, {name: getattr(config, name) for name in DECLARED})
    final = replace(declared, beam_size=policy.beam_size, best_of=1, temperature=0.0, vad_filter=True,
                    word_timestamps=True, word_alignment="attention",
                    decoding=DecodeSettings(max_tokens_per_second=policy.max_tokens_per_second))
    if partial:
        decoding = final.decoding if margin_s is None else replace(final.decoding, window_margin_s=margin_s)
        return replace(final, beam_size=1, initial_prompt=prompt, vad_filter=False, word_timestamps=False,
                       condition_on_previous_text=False, decoding=decoding)
    return final
