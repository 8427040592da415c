"""diarize(samples) → speaker turns.

1. Local segmentation: 10 s chunks every `step_s`; in each, the segmentation network marks up to three
   local speakers, every 16.875 ms, two of them at most at once (overlapped speech).
2. Voice units: the stretches of each local speaker's speech (see `voice_units`), each with one CAM++
   embedding pooled over the frames where it talks alone.
3. The units with enough speech alone are clustered into global speakers (cluster.py); every unit then
   takes a global one, and units of two local speakers of one chunk never the same one (the network
   tells the voices of a chunk apart). A voice that fits no speaker becomes one of its own only with
   enough speech, each moment counted once however many chunks heard it.
4. Reconstruction: per frame, each global speaker's activity and the number of voices are averaged over
   the chunks that cover it (their middles weigh most); the most active speakers, as many as there are
   voices, are speaking.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from ..constants import SAMPLE_RATE
from .cluster import MERGE_THRESHOLD, MIN_CLUSTER_SIZE, SPLIT_THRESHOLD, centroids, cluster_embeddings
from .encoder import SpeakerEncoder, get_encoder
from .segmentation import CHUNK_SAMPLES, FRAME_DURATION_S, FRAME_STEP_S, LOCAL_SPEAKERS, chunk_frames
from .turns import FRAME_S, SpeakerTurn, drop_short_runs, merged_runs, smooth, to_turns

log = logging.getLogger(__name__)


@dataclass
class DiarizeOptions:
    """Tuning knobs; times in seconds. The defaults suit meetings and conversations.

    A local speaker needs `min_active_s` of speech in a chunk to be kept; its speech is split into
    stretches at pauses of `merge_gap_s`, and a voice unit needs `min_cluster_s` of speech alone for its
    embedding to take part in clustering (shorter ones only join a speaker found from the others). Voices
    that fit none of those speakers are a new speaker only with `min_new_speaker_s` of speech. Runs of one
    speaker under `min_turn_s` join a neighbour; turns of one speaker less than `merge_gap_s` apart are
    joined.
    """

    step_s: float = 2.5
    min_active_s: float = 0.2
    min_cluster_s: float = 1.5
    split_threshold: float = SPLIT_THRESHOLD
    merge_threshold: float = MERGE_THRESHOLD
    min_cluster_size: int = MIN_CLUSTER_SIZE
    min_new_speaker_s: float = 0.5
    min_turn_s: float = 0.3
    merge_gap_s: float = 0.5
    max_cluster_embeddings: int = 4000
    batch_chunks: int = 16


@dataclass
class LocalSpeakers:
    """What steps 1 and 2 found: per chunk its start (samples) and activity (frames, 3); per voice unit
    its chunk, its local speaker there, its frames in that chunk (0/1), its embedding and its seconds of
    speech without overlap."""

    starts: list[int]
    activity: list[np.ndarray]
    chunk_of: np.ndarray
    speaker_of: np.ndarray
    masks: np.ndarray
    embeddings: np.ndarray
    clean_s: np.ndarray

    @property
    def offsets(self) -> list[int]:
        """Each chunk's start in segmentation frames of the whole recording."""
        return [round(start / SAMPLE_RATE / FRAME_STEP_S) for start in self.starts]


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
    local = local_speakers(encoder, samples, options)
    if len(local.chunk_of) == 0:
        return []
    labels = assign_global(local, min_speakers, max_speakers, options)
    main, second = reconstruct(local, labels, len(samples), min_speakers)
    main = smooth(main, round(options.min_turn_s / FRAME_S))
    second[main < 0] = -1
    second[second == main] = -1
    second = drop_short_runs(second, round(options.min_turn_s / FRAME_S))
    turns = to_turns(main, round(options.merge_gap_s / FRAME_S), second)
    log.info(
        "diarized %.1f s: %d chunks, %d voice units, %d speakers, %d turns in %.2f s",
        len(samples) / SAMPLE_RATE,
        len(local.starts),
        len(local.chunk_of),
        len({t.speaker for t in turns}),
        len(turns),
        time.perf_counter() - began,
    )
    return turns


