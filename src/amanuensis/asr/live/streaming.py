"""Live recognition policy: the turn's audio, re-decoding a growing turn, and local agreement.

Nothing here knows about sockets. A session feeds 16 kHz samples in; `LiveTurns` (turns.py)
says where speech starts and stops; `TurnStream` says when to decode the open turn again, which audio window and
prompt to decode, and which words two successive hypotheses agree on (LocalAgreement-2: a word is
confirmed once two decodes of growing audio both put it at the same place after the words already
confirmed, so confirmed words are never taken back). A decode of the turn up to a pause settles it:
its words are confirmed and the window starts again at the pause.

Lag cannot build up: the window decoded stays short (it moves forward past confirmed segments),
and the step between decodes grows with the time a decode takes, so a session whose decodes are
slow decodes less often instead of queueing work behind the audio.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ...constants import SAMPLE_RATE

log = logging.getLogger(__name__)

_WORD = re.compile(r"\s*\S+")
_NORMAL = re.compile(r"[^\w']+")


class TurnBuffer:
    """The session's audio: the open turn from its start, or between turns the last `keep` samples
    (the prefix padding a turn may start with). Positions count samples since the session began."""

    def __init__(self, keep: int = SAMPLE_RATE) -> None:
        self.keep = keep
        self.received = 0
        self.turn_start: int | None = None
        self._start = 0  # stream position of self._audio[0]
        self._audio = np.zeros(0, dtype=np.float32)

    @property
    def held_from(self) -> int:
        """Stream position of the oldest sample still held."""
        return self._start

    def append(self, samples: np.ndarray) -> None:
        """Add samples at the end; without an open turn only the last `keep` samples are kept."""
        self._audio = np.concatenate([self._audio, np.asarray(samples, dtype=np.float32)])
        self.received += len(samples)
        if self.turn_start is None and len(self._audio) > self.keep:
            self._start += len(self._audio) - self.keep
            self._audio = self._audio[-self.keep :]

    def start_turn(self, at: int) -> int:
        """Open a turn at stream position `at` (no earlier than the audio still held); returns it."""
        self.turn_start = min(max(at, self._start), self.received)
        return self.turn_start

    def turn_audio(self, end: int | None = None) -> np.ndarray:
        """The open turn's audio up to `end` (default: everything received)."""
        if self.turn_start is None:
            return np.zeros(0, dtype=np.float32)
        stop = self.received if end is None else min(end, self.received)
        return self._audio[self.turn_start - self._start : stop - self._start]

    def take_turn(self, end: int | None = None) -> tuple[int, np.ndarray]:
        """Close the open turn at `end` (default: now); returns (start, audio). Audio after `end` stays."""
        start = self.turn_start if self.turn_start is not None else self.received
        audio = self.turn_audio(end).copy()
        self.turn_start = None
        cut = start + len(audio)
        self._audio = self._audio[cut - self._start :]
        self._start = cut
        self.append(np.zeros(0, dtype=np.float32))
        return start, audio

    def clear(self) -> None:
        """Drop the open turn and everything held."""
        self.turn_start = None
        self._start = self.received
        self._audio = np.zeros(0, dtype=np.float32)


@dataclass
class Hypothesis:
    """One decode of a window: its words (with their leading spaces, as decoded) and, per closed
    segment, (words up to and including it, its end in window seconds)."""

    words: list[str]
    segment_ends: list[tuple[int, float]] = field(default_factory=list)

    @classmethod
    def from_segments(cls, segments: Sequence[tuple[str, float]]) -> Hypothesis:
        """Build from (text, end seconds) per segment."""
        words: list[str] = []
        ends: list[tuple[int, float]] = []
        for text, end in segments:
            words.extend(split_words(text))
            ends.append((len(words), end))
        return cls(words, ends)


def split_words(text: str) -> list[str]:
    """Words with their leading whitespace, so that "".join(words) == text (less trailing space)."""
    return _WORD.findall(text)


def normal(word: str) -> str:
    """A word for comparison: lower case, no punctuation."""
    return _NORMAL.sub("", word.lower())


