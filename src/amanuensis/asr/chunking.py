"""Speech regions -> chunks of at most 30 s, cut only at pauses, with the map back to original time."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from ..constants import CHUNK_SAMPLES, SAMPLE_RATE
from .vad import FRAME_SAMPLES

"""Whisper's fixed input: 30 s."""


@dataclass
class Chunk:
    """Up to 30 s of speech: pieces of the original audio played back to back."""

    index: int
    pieces: list[tuple[int, int]]
    cut_in_speech: bool = False
    """The chunk ends inside a stretch of speech (cut at a pause), not where the speech stops."""
    _starts: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._starts = []
        position = 0
        for start, end in self.pieces:
            self._starts.append(position)
            position += end - start

    @property
    def num_samples(self) -> int:
        """Samples of audio in the chunk."""
        return sum(end - start for start, end in self.pieces)

    @property
    def duration(self) -> float:
        """Seconds of audio in the chunk."""
        return self.num_samples / SAMPLE_RATE

    @property
    def start(self) -> float:
        """Original time (s) where the chunk's first piece starts."""
        return self.pieces[0][0] / SAMPLE_RATE

    @property
    def end(self) -> float:
        """Original time (s) where the chunk's last piece ends."""
        return self.pieces[-1][1] / SAMPLE_RATE

    def audio(self, samples: np.ndarray) -> np.ndarray:
        """The chunk's samples (a view when it is one piece, else one concatenated copy)."""
        if len(self.pieces) == 1:
            start, end = self.pieces[0]
            return samples[start:end]
        return np.concatenate([samples[start:end] for start, end in self.pieces])

    def to_original(self, seconds: float, is_end: bool = False) -> float:
        """Map a time inside the chunk to the original audio; an end on a seam stays in the earlier piece."""
        sample = min(max(seconds, 0.0) * SAMPLE_RATE, self.num_samples)
        index = bisect.bisect_right(self._starts, sample) - 1
        if is_end and index > 0 and sample <= self._starts[index]:
            index -= 1
        index = max(index, 0)
        start, end = self.pieces[index]
        return min(start + sample - self._starts[index], end) / SAMPLE_RATE

    def to_chunk(self, seconds: float) -> float:
        """Map an original time to the chunk (a time in audio cut out goes to the nearest piece's edge)."""
        sample = seconds * SAMPLE_RATE
        def distance(k: int) -> float:
            return max(self.pieces[k][0] - sample, sample - self.pieces[k][1], 0)

        nearest = min(range(len(self.pieces)), key=distance)
        start, end = self.pieces[nearest]
        return (self._starts[nearest] + min(max(sample, start), end) - start) / SAMPLE_RATE

    def span_to_original(self, start: float, end: float) -> tuple[float, float]:
        """Map a word's chunk-time span to the original audio, inside ONE piece: a span across a seam
        (where silence was cut out) goes to the piece holding most of it, never over the cut silence."""
        first = bisect.bisect_right(self._starts, max(start, 0.0) * SAMPLE_RATE) - 1
        last = bisect.bisect_right(self._starts, max(end, 0.0) * SAMPLE_RATE) - 1
        if first == last or end <= start:
            return self.to_original(start), self.to_original(end, is_end=True)
        spans = [(min(end * SAMPLE_RATE, self._starts[k] + self.pieces[k][1] - self.pieces[k][0])
                  - max(start * SAMPLE_RATE, self._starts[k]), k) for k in range(max(first, 0), last + 1)]
        k = max(spans)[1]
        lo, hi = self._starts[k] / SAMPLE_RATE, (self._starts[k] + self.pieces[k][1] - self.pieces[k][0]) / SAMPLE_RATE
        return self.to_original(min(max(start, lo), hi)), self.to_original(min(max(end, lo), hi), is_end=True)

    def seam_between(self, first: float, second: float) -> bool:
        """True when audio was cut out of the chunk between chunk times `first` and `second` (two of its
        pieces that are not back to back in the original lie between them)."""
        lo, hi = sorted(bisect.bisect_right(self._starts, max(t, 0.0) * SAMPLE_RATE) - 1 for t in (first, second))
        return any(self.pieces[k][1] != self.pieces[k + 1][0] for k in range(max(lo, 0), hi))

    def contiguous_with(self, other: Chunk) -> bool:
        """True when `other` starts right where this chunk ends (no audio left out between them)."""
        return other.pieces[0][0] == self.pieces[-1][1]


def ends_in_speech(regions: list[tuple[int, int]], sample: int) -> bool:
    """True when `sample` falls inside one of the sorted `regions`, or where one runs straight into
    the next (a cut made in continuous speech), rather than at the end of a stretch of speech."""
    k = bisect.bisect_right(regions, (sample, float("inf"))) - 1
    if k < 0:
        return False
    start, end = regions[k]
    if start < sample < end:
        return True
    following = regions[k + 1][0] if k + 1 < len(regions) else None
    return (sample == end and following == sample) or (sample == start and k > 0 and regions[k - 1][1] == sample)


def pause_scores(gated: np.ndarray, silero: np.ndarray) -> np.ndarray:
    """Frame scores to find a pause to cut at: the mean of the energy-gated and Silero's own scores. In
    a loud room the gate scores every frame 1 and its quietest frame lies anywhere, in a word as likely
    as not (a chunk that starts inside a phrase loses the phrase); on whispering Silero is flat near 0.
    Each breaks the other's ties."""
    if gated is silero or len(gated) != len(silero):
        return gated
    return (np.asarray(gated, dtype=np.float32) + np.asarray(silero, dtype=np.float32)) / 2