def chunk_starts(n_samples: int, step: int) -> list[int]:
    """Start of every 10 s chunk: every `step` samples, and one more ending with the audio unless the
    last one ends less than a frame before it (that chunk would be the same one again)."""
    last = max(0, n_samples - CHUNK_SAMPLES)
    starts = list(range(0, last + 1, step))
    if last - starts[-1] >= FRAME_STEP_S * SAMPLE_RATE:
        starts.append(last)
    return starts


def local_speakers(encoder: SpeakerEncoder, samples: np.ndarray, options: DiarizeOptions) -> LocalSpeakers:
    """Steps 1 and 2: segment every chunk and embed the voice units it holds (see `voice_units`)."""
    starts = chunk_starts(len(samples), max(1, round(options.step_s * SAMPLE_RATE)))
    activity: list[np.ndarray] = []
    chunk_of: list[int] = []
    speaker_of: list[int] = []
    masks: list[np.ndarray] = []
    embeddings: list[np.ndarray] = []
    clean: list[float] = []
    for first in range(0, len(starts), options.batch_chunks):
        batch = starts[first : first + options.batch_chunks]
        chunks = np.zeros((len(batch), CHUNK_SAMPLES), dtype=np.float32)
        for row, start in enumerate(batch):
            piece = samples[start : start + CHUNK_SAMPLES]
            chunks[row, : len(piece)] = piece
        for row, found in enumerate(encoder.segment(chunks)):
            span = min(CHUNK_SAMPLES, len(samples) - batch[row])
            frames = min(len(found), max(1, int(np.ceil(chunk_frames() * span / CHUNK_SAMPLES))))
            found[frames:] = 0  # the zero padding of a recording shorter than a chunk
            activity.append(found)
            units, pooled, alone, speakers = voice_units(found, options)
            if not units:
                continue
            embeddings.append(encoder.embed_masked(chunks[row, :span], pooled[:, :frames]))
            chunk_of += [first + row] * len(units)
            speaker_of += speakers
            masks += units
            clean += [float(a.sum()) * FRAME_STEP_S for a in alone]
    return LocalSpeakers(
        starts,
        activity,
        np.array(chunk_of, dtype=int),
        np.array(speaker_of, dtype=int),
        np.array(masks, dtype=np.uint8).reshape(len(masks), chunk_frames()),
        np.concatenate(embeddings) if embeddings else np.zeros((0, 1), dtype=np.float32),
        np.array(clean),
    )


def voice_units(
    found: np.ndarray, options: DiarizeOptions
) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray], list[int]]:
    """The voice units of one chunk's activity (frames, 3): each stretch of a local speaker's speech with
    `min_cluster_s` of it alone is a unit, judged by its own voice; the rest of that local speaker's
    speech is one more unit. Returns the units' masks, the masks to pool the embeddings over (the frames
    alone where there are enough) and the frames alone of each unit."""
    min_active = max(1, round(options.min_active_s / FRAME_STEP_S))
    min_clean = max(1, round(options.min_cluster_s / FRAME_STEP_S))
    gap = max(1, round(options.merge_gap_s / FRAME_STEP_S))
    single = found.sum(axis=1) == 1
    units: list[np.ndarray] = []
    pooled: list[np.ndarray] = []
    alone: list[np.ndarray] = []
    speakers: list[int] = []

    def add(mask: np.ndarray) -> None:
        clean = mask * single
        speakers.append(speaker)
        units.append(mask)
        alone.append(clean)
        pooled.append(clean if clean.sum() >= min_active else mask)

    for speaker in range(LOCAL_SPEAKERS):
        talking = found[:, speaker]
        if talking.sum() < min_active:
            continue
        rest = talking.copy()
        for start, end, _ in merged_runs(np.where(talking > 0, 0, -1), gap - 1):
            if (talking[start:end] * single[start:end]).sum() >= min_clean:
                mask = np.zeros_like(talking)
                mask[start:end] = talking[start:end]
                rest[start:end] = 0
                add(mask)
        if rest.sum() >= min_active:
            add(rest)
    pooled_masks = np.array(pooled, dtype=np.float32).reshape(len(pooled), len(found))
    return units, pooled_masks, alone, speakers


