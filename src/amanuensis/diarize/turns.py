"""From labelled windows to speaker turns: per-frame speaker scores, smoothing, merging."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .windows import FRAME_S


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


def frame_scores(n_frames: int, windows: list[tuple[int, int]], scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the summed scores (n_frames, k) of the windows covering it, and how many cover it."""
    k = scores.shape[1]
    total = np.zeros((n_frames + 1, k))
    count = np.zeros(n_frames + 1)
    for (start, end), score in zip(windows, scores):
        total[start] += score
        total[end] -= score
        count[start] += 1
        count[end] -= 1
    return np.cumsum(total, axis=0)[:n_frames], np.cumsum(count)[:n_frames]


def overlap_speakers(
    speakers: np.ndarray, total: np.ndarray, count: np.ndarray, margin: float, min_frames: int
) -> np.ndarray:
    """Per frame, a second speaker heard over `speakers` (-1 where none): the runner-up whose mean window
    score comes within `margin` of the best one's, kept only in runs of at least `min_frames`.

    A window over two voices embeds between them, so it resembles both speakers nearly as much."""
    second = np.full(len(speakers), -1, dtype=int)
    if total.shape[1] < 2:
        return second
    mean = total / np.maximum(count, 1)[:, None]
    ranked = np.argsort(mean, axis=1)
    runner_up = ranked[:, -2]
    gap = mean[np.arange(len(mean)), ranked[:, -1]] - mean[np.arange(len(mean)), runner_up]
    close = (speakers >= 0) & (count > 0.5) & (gap <= margin) & (runner_up != speakers)
    second[close] = runner_up[close]
    for start, end, speaker in _runs(second):
        if speaker >= 0 and end - start < min_frames:
            second[start:end] = -1
    return second


def frame_speakers(
    n_frames: int,
    regions: list[tuple[int, int]],
    windows: list[tuple[int, int]],
    scores: np.ndarray,
) -> np.ndarray:
    """Speaker index per frame (-1 outside speech): the best mean score of the windows covering it.

    `scores` (n_windows, k) is each window's similarity to each speaker's centroid. Speech frames no
    window covers take the speaker of the nearest window.
    """
    total, count = frame_scores(n_frames, windows, scores)
    best = np.argmax(total, axis=1)
    spans = np.array(windows)
    window_speaker = np.argmax(scores, axis=1)
    speakers = np.full(n_frames, -1, dtype=int)
    for start, end in regions:
        end = min(end, n_frames)
        covered = count[start:end] > 0.5
        speakers[start:end][covered] = best[start:end][covered]
        if covered.all():
            continue
        inside = (spans[:, 0] < end) & (spans[:, 1] > start)
        candidates = np.flatnonzero(inside) if inside.any() else np.arange(len(spans))
        for frame in np.flatnonzero(~covered) + start:
            gaps = np.maximum(spans[candidates, 0] - frame, frame - spans[candidates, 1] + 1).clip(min=0)
            speakers[frame] = window_speaker[candidates[np.argmin(gaps)]]
    return speakers


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
    merged = _merged_runs(speakers, merge_gap_frames)
    extra = _merged_runs(second, 0) if second is not None else []
    order = {spk: i for i, spk in enumerate(dict.fromkeys(m[2] for m in sorted(merged + extra)))}
    turns = [(s, e, spk, False) for s, e, spk in merged] + [(s, e, spk, True) for s, e, spk in extra]
    return [
        SpeakerTurn(round(s * FRAME_S, 3), round(e * FRAME_S, 3), speaker_label(order[spk]), overlap)
        for s, e, spk, overlap in sorted(turns)
    ]


def _merged_runs(speakers: np.ndarray, merge_gap_frames: int) -> list[list[int]]:
    merged: list[list[int]] = []
    for start, end, speaker in _runs(speakers):
        if speaker < 0:
            continue
        if merged and merged[-1][2] == speaker and start - merged[-1][1] <= merge_gap_frames:
            merged[-1][1] = end
        else:
            merged.append([start, end, speaker])
    return merged


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
