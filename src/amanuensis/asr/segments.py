"""A decoded chunk's tokens -> timestamped pieces, skipped-speech and loop checks, word splits at seams,
and the tokens' log-probabilities."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..transcript import TokenLogprob
from .decoding import DecodeSettings, is_loop

if TYPE_CHECKING:
    from .chunking import Chunk

SKIP_MIN_SECONDS = 10.0
"""A segment at least this long…"""
SKIP_MAX_CHARS_PER_SECOND = 4.5
"""…with fewer characters per second of speech than this is speech the model skipped, not slow speech."""


@dataclass
class TimestampSplit:
    """A decoded chunk cut at its timestamps (times in chunk seconds)."""

    complete: list[tuple[float, float, list[int]]]
    trailing: tuple[float, float, list[int]] | None
    covered: float
    kept_tokens: list[int]
    all_tokens: list[int]


def split_by_timestamps(tokens: list[int], tokenizer: object, duration: float) -> TimestampSplit:
    """Cut tokens at timestamp tokens: closed segments, an unclosed trailing one, and how far they reach."""
    begin, eot = tokenizer.timestamp_begin, tokenizer.eot
    tokens = [t for t in tokens if t != eot]
    complete: list[tuple[float, float, list[int]]] = []
    current: list[int] = []
    opened = 0.0
    last_closed = 0
    seen_timestamp = False
    for position, token in enumerate(tokens):
        if token >= begin:
            seen_timestamp = True
            time_s = min((token - begin) * 0.02, duration)
            if current:
                complete.append((opened, max(time_s, opened), current))
                current = []
                last_closed = position + 1
            opened = time_s
        elif token < eot:
            current.append(token)
    if not seen_timestamp:
        return TimestampSplit([(0.0, duration, current)] if current else [], None, duration, tokens, tokens)
    trailing = (opened, max(duration, opened), current) if current else None
    covered = complete[-1][1] if complete else 0.0
    if trailing is None and not complete:
        covered = duration
    return TimestampSplit(complete, trailing, covered, tokens[:last_closed], tokens)


def is_skip(start: float, end: float, tokens: list[int], tokenizer: object, speech_s: float | None = None) -> bool:
    """A long segment with little text for the speech in it: Whisper jumped over speech it found hard
    (a whole stretch of it), closing the segment far after its words. `speech_s` (the VAD's speech
    seconds inside the segment) keeps slow, halting speech, whose segments are long for the pauses
    in them, from counting as skipped."""
    duration = end - start
    speech = duration if speech_s is None else min(duration, speech_s)
    return duration >= SKIP_MIN_SECONDS and len(tokenizer.decode(tokens).strip()) < SKIP_MAX_CHARS_PER_SECOND * speech


def _is_loop(text: str, settings: DecodeSettings) -> bool:
    """A segment that is one phrase repeated (a decoding loop)."""
    return is_loop(text, settings.compression_ratio_threshold)


def take_words(words: list[dict], num_tokens: int) -> tuple[list[dict], list[dict]]:
    """Split off the words whose tokens make up the next `num_tokens` text tokens."""
    taken, used = [], 0
    while words and used + len(words[0]["tokens"]) <= num_tokens:
        used += len(words[0]["tokens"])
        taken.append(words.pop(0))
    if not taken and words and num_tokens:
        taken.append(words.pop(0))
    return taken, words


def token_logprobs(tokenizer: object, tokens: list[int], probs: list[float]) -> list[TokenLogprob]:
    """Each text token with the log of its probability (from the word alignment)."""
    return [TokenLogprob(tokenizer.decode([token]), round(math.log(max(prob, 1e-30)), 6))
            for token, prob in zip(tokens, probs)]


def split_at_seams(chunk: Chunk, words: list[dict]) -> list[list[dict]]:
    """A segment's words in runs that each lie between two seams of the chunk (pauses the VAD cut out):
    one segment never spans silence the model did not hear."""
    runs: list[list[dict]] = [[]]
    for word in words:
        if runs[-1] and chunk.seam_between(_middle(runs[-1][-1]), _middle(word)):
            runs.append([])
        runs[-1].append(word)
    return runs


def _middle(word: dict) -> float:
    return (word["start"] + word["end"]) / 2