def assign_global(
    local: LocalSpeakers, min_speakers: int | None, max_speakers: int | None, options: DiarizeOptions
) -> np.ndarray:
    """Step 3: a global speaker per voice unit. Units with enough speech alone are clustered; every unit
    then takes its most similar speaker, and units of two local speakers of one chunk never the same one
    (voices left over are placed by `_place_leftovers`)."""
    chosen = np.flatnonzero(local.clean_s >= options.min_cluster_s)
    if len(chosen) == 0:
        chosen = np.array([int(np.argmax(local.clean_s))])
    if len(chosen) > options.max_cluster_embeddings:  # bound the O(n^2) linkage on very long audio
        chosen = chosen[np.linspace(0, len(chosen) - 1, options.max_cluster_embeddings).round().astype(int)]
    subset = local.embeddings[chosen]
    clusters = cluster_embeddings(
        subset,
        min_speakers,
        max_speakers,
        split_threshold=options.split_threshold,
        merge_threshold=options.merge_threshold,
        min_cluster_size=options.min_cluster_size,
    )
    similarity = local.embeddings @ centroids(subset, clusters).T
    labels = np.argmax(similarity, axis=1)
    leftover = []
    for chunk in np.unique(local.chunk_of):
        rows = np.flatnonzero(local.chunk_of == chunk)
        order = rows[np.argsort(-similarity[rows, labels[rows]])]  # the surest unit keeps its speaker
        for position, row in enumerate(order):
            earlier = order[:position]
            if not _clashes(local, earlier, labels, row, labels[row]):
                continue
            free = [c for c in np.argsort(-similarity[row]) if not _clashes(local, earlier, labels, row, c)]
            if free:
                labels[row] = free[0]
            else:
                leftover.append(row)
    if leftover:
        _place_leftovers(local, labels, np.array(leftover), similarity.shape[1], max_speakers, options)
    return labels


def _place_leftovers(
    local: LocalSpeakers,
    labels: np.ndarray,
    leftover: np.ndarray,
    k: int,
    max_speakers: int | None,
    options: DiarizeOptions,
) -> None:
    """Voices that clash with every speaker found, in place: each group of alike ones becomes a new speaker
    when it holds `min_new_speaker_s` of speech and `max_speakers` allows; the rest join the most similar
    speaker they do not clash with (else keep their most similar one)."""
    groups = cluster_embeddings(
        local.embeddings[leftover],
        split_threshold=options.split_threshold,
        merge_threshold=options.merge_threshold,
        min_cluster_size=1,
    )
    placed = np.ones(len(labels), dtype=bool)
    placed[leftover] = False
    for group in range(int(groups.max()) + 1):
        rows = leftover[groups == group]
        if heard_seconds(local, rows) >= options.min_new_speaker_s and (max_speakers is None or k < max_speakers):
            labels[rows], placed[rows], k = k, True, k + 1
    centres = centroids(local.embeddings[placed], labels[placed], k)
    for row in leftover[~placed[leftover]]:
        others = np.flatnonzero((local.chunk_of == local.chunk_of[row]) & placed)
        ranked = np.argsort(-(centres @ local.embeddings[row]))
        free = [c for c in ranked if not _clashes(local, others, labels, row, c)]
        if free:
            labels[row] = free[0]
        placed[row] = True


