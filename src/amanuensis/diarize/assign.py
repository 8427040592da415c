"""Put speakers on a Transcript: every word and segment by time overlap, segments split at speaker changes."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from ..transcript import Segment, Transcript, Word
from .known import KnownVoice, name_speakers
from .turns import SpeakerTurn, speaker_label

log = logging.getLogger(__name__)

MIN_SPLIT_S = 0.5
"""Without word timestamps, a segment is split only where another speaker holds at least this long."""


def diarize_transcript(
    samples: np.ndarray,
    transcript: Transcript,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    known: list[KnownVoice] | None = None,
) -> Transcript:
    """Diarize `samples` (16 kHz mono float32) and return `transcript` with a speaker on every segment and
    word; a speaker matching one of the `known` voices is labelled with its name."""
    from .core import diarize
    from .encoder import get_encoder

    turns = diarize(samples, min_speakers=min_speakers, max_speakers=max_speakers)
    if known:
        turns = name_speakers(turns, samples, known, get_encoder())
    return assign_speakers(transcript, turns)


def assign_speakers(transcript: Transcript, turns: list[SpeakerTurn]) -> Transcript:
    """A copy of `transcript` labelled from `turns`; segments spanning a speaker change are split.

    Each word takes the main speaker of its time; a word (and its segment) heard while an overlap turn
    runs is marked `overlap`."""
    overlaps = [t for t in turns if t.overlap]
    turns = [t for t in turns if not t.overlap]
    if not turns:
        turns = [SpeakerTurn(0.0, max(transcript.duration, 0.0), speaker_label(0))]
    segments: list[Segment] = []
    for segment in transcript.segments:
        segments.extend(_split_by_words(segment, turns) if segment.words else _split_by_time(segment, turns))
    for index, segment in enumerate(segments):
        segment.id = index
        _mark_overlap(segment, overlaps)
    return dataclasses.replace(transcript, segments=segments)


def overlapped(start: float, end: float, overlaps: list[SpeakerTurn]) -> bool:
    """True when an overlap turn covers the middle of [start, end]."""
    middle = (start + end) / 2
    return any(t.start <= middle <= t.end for t in overlaps)


def _mark_overlap(segment: Segment, overlaps: list[SpeakerTurn]) -> None:
    if segment.words:
        for word in segment.words:
            word.overlap = overlapped(word.start, word.end, overlaps)
        segment.overlap = any(word.overlap for word in segment.words)
    else:
        segment.overlap = any(
            min(segment.end, t.end) - max(segment.start, t.start) >= MIN_SPLIT_S / 2 for t in overlaps
        )


def speaker_at(start: float, end: float, turns: list[SpeakerTurn]) -> str:
    """The speaker who overlaps [start, end] most; if none does, the speaker of the nearest turn."""
    best, best_overlap = None, 0.0
    for turn in turns:
        overlap = min(end, turn.end) - max(start, turn.start)
        if overlap > best_overlap:
            best, best_overlap = turn.speaker, overlap
    if best is not None:
        return best
    middle = (start + end) / 2
    return min(turns, key=lambda t: max(t.start - middle, middle - t.end, 0.0)).speaker


def _split_by_words(segment: Segment, turns: list[SpeakerTurn]) -> list[Segment]:
    words = [dataclasses.replace(w, speaker=speaker_at(w.start, w.end, turns)) for w in segment.words or []]
    groups: list[list[Word]] = []
    for word in words:
        if groups and groups[-1][-1].speaker == word.speaker:
            groups[-1].append(word)
        else:
            groups.append([word])
    if len(groups) == 1:
        return [dataclasses.replace(segment, words=words, speaker=words[0].speaker)]
    return [
        dataclasses.replace(
            segment,
            start=group[0].start,
            end=group[-1].end,
            text="".join(w.word for w in group),
            tokens=[],
            words=group,
            speaker=group[0].speaker,
        )
        for group in groups
    ]


def _split_by_time(segment: Segment, turns: list[SpeakerTurn]) -> list[Segment]:
    pieces = _pieces(segment.start, segment.end, turns)
    if len(pieces) <= 1:
        return [dataclasses.replace(segment, speaker=speaker_at(segment.start, segment.end, turns))]
    words = segment.text.split()
    if len(words) < len(pieces):
        return [dataclasses.replace(segment, speaker=speaker_at(segment.start, segment.end, turns))]
    # Share the words out in proportion to each piece's time (by characters, as speech rate is roughly even).
    lengths = np.cumsum([len(w) + 1 for w in words])
    bounds = [0]
    span = segment.end - segment.start
    for _, end, _ in pieces[:-1]:
        cut = int(np.searchsorted(lengths, lengths[-1] * (end - segment.start) / span)) + 1
        bounds.append(min(max(cut, bounds[-1] + 1), len(words) - (len(pieces) - len(bounds))))
    bounds.append(len(words))
    leading = " " if segment.text.startswith(" ") else ""
    return [
        dataclasses.replace(
            segment, start=start, end=end, text=leading + " ".join(words[a:b]), tokens=[], speaker=speaker
        )
        for (start, end, speaker), a, b in zip(pieces, bounds[:-1], bounds[1:])
    ]


def _pieces(start: float, end: float, turns: list[SpeakerTurn]) -> list[tuple[float, float, str]]:
    """[start, end] cut where the speaker changes, keeping only speakers holding MIN_SPLIT_S or more."""
    inside = [
        (max(start, t.start), min(end, t.end), t.speaker)
        for t in turns
        if min(end, t.end) - max(start, t.start) >= MIN_SPLIT_S
    ]
    pieces: list[list] = []
    for piece in inside:
        if pieces and pieces[-1][2] == piece[2]:
            pieces[-1][1] = piece[1]
        else:
            pieces.append(list(piece))
    if not pieces:
        return []
    pieces[0][0], pieces[-1][1] = start, end
    for before, after in zip(pieces, pieces[1:]):  # close the gaps between pieces at their middle
        middle = round((before[1] + after[0]) / 2, 3)
        before[1], after[0] = middle, middle
    return [(a, b, s) for a, b, s in pieces]