def agreed_prefix(first: Sequence[str], second: Sequence[str]) -> int:
    """How many leading words two hypotheses share (compared without case and punctuation)."""
    count = 0
    for a, b in zip(first, second):
        if normal(a) != normal(b):
            break
        count += 1
    return count


def agreed_words(previous: Sequence[str], newest: Sequence[str], start: int = 0, slack: int = 2,
                 rejoin: int = 2) -> int:
    """How many leading words of `newest` the `previous` hypothesis supports, given that they agree on
    the first `start` words: from there, over disagreements of at most `slack` words each (the newest
    reading wins there) wherever they agree again on `rejoin` words or more after one. One word read
    two ways (fast speech, a name) then no longer holds back every word after it. slack=0 (or
    `start` short of their common prefix) gives the plain common prefix (LocalAgreement-2)."""
    a, b = [normal(w) for w in previous[start:]], [normal(w) for w in newest[start:]]
    end_a = end_b = 0
    for block in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
        if block.size == 0:
            break
        gap = max(block.a - end_a, block.b - end_b)
        if gap and (gap > slack or block.size < rejoin):
            break
        end_a, end_b = block.a + block.size, block.b + block.size
    return start + end_b


def remaining_words(confirmed: Sequence[str], final: Sequence[str]) -> list[str]:
    """The words of `final` after the part the confirmed words already cover (aligned word by word,
    without case and punctuation): what a last delta must add so the deltas read like the final text."""
    a, b = [normal(w) for w in confirmed], [normal(w) for w in final]
    blocks = [m for m in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks() if m.size]
    covered = blocks[-1].b + blocks[-1].size if blocks else min(len(confirmed), len(final))
    return list(final[covered:])


@dataclass(frozen=True)
class StreamingPolicy:
    """How often and how much of an open turn is decoded again."""

    first_decode_s: float = 0.6
    """The first decode of a turn waits for this much audio."""
    min_step_s: float = 0.5
    """New audio between two decodes, at least."""
    max_step_s: float = 5.0
    """…and at most, however slow decodes get."""
    step_per_decode: float = 1.5
    """The step is at least this many times the last decode's seconds: slow decodes, longer steps."""
    window_s: float = 5.0
    """Past this, the window decoded moves forward to the end of the last confirmed segment."""
    max_window_s: float = 9.0
    """Past this, the window moves forward to the last closed segment, confirmed or not."""
    encoder_margin_s: float = 1.0
    """Silence the encoder window leaves after a partial decode's audio (`DecodeSettings.window_margin_s`):
    with `max_window_s` + this ≤ 10 s every partial decode is encoded in the shortest (10 s) window,
    at a third of a 20 s window's cost. The last words of a partial are unsure anyway (agreement
    waits for the next decode); a final decode keeps the engine's margin."""
    settle_s: float = 1.0
    """The window moves only to a segment end at least this far before the audio's end."""
    prompt_chars: int = 200
    """Characters of confirmed text before the window given to the decoder as its prompt."""
    agreement_slack: int = 2
    """Words two hypotheses may read differently and still agree past (see `agreed_words`; 0: the plain
    common prefix)."""