def split_long_regions(
    regions: list[tuple[int, int]], probs: np.ndarray | None, max_samples: int = CHUNK_SAMPLES
) -> list[tuple[int, int]]:
    """Cut regions longer than `max_samples` at their least speech-like frame (a pause), never blindly."""
    out: list[tuple[int, int]] = []
    for start, end in regions:
        while end - start > max_samples:
            cut = _pause_in(start + max_samples // 2, start + max_samples, probs)
            out.append((start, cut))
            start = cut
        out.append((start, end))
    return out


def _pause_in(lo: int, hi: int, probs: np.ndarray | None) -> int:
    """The sample at the centre of the quietest 3-frame stretch between lo and hi (hi if unknown)."""
    first, last = -(-lo // FRAME_SAMPLES), hi // FRAME_SAMPLES - 1
    if probs is None or last - first < 3 or last > len(probs):
        return hi - FRAME_SAMPLES
    window = probs[first:last]
    # edge-padded: zero padding made the window's two ends look quieter than any frame inside it
    smoothed = np.convolve(np.pad(window, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    # prefer later pauses among equally quiet ones, to pack chunks tightly
    best = len(smoothed) - 1 - int(np.argmin(smoothed[::-1] + 1e-3 * np.arange(len(smoothed))))
    return (first + best) * FRAME_SAMPLES + FRAME_SAMPLES // 2


def next_chunk(
    regions: list[tuple[int, int]],
    position: int,
    probs: np.ndarray | None = None,
    max_samples: int = CHUNK_SAMPLES,
    index: int = 0,
    slack_samples: int = 6 * SAMPLE_RATE,
) -> Chunk | None:
    """The chunk that starts at sample `position` of the sorted `regions` (None when none is left).

    Whole regions are packed while they fit; a region that does not fit is cut at its quietest frame
    within the last `slack_samples` of the room left, unless less than that room is left (then the
    chunk ends at the region boundary, a real silence).
    """
    pieces: list[tuple[int, int]] = []
    total = 0
    first = bisect.bisect_right([e for _, e in regions], position)
    for start, end in regions[first:]:
        start = max(start, position)
        if end <= start:
            continue
        room = max_samples - total
        if end - start > room:
            if pieces and room < slack_samples:
                break
            lo = start + max(room - slack_samples, min(room, FRAME_SAMPLES * 8))
            end = _pause_in(lo, start + room, probs)
            end = min(max(end, start + FRAME_SAMPLES), start + room)
            room = 0  # the rest of this region comes first in the next chunk: nothing after it fits here
        if pieces and pieces[-1][1] == start:
            pieces[-1] = (pieces[-1][0], end)
        else:
            pieces.append((start, end))
        total += end - start
        if total >= max_samples or room == 0:
            break
    return Chunk(index, pieces) if pieces else None


def pack_chunks(
    regions: list[tuple[int, int]], probs: np.ndarray | None = None, max_samples: int = CHUNK_SAMPLES
) -> list[Chunk]:
    """Every chunk of `regions` in order, as `next_chunk` cuts them (each ending where the next starts)."""
    chunks: list[Chunk] = []
    position = regions[0][0] if regions else 0
    while (chunk := next_chunk(regions, position, probs, max_samples, len(chunks))) is not None:
        chunks.append(chunk)
        position = chunk.pieces[-1][1]
    return chunks


def plan_lanes(
    regions: list[tuple[int, int]], batch_size: int, fill_samples: int = 27 * SAMPLE_RATE
) -> list[list[tuple[int, int]]]:
    """Lanes for one window: each a whole number of chunks (of about `fill_samples` of speech) long,
    as few steps as `batch_size` allows, so that no lane ends with a chunk mostly made of padding."""
    total = sum(e - s for s, e in regions)
    if total == 0:
        return []
    chunks = -(-total // fill_samples)
    steps = -(-chunks // max(1, batch_size))
    return split_lanes(regions, batch_size, quota=steps * fill_samples)


def split_lanes(
    regions: list[tuple[int, int]], lanes: int, quota: int | None = None
) -> list[list[tuple[int, int]]]:
    """Deal consecutive regions into at most `lanes` groups: of about equal speech time, or each
    filled up to `quota` samples of speech before the next starts."""
    if not regions or lanes <= 1:
        return [list(regions)] if regions else []
    if quota is not None:
        out: list[list[tuple[int, int]]] = [[]]
        filled = 0
        for region in regions:
            length = region[1] - region[0]
            if out[-1] and filled + length > quota and len(out) < lanes:
                out.append([])
                filled = 0
            out[-1].append(region)
            filled += length
        return out
    total = sum(e - s for s, e in regions)
    share = total / lanes
    out: list[list[tuple[int, int]]] = [[]]
    done = 0
    for region in regions:
        if out[-1] and done >= share * len(out) and len(out) < lanes:
            out.append([])
        out[-1].append(region)
        done += region[1] - region[0]
    return out


def split_windows(regions: list[tuple[int, int]], speech_samples: int) -> list[list[tuple[int, int]]]:
    """Consecutive groups of regions holding about `speech_samples` of speech each."""
    windows: list[list[tuple[int, int]]] = []
    filled = speech_samples
    for region in regions:
        if filled >= speech_samples:
            windows.append([])
            filled = 0
        windows[-1].append(region)
        filled += region[1] - region[0]
    return windows


def speech_between(regions: list[tuple[int, int]], start: int | None, end: int) -> int:
    """Samples of speech in `regions` between `start` and `end` (0 for a lane that had ended)."""
    if start is None:
        return 0
    return sum(max(0, min(e, end) - max(s, start)) for s, e in regions)
