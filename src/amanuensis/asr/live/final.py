"""The final decode of a live turn: what is kept of it, and when a decode started early can stand in.

A turn is decoded on its own, without the text around it, so tiny models fill a short hesitant turn
(a cough, a breath, "uh") with a likely phrase: "you", "Thanks for watching". Such segments come with
a raised no-speech probability and a low average log-probability; `keep_speech` drops them (stricter
than Whisper's own silence rule, which needs both beyond 0.6 and -1.0).

The final decode may start when the speaker pauses (`speech_paused`), before the turn is known to be
over; `EarlyFinal` remembers that decode and says whether it still covers the turn once it stops.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ...transcript import Segment, Transcript


@dataclass(frozen=True)
class FinalPolicy:
    """How a live turn's final decode is made and cleaned."""

    no_speech_prob: float = 0.3
    """A segment above this no-speech probability…"""
    avg_logprob: float = -0.7
    """…and below this average log-probability is dropped as a guess at non-speech."""
    beam_size: int = 5
    """Beams of the final decode (the open turn's decodes are greedy). On the live VAD's turns of the dev
    sets (4 x 600 s streams of speech/ and of speech2/, and 3 random orders of both) beam 5 read 0.9-1.2
    points better than greedy on each of the three."""
    max_tokens_per_second: float = 5.0
    """A decode stops after 32 + this many tokens per second of its audio (`DecodeSettings`): a loop on
    a short turn stops early."""


def likely_speech(segment: Segment, policy: FinalPolicy) -> bool:
    """False for a segment the model itself thinks is probably not speech and is unsure of."""
    return not (segment.no_speech_prob > policy.no_speech_prob and segment.avg_logprob < policy.avg_logprob)


def keep_speech(transcript: Transcript, policy: FinalPolicy) -> Transcript:
    """The transcript without the segments `likely_speech` rejects (numbered again, text rebuilt)."""
    kept = [segment for segment in transcript.segments if likely_speech(segment, policy)]
    if len(kept) == len(transcript.segments):
        return transcript
    kept = [replace(segment, id=i) for i, segment in enumerate(kept)]
    return replace(transcript, segments=kept, text="".join(s.text for s in kept).strip())


@dataclass
class EarlyFinal:
    """A final decode started at a pause, of turn `item_id` up to turn sample `end`. The session drops
    it when speech resumes; when the turn stops without more speech, its result is the turn's."""

    item_id: str
    end: int
    result: Any
    """What the session awaits for the transcript (an asyncio future)."""

    def covers(self, item_id: str | None) -> bool:
        """True when this decode stands for turn `item_id`."""
        return item_id == self.item_id
