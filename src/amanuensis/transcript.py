"""The typed result of a transcription: a Transcript of Segments of Words."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Word:
    """One word with its time span in seconds (original audio time) and probability."""

    word: str
    start: float
    end: float
    probability: float
    speaker: str | None = None
    overlap: bool = False
    """Diarized: another speaker talks at the same time (overlapped speech)."""


@dataclass
class TokenLogprob:
    """One text token of a segment and its log-probability under the model (OpenAI's `logprobs` item)."""

    token: str
    logprob: float

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's shape: token, logprob and the token's UTF-8 bytes."""
        return {"token": self.token, "logprob": self.logprob, "bytes": list(self.token.encode("utf-8"))}


@dataclass
class Segment:
    """A span of text with its time span in seconds and decoder statistics."""

    id: int
    start: float
    end: float
    text: str
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    temperature: float = 0.0
    tokens: list[int] = field(default_factory=list)
    words: list[Word] | None = None
    speaker: str | None = None
    language: str | None = None
    overlap: bool = False
    """Diarized: another speaker talks over part of this segment (overlapped speech)."""
    logprobs: list[TokenLogprob] | None = None
    """Each text token with its log-probability, when asked for (TranscribeOptions.logprobs)."""


@dataclass
class Transcript:
    """A whole transcription: text, language, duration and segments."""

    text: str
    language: str
    duration: float
    segments: list[Segment]
    language_probability: float = 1.0
    task: str = "transcribe"
    model: str = ""

    @property
    def logprobs(self) -> list[TokenLogprob] | None:
        """Every segment's token log-probabilities in order (None unless they were asked for)."""
        if not any(s.logprobs is not None for s in self.segments):
            return None
        return [t for s in self.segments for t in s.logprobs or []]

    @property
    def speakers(self) -> list[str]:
        """Distinct speaker labels in order of first appearance (empty when not diarized)."""
        seen: list[str] = []
        for segment in self.segments:
            if segment.speaker and segment.speaker not in seen:
                seen.append(segment.speaker)
        return seen

    def to_dict(self) -> dict[str, Any]:
        """A plain-JSON view of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        """Inverse of to_dict (used by the job store)."""
        segments = []
        for raw in data.get("segments", []):
            raw = dict(raw)
            words, logprobs = raw.pop("words", None), raw.pop("logprobs", None)
            segments.append(Segment(**raw, words=[Word(**w) for w in words] if words is not None else None,
                                    logprobs=[TokenLogprob(**t) for t in logprobs] if logprobs is not None else None))
        fields = {k: v for k, v in data.items() if k != "segments"}
        return cls(segments=segments, **fields)