def heard_seconds(local: LocalSpeakers, rows: np.ndarray) -> float:
    """Seconds of audio the units `rows` cover, each moment once however many chunks heard it."""
    offsets = local.offsets
    frames = [offsets[local.chunk_of[row]] + np.flatnonzero(local.masks[row]) for row in rows]
    return len(np.unique(np.concatenate(frames))) * FRAME_STEP_S if frames else 0.0


def _clashes(local: LocalSpeakers, others: np.ndarray, labels: np.ndarray, row: int, label: int) -> bool:
    """True when a unit of `others` (of the row's chunk) has `label` but is another local speaker."""
    return any(labels[o] == label and local.speaker_of[o] != local.speaker_of[row] for o in others)


def reconstruct(
    local: LocalSpeakers, labels: np.ndarray, n_samples: int, min_speakers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Step 4: per 10 ms frame the main speaker and an overlapping second one (-1 where none).

    Each chunk's votes are weighted by a Hamming window: the network hears least at a chunk's edges.
    A speaker that wins no frame, while `min_speakers` asks for it, takes the frames of speech where it is
    at least half as active as at its most."""
    k = int(labels.max()) + 1
    per_frame = chunk_frames()
    n_global = int(np.ceil(n_samples / SAMPLE_RATE / FRAME_STEP_S)) + per_frame
    active = np.zeros((n_global, k), dtype=np.float32)
    voices = np.zeros(n_global, dtype=np.float32)
    covered = np.zeros(n_global, dtype=np.float32)
    offsets = local.offsets
    weight = np.hamming(per_frame).astype(np.float32)
    for offset, found in zip(offsets, local.activity):
        covered[offset : offset + per_frame] += weight
        voices[offset : offset + per_frame] += found.sum(axis=1) * weight
    for chunk in np.unique(local.chunk_of):
        rows = np.flatnonzero(local.chunk_of == chunk)
        mine = np.zeros((per_frame, k), dtype=np.float32)
        for row in rows:
            np.maximum(mine[:, labels[row]], local.masks[row], out=mine[:, labels[row]])
        active[offsets[chunk] : offsets[chunk] + per_frame] += mine * weight[:, None]
    covered = np.maximum(covered, 1e-3)
    active /= covered[:, None]
    count = np.rint(voices / covered).astype(int)
    best, runner_up = _two_most_active(active)
    main_global = np.where(count >= 1, best, -1)
    for missing in sorted(set(range(min(k, min_speakers or 0))) - set(main_global.tolist())):
        strongest = active[:, missing] >= 0.5 * active[:, missing].max()
        main_global[strongest & (main_global >= 0) & (active[:, missing] > 0)] = missing
    second_global = np.where(count >= 2, runner_up, -1)
    # 10 ms frame t reads the segmentation frame whose receptive field is centred nearest to its centre.
    n_frames = int(np.ceil(n_samples / SAMPLE_RATE / FRAME_S))
    centres = (np.arange(n_frames) + 0.5) * FRAME_S - FRAME_DURATION_S / 2
    source = np.rint(centres / FRAME_STEP_S).astype(int).clip(0, n_global - 1)
    return main_global[source].copy(), second_global[source].copy()


def _two_most_active(active: np.ndarray, block: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Per frame the most and second most active speaker (-1 where that one is not active at all),
    ranked block by block so that an hour with many speakers needs no second (frames, speakers) array."""
    best = np.full(len(active), -1)
    runner_up = np.full(len(active), -1)
    for start in range(0, len(active), block):
        part = active[start : start + block]
        order = np.argsort(-part, axis=1)[:, :2]
        top = np.take_along_axis(part, order, axis=1)
        best[start : start + block] = np.where(top[:, 0] > 0, order[:, 0], -1)
        if order.shape[1] > 1:
            runner_up[start : start + block] = np.where(top[:, 1] > 0, order[:, 1], -1)
    return best, runner_up
