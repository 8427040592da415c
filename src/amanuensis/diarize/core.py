"""diarize(samples) → speaker turns: VAD → window embeddings → clustering → turns."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from .cluster import MERGE_THRESHOLD, centroids, cluster_embeddings
from .encoder import EMBEDDING_SIZE, HOP, SAMPLE_RATE, SpeakerEncoder, get_encoder, mel_frames, volume_gain
from .turns import SpeakerTurn, frame_scores, frame_speakers, overlap_speakers, smooth, to_turns
from .windows import sliding_windows, speech_regions

log = logging.getLogger(__name__)


@dataclass
class DiarizeOptions:
    """Tuning knobs; times in seconds. The defaults suit conversations of read or spontaneous speech.

    Windows of `window_s` every `step_s` inside the VAD's speech regions are embedded; those of at least
    `min_cluster_window_s` are clustered (see cluster.py for `merge_threshold`); every 10 ms frame takes
    the speaker its covering windows resemble most; runs under `min_turn_s` join a neighbour, and turns
    of one speaker less than `merge_gap_s` apart are joined. Where a second speaker's mean window score
    comes within `overlap_margin` of the first's for `min_overlap_s` or more, both are speaking
    (overlapped speech, turns marked `overlap`).
    """

    window_s: float = 1.5
    step_s: float = 0.5
    min_window_s: float = 0.3
    min_cluster_window_s: float = 1.0
    merge_threshold: float = MERGE_THRESHOLD
    min_turn_s: float = 0.5
    overlap_margin: float = 0.1
    min_overlap_s: float = 0.3
    merge_gap_s: float = 1.0
    max_cluster_windows: int = 4000
    vad_min_silence_s: float = 0.25
    vad_pad_s: float = 0.1


def diarize(
    samples: np.ndarray,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    options: DiarizeOptions | None = None,
    encoder: SpeakerEncoder | None = None,
) -> list[SpeakerTurn]:
    """Speaker turns of 16 kHz mono float32 `samples`, labelled SPEAKER_00.. in order of first speech."""
    options = options or DiarizeOptions()
    began = time.perf_counter()
    encoder = encoder or get_encoder()  # first, so that a missing extra fails even on silence
    samples = np.asarray(samples, dtype=np.float32)
    regions = speech_regions(samples, options.vad_min_silence_s, options.vad_pad_s)
    if not regions:
        return []
    frames = _frames(options)
    windows = sliding_windows(regions, frames["window"], frames["step"], frames["min_window"])
    if not windows:  # only very short bursts of speech: one window over all of them
        windows = [(regions[0][0], regions[-1][1])]
    # The encoder's loudness normalisation, applied to the power mel (gain²) instead of to a copy of the
    # audio: an hour of audio is 230 MB, and neither the speech nor the scaled signal is copied.
    mel = mel_frames(samples)
    mel *= volume_gain(speech_rms(samples, regions)) ** 2
    embeddings = embed_windows(encoder, mel, windows)
    scores = score_windows(embeddings, windows, frames["min_cluster_window"], min_speakers, max_speakers, options)
    speakers = frame_speakers(len(mel), regions, windows, scores)
    speakers = smooth(speakers, frames["min_turn"])
    total, count = frame_scores(len(mel), windows, scores)
    second = overlap_speakers(speakers, total, count, options.overlap_margin, frames["min_overlap"])
    turns = to_turns(speakers, frames["merge_gap"], second)
    log.info(
        "diarized %.1f s: %d regions, %d windows, %d speakers, %d turns in %.2f s",
        len(samples) / SAMPLE_RATE,
        len(regions),
        len(windows),
        len({t.speaker for t in turns}),
        len(turns),
        time.perf_counter() - began,
    )
    return turns


def speech_rms(samples: np.ndarray, regions: list[tuple[int, int]]) -> float:
    """RMS of the audio inside `regions` (frame indices), without joining it."""
    power = sum(float(np.dot(samples[a * HOP : b * HOP], samples[a * HOP : b * HOP])) for a, b in regions)
    count = sum(len(samples[a * HOP : b * HOP]) for a, b in regions)
    return float(np.sqrt(power / count)) if count else 0.0


def score_windows(
    embeddings: np.ndarray,
    windows: list[tuple[int, int]],
    min_frames: int,
    min_speakers: int | None,
    max_speakers: int | None,
    options: DiarizeOptions,
) -> np.ndarray:
    """Similarity (n_windows, k) of every window to each speaker found by clustering the windows of at
    least `min_frames` (short ones embed poorly)."""
    chosen = np.flatnonzero([end - start >= min_frames for start, end in windows])
    if len(chosen) == 0:
        chosen = np.arange(len(windows))
    if len(chosen) > options.max_cluster_windows:  # bound the O(n^2) linkage on very long audio
        chosen = chosen[np.linspace(0, len(chosen) - 1, options.max_cluster_windows).round().astype(int)]
    subset = embeddings[chosen]
    labels = cluster_embeddings(subset, min_speakers, max_speakers, merge_threshold=options.merge_threshold)
    return embeddings @ centroids(subset, labels).T


def embed_windows(encoder: SpeakerEncoder, mel: np.ndarray, windows: list[tuple[int, int]]) -> np.ndarray:
    """Embedding of each (start, end) frame window of `mel`, batched by window length."""
    out = np.zeros((len(windows), EMBEDDING_SIZE), dtype=np.float32)
    by_length: dict[int, list[int]] = {}
    for index, (start, end) in enumerate(windows):
        by_length.setdefault(end - start, []).append(index)
    for indices in by_length.values():
        batch = np.stack([mel[windows[i][0] : windows[i][1]] for i in indices])
        out[indices] = encoder.embed(batch)
    return out


def _frames(options: DiarizeOptions) -> dict[str, int]:
    per_s = SAMPLE_RATE / HOP
    return {
        "window": max(1, round(options.window_s * per_s)),
        "step": max(1, round(options.step_s * per_s)),
        "min_window": max(1, round(options.min_window_s * per_s)),
        "min_cluster_window": round(options.min_cluster_window_s * per_s),
        "min_turn": round(options.min_turn_s * per_s),
        "min_overlap": round(options.min_overlap_s * per_s),
        "merge_gap": round(options.merge_gap_s * per_s),
    }
