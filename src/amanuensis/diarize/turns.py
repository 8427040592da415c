"""From a speaker per 10 ms frame to speaker turns: smoothing, merging, overlapped speech."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import HOP_LENGTH, SAMPLE_RATE

FRAME_S = HOP_LENGTH / SAMPLE_RATE  # 10 ms: the unit of every frame array below


@dataclass(frozen=True)
class SpeakerTurn:
    """One speaker talking from `start` to `end` (seconds)."""

    start: float
    end: float
    speaker: str
    overlap: bool = False
    """True for a second speaker heard over the main one (overlapped speech)."""


def speaker_label(index: int) -> str:
    """SPEAKER_00, SPEAKER_01, ..."""
    return f"SPEAKER_{index:02d}"


def smooth(speakers: np.ndarray, min_frames: int) -> np.ndarray:
    """Give runs of speech shorter than `min_frames` that lie between speech to the longer neighbour."""
    speakers = speakers.copy()
    while True:
        runs = _runs(speakers)
        short = [
            i
            for i, (s, e, spk) in enumerate(runs)
            if spk >= 0 and e - s < min_frames and _has_speech_neighbour(runs, i)
        ]
        if not short:
            return speakers
        i = min(short, key=lambda j: runs[j][1] - runs[j][0])
        s, e, _ = runs[i]
        neighbours = [
            runs[j] for j in (i - 1, i + 1) if 0 <= j < len(runs) and runs[j][2] >= 0 and _touch(runs[j], runs[i])
        ]
        speakers[s:e] = max(neighbours, key=lambda r: r[1] - r[0])[2]


def to_turns(speakers: np.ndarray, merge_gap_frames: int, second: np.ndarray | None = None) -> list[SpeakerTurn]:
    """Runs of frames → turns, joining turns of one speaker separated by at most `merge_gap_frames` of
    silence; runs of `second` (a second speaker per frame) become turns marked `overlap`, in time order."""
    merged = merged_runs(speakers, merge_gap_frames)
    extra = merged_runs(second, 0) if second is not None else []
    order = {spk: i for i, spk in enumerate(dict.fromkeys(m[2] for m in sorted(merged + extra)))}
    turns = [(s, e, spk, False) for s, e, spk in merged] + [(s, e, spk, True) for s, e, spk in extra]
    return [
        SpeakerTurn(round(s * FRAME_S, 3), round(e * FRAME_S, 3), speaker_label(order[spk]), overlap)
        for s, e, spk, overlap in sorted(turns)
    ]


def merged_runs(speakers: np.ndarray, merge_gap_frames: int) -> list[list[int]]:
    """[start, end, speaker] of each run of one speaker (-1: silence, skipped), runs of one speaker at
    most `merge_gap_frames` apart joined."""
    merged: list[list[int]] = []
    for start, end, speaker in _runs(speakers):
        if speaker < 0:
            continue
        if merged and merged[-1][2] == speaker and start - merged[-1][1] <= merge_gap_frames:
            merged[-1][1] = end
        else:
            merged.append([start, end, speaker])
    return merged


def drop_short_runs(speakers: np.ndarray, min_frames: int) -> np.ndarray:
    """`speakers` with runs of a speaker shorter than `min_frames` set to -1 (silence)."""
    speakers = speakers.copy()
    for start, end, speaker in _runs(speakers):
        if speaker >= 0 and end - start < min_frames:
            speakers[start:end] = -1
    return speakers


def _runs(speakers: np.ndarray) -> list[tuple[int, int, int]]:
    if len(speakers) == 0:
        return []
    edges = np.flatnonzero(np.diff(speakers)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(speakers)]])
    return [(int(s), int(e), int(speakers[s])) for s, e in zip(starts, ends)]


def _touch(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return a[1] == b[0] or b[1] == a[0]


def _has_speech_neighbour(runs: list[tuple[int, int, int]], i: int) -> bool:
    return any(0 <= j < len(runs) and runs[j][2] >= 0 for j in (i - 1, i + 1))