class TurnStream:
    """One open turn: when to decode it again, which window and prompt, and the words confirmed."""

    def __init__(self, policy: StreamingPolicy | None = None, prompt: str | None = None) -> None:
        self.policy = policy or StreamingPolicy()
        self.base_prompt = (prompt or "").strip()
        self.confirmed: list[str] = []
        self.window_start = 0  # samples into the turn
        self.decoded_to = 0  # turn samples seen by the last decode
        self.step_s = self.policy.min_step_s
        self.decodes = 0
        self._in_window = 0  # confirmed words that lie in the current window
        self._previous: list[str] | None = None
        self._before_window: list[str] = []  # confirmed words before the window (the prompt)

    def due(self, available: int) -> bool:
        """True when `available` turn samples hold enough new audio for the next decode."""
        if self.decodes == 0:
            return available >= self.policy.first_decode_s * SAMPLE_RATE
        return available - self.decoded_to >= self.step_s * SAMPLE_RATE

    def lag_s(self, available: int) -> float:
        """Seconds of the turn's audio no decode has seen yet."""
        return max(0, available - self.decoded_to) / SAMPLE_RATE

    def prompt(self) -> str | None:
        """The decoder prompt: the session's prompt and the confirmed words before the window."""
        text = (self.base_prompt + " " + "".join(self._before_window)).strip()
        return text[-self.policy.prompt_chars :] or None

    def window(self, available: int) -> tuple[int, int]:
        """(start, end) turn samples of the next decode."""
        return self.window_start, available

    def accept(self, hypothesis: Hypothesis, window: tuple[int, int], decode_s: float) -> list[str]:
        """Take the decode of `window`; return the words it newly confirms (in order)."""
        start, end = window
        if start != self.window_start:  # the window moved while this decode ran: it no longer lines up
            return []
        self.decodes += 1
        self.decoded_to = max(self.decoded_to, end)
        self.step_s = min(self.policy.max_step_s, max(self.policy.min_step_s, self.policy.step_per_decode * decode_s))
        words = hypothesis.words
        new: list[str] = []
        if self._previous is not None:
            agreed = agreed_prefix(self._previous, words)
            if agreed >= self._in_window:  # words already confirmed are never read past a disagreement
                agreed = agreed_words(self._previous, words, agreed, self.policy.agreement_slack)
            if agreed > self._in_window:
                new = words[self._in_window : agreed]
                self._in_window = agreed
        self._previous = words
        if not self.confirmed and new:
            new[0] = new[0].lstrip()
        self.confirmed.extend(new)
        forced = self._advance(hypothesis, (end - start) / SAMPLE_RATE)
        if forced and not self.confirmed:
            forced[0] = forced[0].lstrip()
        self.confirmed.extend(forced)
        return new + forced

    def settle(self, words: Sequence[str], at: int) -> list[str]:
        """Take a decode of the turn's audio up to turn sample `at`, where the speaker paused (the final
        decode started at a pause): confirm its words past those already confirmed, and start the
        window at `at` (a pause is a word boundary). Returns the words newly confirmed; nothing when
        the window has already moved past `at`."""
        if at < self.window_start:
            return []
        new = remaining_words(self.confirmed, words)
        if not self.confirmed and new:
            new[0] = new[0].lstrip()
        self.confirmed.extend(new)
        self._before_window = self.confirmed[-100:]
        self.window_start = at
        self.decoded_to = max(self.decoded_to, at)
        self._in_window = 0
        self._previous = None
        return new

    def _advance(self, hypothesis: Hypothesis, length_s: float) -> list[str]:
        """Move the window past confirmed segments once it is long; returns words confirmed by force."""
        if length_s <= self.policy.window_s:
            return []
        # a segment that ends near the window's end may be a sentence still being spoken: never cut there
        ends = [(count, end) for count, end in hypothesis.segment_ends
                if 0 < count <= len(hypothesis.words) and end <= length_s - self.policy.settle_s]
        settled = [(count, end) for count, end in ends if count <= self._in_window and end > 0]
        forced: list[str] = []
        if not settled and length_s > self.policy.max_window_s and ends:
            count, end = next(((c, e) for c, e in reversed(ends) if e > 0), ends[-1])
            forced = hypothesis.words[self._in_window : count]
            self._in_window = max(self._in_window, count)
            settled = [(count, end)]
        if not settled:
            return forced
        count, end = settled[-1]
        if end <= 0:
            return forced
        self._before_window.extend(hypothesis.words[:count])
        self._before_window = self._before_window[-100:]
        self.window_start += round(end * SAMPLE_RATE)
        self.decoded_to = max(self.decoded_to, self.window_start)
        self._in_window -= count
        self._previous = hypothesis.words[count:]
        log.debug("window moved to %.2f s after %d words", self.window_start / SAMPLE_RATE, count)
        return forced
