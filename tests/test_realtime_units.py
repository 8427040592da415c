"""The realtime pieces on their own: G.711 tables, the streaming resampler, live VAD = offline VAD,
turn detection on real speech, local agreement, the step and window policy, event validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.signal import resample_poly

from amanuensis.asr.streaming import (
    Hypothesis,
    LiveTurns,
    LiveVad,
    StreamingPolicy,
    TurnBuffer,
    TurnDetection,
    TurnStream,
    agreed_prefix,
    remaining_words,
    split_words,
)
from amanuensis.asr.vad import default_vad
from amanuensis.audio import decode_audio
from amanuensis.server.realtime.codecs import ALAW, ULAW, AudioFormatError, InputDecoder, InputFormat, StreamResampler
from amanuensis.server.realtime.config import SessionConfig, apply_update
from amanuensis.server.realtime.protocol import ProtocolError, parse_event

from .server_fixtures import JFK


def test_g711_tables_match_the_standard():
    # ITU-T G.711 reference points: silence, the extremes, the smallest steps
    assert (ULAW[0xFF], ULAW[0x7F], ULAW[0x80], ULAW[0x00]) == (0, 0, 32124, -32124)
    assert (ALAW[0xD5], ALAW[0x55], ALAW[0xAA], ALAW[0x2A]) == (8, -8, 32256, -32256)
    assert len(set(ULAW.tolist())) == 255 and len(set(ALAW.tolist())) == 256  # µ-law has +0 and -0
    audioop = pytest.importorskip("audioop")
    assert ULAW.tobytes() == audioop.ulaw2lin(bytes(range(256)), 2)
    assert ALAW.tobytes() == audioop.alaw2lin(bytes(range(256)), 2)


@pytest.mark.parametrize("rate", [24000, 8000])
def test_stream_resampler_equals_one_pass_over_the_stream(rate):
    rng = np.random.default_rng(rate)
    signal = rng.standard_normal(rate * 3).astype(np.float32) * 0.1
    whole = resample_poly(signal, *{24000: (2, 3), 8000: (2, 1)}[rate])
    resampler, out, at = StreamResampler(rate), [], 0
    while at < len(signal):
        size = int(rng.integers(1, 3000))
        out.append(resampler.feed(signal[at : at + size]))
        at += size
    out.append(resampler.flush())
    streamed = np.concatenate(out)
    assert len(streamed) == len(whole)
    assert np.max(np.abs(streamed - whole)) < 1e-5


def test_input_decoder_rejects_odd_pcm16_and_decodes_16k_unchanged():
    decoder = InputDecoder(InputFormat("audio/pcm", 16000))
    with pytest.raises(AudioFormatError):
        decoder.decode(b"\x00\x01\x02")
    samples = decoder.decode(np.array([0, 16384, -32768], dtype="<i2").tobytes())
    assert samples.tolist() == [0.0, 0.5, -1.0]


def test_live_vad_in_100ms_pieces_equals_one_pass():
    audio = decode_audio(JFK)
    offline = default_vad().probabilities(audio)
    live = LiveVad()
    pieces = [live.feed(audio[i : i + 1600]) for i in range(0, len(audio), 1600)]
    streamed = np.concatenate(pieces)
    assert len(streamed) == len(audio) // 512
    assert np.max(np.abs(streamed - offline[: len(streamed)])) < 1e-4


def test_live_turns_on_real_speech_with_a_pause():
    audio = decode_audio(JFK)
    silence = np.zeros(16000, dtype=np.float32)
    stream = np.concatenate([silence, audio, silence])
    turns = LiveTurns(TurnDetection(silence_duration_ms=500, prefix_padding_ms=300))
    events = [e for i in range(0, len(stream), 1600) for e in turns.feed(stream[i : i + 1600])]
    kinds = [e.kind for e in events if e.kind in ("speech_started", "speech_stopped")]
    assert kinds[0] == "speech_started" and kinds[-1] == "speech_stopped", kinds
    assert kinds == ["speech_started", "speech_stopped"] * (len(kinds) // 2), kinds
    # inside a turn a pause is announced once, and taken back only by speech before the stop
    open_turn, paused = False, False
    for event in events:
        if event.kind == "speech_paused":
            assert open_turn and not paused
        elif event.kind == "speech_resumed":
            assert open_turn and paused
        elif event.kind == "speech_stopped":
            open_turn = False
        else:
            open_turn = True
        paused = event.kind == "speech_paused"
    assert 0.4 <= events[0].sample / 16000 <= 1.2  # speech begins about 1 s in, minus the padding
    assert events[-1].sample / 16000 >= 1.0 + 10.0  # and ends after the clip's last word


def test_turn_buffer_keeps_prefix_padding_and_the_audio_after_a_turn():
    buffer = TurnBuffer(keep=100)
    buffer.append(np.arange(500, dtype=np.float32))
    assert buffer.start_turn(300) == 400  # only the last 100 samples were kept
    buffer.append(np.arange(500, 700, dtype=np.float32))
    start, audio = buffer.take_turn(650)
    assert start == 400 and audio[0] == 400 and audio[-1] == 649 and len(audio) == 250
    assert buffer.start_turn(600) == 650  # audio after the turn's end stays for the next
    assert buffer.turn_audio()[0] == 650


def test_local_agreement_confirms_only_what_two_hypotheses_share():
    stream = TurnStream(StreamingPolicy(min_step_s=0.5, step_per_decode=1.5))
    h = lambda text, end=1.0: Hypothesis.from_segments([(text, end)])  # noqa: E731
    assert stream.accept(h(" The cat"), (0, 16000), 0.1) == []
    assert stream.accept(h(" The cat sat"), (0, 24000), 0.1) == ["The", " cat"]
    assert stream.accept(h(" the cat, sat on"), (0, 32000), 0.1) == [" sat"]
    # "cat" is never taken back; words after it are confirmed once two hypotheses agree up to them
    assert stream.accept(h(" The dog sat on the mat"), (0, 40000), 0.1) == []
    assert stream.accept(h(" The dog sat on the mat."), (0, 48000), 0.1) == [" on", " the", " mat."]
    assert "".join(stream.confirmed) == "The cat sat on the mat."
    assert agreed_prefix(split_words(" Hello, world"), split_words(" hello world!")) == 2


def test_slow_decodes_grow_the_step_and_lag_stays_bounded():
    policy = StreamingPolicy(min_step_s=0.5, max_step_s=5.0, step_per_decode=1.5)
    stream = TurnStream(policy)
    assert stream.due(int(0.6 * 16000)) and not stream.due(int(0.5 * 16000))
    stream.accept(Hypothesis([" a"]), (0, 16000), decode_s=2.0)
    assert stream.step_s == 3.0
    assert not stream.due(16000 + 2 * 16000) and stream.due(16000 + 3 * 16000)
    stream.accept(Hypothesis([" a"]), (0, 64000), decode_s=10.0)
    assert stream.step_s == 5.0 and stream.lag_s(64000) == 0.0


def test_window_moves_past_confirmed_segments():
    stream = TurnStream(StreamingPolicy(window_s=8.0, max_window_s=20.0))
    first = Hypothesis.from_segments([(" One two three.", 4.0), (" Four five", 9.0)])
    stream.accept(first, (0, 9 * 16000), 0.1)
    stream.accept(first, (0, 9 * 16000 + 8000), 0.1)
    assert stream.window_start == 4 * 16000  # past the confirmed first segment
    assert "three" in (stream.prompt() or "")
    later = Hypothesis.from_segments([(" Four five six", 6.0)])
    assert stream.accept(later, (4 * 16000, 10 * 16000), 0.1) == []  # "six" seen once
    again = Hypothesis.from_segments([(" Four five six seven", 7.0)])
    assert stream.accept(again, (4 * 16000, 11 * 16000), 0.1) == [" six"]
    assert "".join(stream.confirmed) == "One two three. Four five six"


def test_remaining_words_after_the_deltas():
    final = split_words(" The cat sat on the mat.")
    assert remaining_words(["The", " cat"], final) == [" sat", " on", " the", " mat."]
    assert remaining_words([], final) == final
    assert remaining_words(["The", " cat", " sat", " on", " the", " mat"], final) == []


@pytest.mark.parametrize(("event", "param", "code"), [
    ({"type": "nope"}, "type", "invalid_event_type"),
    ({"audio": "AAAA"}, "type", "missing_required_parameter"),
    ({"type": "response.create"}, "type", "unsupported_event"),
    ({"type": "input_audio_buffer.append"}, "audio", "invalid_value"),
    ({"type": "input_audio_buffer.append", "audio": 5}, "audio", "invalid_value"),
    ({"type": "session.update", "session": {"type": "realtime"}}, "session.type", "invalid_value"),
    ({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "turn_detection": {"type": "server_vad", "threshold": 2}}}}},
     "session.audio.input.turn_detection.threshold", "invalid_value"),
    ({"type": "transcription_session.update", "session": {"input_audio_format": "mp3"}},
     "session.input_audio_format", "invalid_value"),
])
def test_bad_events_name_the_field(event, param, code):
    with pytest.raises(ProtocolError) as raised:
        parse_event(json.dumps(event))
    assert (raised.value.param, raised.value.code) == (param, code), raised.value.message


def test_session_update_changes_only_the_fields_it_names():
    config = SessionConfig()
    event = parse_event(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {
        "input": {"format": {"type": "audio/pcmu"}, "transcription": {"language": "en"}}}}}))
    updated, _ = apply_update(config, event)
    assert updated.format == InputFormat("audio/pcmu", 8000) and updated.language == "en"
    assert updated.turn_detection == config.turn_detection
    off = parse_event(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {
        "input": {"turn_detection": None}}}}))
    assert apply_update(updated, off)[0].turn_detection is None
    with pytest.raises(ProtocolError) as raised:
        apply_update(config, parse_event(json.dumps({"type": "session.update", "session": {
            "type": "transcription", "audio": {"input": {"format": {"type": "audio/pcmu", "rate": 24000}}}}})))
    assert raised.value.param == "session.audio.input.format.rate"
