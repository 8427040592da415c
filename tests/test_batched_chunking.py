"""Chunk packing, the chunk -> original time map, lanes, and timestamp splitting (no model needed)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from amanuensis.asr.batched import is_skip, split_by_timestamps, split_windows, take_words
from amanuensis.asr.chunking import (
    CHUNK_SAMPLES,
    Chunk,
    next_chunk,
    pack_chunks,
    plan_lanes,
    split_lanes,
    split_long_regions,
)
from amanuensis.asr.vad import FRAME_SAMPLES
from amanuensis.audio import SAMPLE_RATE

S = SAMPLE_RATE


def _covered(chunks: list[Chunk]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for chunk in chunks:
        for start, end in chunk.pieces:
            if merged and merged[-1][1] == start:
                merged[-1][1] = end
            else:
                merged.append([start, end])
    return [tuple(m) for m in merged]


def test_chunks_hold_at_most_30_s_and_cover_every_region_exactly_once():
    rng = np.random.default_rng(0)
    regions, position = [], 0
    for _ in range(60):
        position += int(rng.uniform(0.5, 4) * S)
        length = int(rng.uniform(0.3, 40) * S)
        regions.append((position, position + length))
        position += length
    probs = rng.uniform(0.6, 1.0, position // FRAME_SAMPLES + 1).astype(np.float32)
    chunks = pack_chunks(split_long_regions(regions, probs), probs)
    assert all(0 < c.num_samples <= CHUNK_SAMPLES for c in chunks)
    assert _covered(chunks) == _covered([Chunk(0, regions)])
    # tight: on average well over 25 s of speech per 30 s window
    assert sum(c.num_samples for c in chunks) / len(chunks) > 25 * S


def test_long_regions_are_cut_at_the_quietest_frame():
    probs = np.full(2000, 0.95, dtype=np.float32)
    pause = 700  # frame index, ~22.4 s
    probs[pause - 1 : pause + 2] = 0.02
    pieces = split_long_regions([(0, 2000 * FRAME_SAMPLES)], probs)
    assert abs(pieces[0][1] - (pause * FRAME_SAMPLES + FRAME_SAMPLES // 2)) <= FRAME_SAMPLES
    assert all(e - s <= CHUNK_SAMPLES for s, e in pieces)
    assert pieces[-1][1] == 2000 * FRAME_SAMPLES


def test_next_chunk_starts_at_a_position_inside_a_region():
    regions = [(0, 10 * S), (12 * S, 20 * S)]
    chunk = next_chunk(regions, 5 * S)
    assert chunk.pieces == [(5 * S, 10 * S), (12 * S, 20 * S)]
    assert next_chunk(regions, 20 * S) is None


def test_a_region_cut_at_a_pause_ends_the_chunk():
    # 20 s fit, the 28 s region is cut at its pause (27 s), and the 1 s region after it must wait:
    # putting it in this chunk would jump over the rest of the cut region
    regions = [(0, 20 * S), (22 * S, 50 * S), (52 * S, 53 * S)]
    probs = np.full(53 * S // FRAME_SAMPLES + 1, 0.95, dtype=np.float32)
    pause = 27 * S // FRAME_SAMPLES
    probs[pause - 1 : pause + 2] = 0.02
    chunk = next_chunk(regions, 0, probs)
    assert chunk.pieces[0] == (0, 20 * S)
    assert abs(chunk.pieces[-1][1] - 27 * S) <= FRAME_SAMPLES
    assert len(chunk.pieces) == 2
    following = next_chunk(regions, chunk.pieces[-1][1], probs)
    assert following.pieces[0][0] == chunk.pieces[-1][1]
    assert _covered(pack_chunks(regions, probs)) == regions


def test_time_map_skips_removed_silence_and_keeps_seam_ends_in_the_earlier_piece():
    chunk = Chunk(0, [(10 * S, 14 * S), (20 * S, 25 * S)])
    assert chunk.duration == 9.0
    assert chunk.to_original(0.0) == 10.0
    assert chunk.to_original(3.5) == 13.5
    assert chunk.to_original(4.0) == 20.0
    assert chunk.to_original(4.0, is_end=True) == 14.0
    assert chunk.to_original(6.0) == 22.0
    assert chunk.to_original(99.0, is_end=True) == 25.0


def test_a_seam_lies_between_two_times_only_where_audio_was_cut_out():
    chunk = Chunk(0, [(10 * S, 14 * S), (14 * S, 16 * S), (20 * S, 25 * S)])  # cut out: 16–20 s (chunk 6.0)
    assert chunk.seam_between(5.0, 7.0) and chunk.seam_between(7.0, 5.0)
    assert chunk.seam_between(1.0, 9.0)
    assert not chunk.seam_between(3.0, 5.0)  # pieces back to back in the original: nothing cut out
    assert not chunk.seam_between(6.5, 8.0)
    assert not chunk.seam_between(1.0, 1.5)


def test_chunk_audio_is_its_pieces_back_to_back():
    samples = np.arange(30 * S, dtype=np.float32)
    chunk = Chunk(0, [(S, 2 * S), (5 * S, 6 * S)])
    audio = chunk.audio(samples)
    assert len(audio) == 2 * S and audio[S] == 5 * S


def test_lanes_are_consecutive_and_balanced():
    regions = [(i * 10 * S, i * 10 * S + 8 * S) for i in range(20)]
    lanes = split_lanes(regions, 4)
    assert len(lanes) == 4
    assert [r for lane in lanes for r in lane] == regions
    assert max(len(lane) for lane in lanes) - min(len(lane) for lane in lanes) <= 1
    assert split_lanes(regions[:2], 8) == [[regions[0]], [regions[1]]]
    windows = split_windows(regions, 40 * S)
    assert [r for w in windows for r in w] == regions and len(windows) == 4


def test_planned_lanes_hold_whole_chunks_and_fit_the_batch():
    regions = [(i * 12 * S, i * 12 * S + 10 * S) for i in range(50)]  # 500 s of speech
    lanes = plan_lanes(regions, 8)
    assert 1 < len(lanes) <= 8
    assert [r for lane in lanes for r in lane] == regions
    speech = [sum(e - s for s, e in lane) for lane in lanes]
    # every lane but the last is filled to (not over) its share of whole 27 s chunks
    quota = max(speech[:-1])
    assert quota <= 3 * 27 * S and all(q >= quota - 10 * S for q in speech[:-1])
    assert plan_lanes([], 8) == []


TOKENIZER = SimpleNamespace(timestamp_begin=1000, eot=900)


def _ts(seconds: float) -> int:
    return 1000 + round(seconds / 0.02)


def test_timestamp_split_with_a_single_timestamp_ending_covers_up_to_it():
    tokens = [_ts(0), 1, 2, _ts(2.0), _ts(2.0), 3, _ts(5.0)]
    split = split_by_timestamps(tokens, TOKENIZER, 20.0)
    assert [(s, e, t) for s, e, t in split.complete] == [(0.0, 2.0, [1, 2]), (2.0, 5.0, [3])]
    assert split.trailing is None and split.covered == 5.0 and split.kept_tokens == tokens


def test_timestamp_split_leaves_an_unclosed_segment_as_trailing():
    tokens = [_ts(0), 1, _ts(3.0), _ts(3.0), 2, 3]
    split = split_by_timestamps(tokens, TOKENIZER, 10.0)
    assert split.complete == [(0.0, 3.0, [1])]
    assert split.trailing == (3.0, 10.0, [2, 3])
    assert split.covered == 3.0 and split.kept_tokens == tokens[:3]


def test_timestamp_split_without_timestamps_is_one_segment():
    split = split_by_timestamps([5, 6, 900], TOKENIZER, 7.5)
    assert split.complete == [(0.0, 7.5, [5, 6])] and split.covered == 7.5


@pytest.mark.parametrize("count,expected", [(3, ["a", "b"]), (1, ["a"])])
def test_words_are_taken_by_token_count(count, expected):
    words = [{"word": "a", "tokens": [1]}, {"word": "b", "tokens": [2, 3]}, {"word": "c", "tokens": [4]}]
    taken, rest = take_words(words, count)
    assert [w["word"] for w in taken] == expected
    assert len(taken) + len(rest) == 3


def test_a_word_across_a_seam_goes_to_the_piece_holding_most_of_it():
    chunk = Chunk(0, [(10 * S, 14 * S), (20 * S, 25 * S)])  # seam at chunk time 4.0
    assert chunk.span_to_original(3.9, 4.6) == (20.0, 20.6)  # mostly after the seam: starts where speech resumes
    assert chunk.span_to_original(3.2, 4.1) == (13.2, 14.0)  # mostly before it: ends where the piece ends
    assert chunk.span_to_original(1.0, 2.0) == (11.0, 12.0)


def test_word_and_segment_spans_are_cut_back_to_the_speech_the_vad_measured():
    from amanuensis.asr.speech_time import FRAME_S, trim_span, trim_word

    probs = np.zeros(400, dtype=np.float32)
    probs[round(1.0 / FRAME_S) : round(2.0 / FRAME_S)] = 0.9  # speech 1–2 s
    probs[round(4.0 / FRAME_S) : round(5.0 / FRAME_S)] = 0.9  # speech 4–5 s, a pause between
    start, end = trim_word(probs, 1.5, 3.9)  # a word stretched over the pause after it
    assert start == 1.5 and end == pytest.approx(2.1, abs=0.04)
    start, end = trim_word(probs, 2.2, 4.3)  # a word said after the pause, started in it
    assert start == pytest.approx(3.9, abs=0.04) and end == 4.3
    start, end = trim_word(probs, 2.4, 3.0)  # placed wholly in the pause: the nearer edge of speech
    assert (start, end) == pytest.approx((1.9, 2.1), abs=0.04)
    assert trim_word(probs, 8.0, 9.0) == (8.0, 9.0)  # no speech near: left as it is
    start, end = trim_span(probs, 0.0, 6.0)  # a segment keeps its inner pause, not the silence around
    assert (start, end) == pytest.approx((0.9, 5.1), abs=0.04)


def test_a_long_segment_of_slow_speech_is_not_a_skip():
    tokenizer = SimpleNamespace(decode=lambda tokens: "x" * len(tokens))
    assert is_skip(0.0, 12.0, [1] * 30, tokenizer)  # 30 characters in 12 s of speech: speech was jumped over
    assert not is_skip(0.0, 12.0, [1] * 30, tokenizer, speech_s=5.0)  # only 5 s of it is speech: slow speech
