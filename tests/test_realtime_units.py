"""The realtime pieces on their own: G.711 tables, the streaming resampler, live VAD = offline VAD,
turn detection on real speech (pauses too), local agreement, the step and window policy, event
validation, the final decode's cleaning and token budget."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.signal import resample_poly

from amanuensis.asr.live.final import EarlyFinal, FinalPolicy, keep_speech, likely_speech
from amanuensis.asr.live.streaming import (
    Hypothesis,
    StreamingPolicy,
    TurnBuffer,
    TurnStream,
    agreed_prefix,
    agreed_words,
    remaining_words,
    split_words,
)
from amanuensis.asr.live.turns import LiveTurns, LiveVad, TurnDetection
from amanuensis.asr.vad import default_vad
from amanuensis.audio import SAMPLE_RATE, decode_audio
from amanuensis.server.realtime.codecs import ALAW, ULAW, AudioFormatError, InputDecoder, InputFormat, StreamResampler
from amanuensis.server.realtime.config import SessionConfig, apply_update, transcribe_options
from amanuensis.server.realtime.protocol import ProtocolError, parse_event
from amanuensis.transcript import Segment, Transcript

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


def test_live_vad_started_mid_stream_keeps_the_stream_frame_grid():
    audio = decode_audio(JFK)
    start = 16000 + 100  # not on a frame boundary: the 412 samples before frame 32 are skipped
    live = LiveVad(start=start)
    assert live.frames == 32
    probs = np.concatenate([live.feed(audio[i : i + 1600]) for i in range(0, len(audio), 1600)])
    aligned = LiveVad().feed(audio[32 * 512 - start :])
    assert live.frames == 32 + len(probs) and np.array_equal(probs, aligned)
    turns = LiveTurns(TurnDetection(), start=start)
    events = [e for i in range(0, len(audio), 1600) for e in turns.feed(audio[i : i + 1600])]
    assert events and all(e.sample >= start - 16000 * 0.3 for e in events)  # stream time (less the padding)
    assert turns.scores.window(start + 412, 512) is not None and turns.scores.window(0, 512) is None


def _jfk_turn_events(detection: TurnDetection) -> list:
    """The live-turn events of JFK between 1 s silences, fed in 100 ms pieces."""
    silence = np.zeros(16000, dtype=np.float32)
    stream = np.concatenate([silence, decode_audio(JFK), silence])
    turns = LiveTurns(detection)
    return [e for i in range(0, len(stream), 1600) for e in turns.feed(stream[i : i + 1600])]


def test_live_turns_on_real_speech_with_a_pause():
    events = _jfk_turn_events(TurnDetection(silence_duration_ms=500, prefix_padding_ms=300))
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


def test_an_unknown_type_is_quoted_short():
    with pytest.raises(ProtocolError) as raised:
        parse_event(json.dumps({"type": "x" * 100_000}))
    assert raised.value.code == "invalid_event_type" and len(raised.value.message) < 120


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


def test_a_pause_inside_a_turn_is_announced_before_the_turn_stops():
    events = _jfk_turn_events(TurnDetection(silence_duration_ms=900, early_final_ms=200))
    kinds = [e.kind for e in events]
    # JFK pauses between phrases: pauses shorter than the turn's silence come back as speech
    assert "speech_resumed" in kinds, kinds
    stop = max(k for k, kind in enumerate(kinds) if kind == "speech_stopped")
    assert kinds[stop - 1] == "speech_paused", kinds  # the silence that ends the turn began as a pause
    gap = (events[stop].sample - events[stop - 1].sample) / 16000
    assert abs(gap - 0.7) < 0.05, gap  # 900 ms of silence stop the turn; the pause was called at 200 ms
    plain = [e.kind for e in _jfk_turn_events(TurnDetection(silence_duration_ms=900, early_final_ms=None))]
    assert plain == [k for k in kinds if k in ("speech_started", "speech_stopped")]


def _segment(text: str, no_speech: float, logprob: float, k: int = 0) -> Segment:
    return Segment(id=k, start=k, end=k + 1, text=text, avg_logprob=logprob, no_speech_prob=no_speech,
                   compression_ratio=1.0, temperature=0.0, tokens=[])


def test_final_keeps_speech_and_drops_unsure_guesses_at_silence():
    policy = FinalPolicy(no_speech_prob=0.3, avg_logprob=-0.7)
    speech = _segment(" Ask not what your country can do.", 0.05, -0.9, 0)  # unsure, but speech
    guess = _segment(" you", 0.97, -0.71, 1)  # a cough read as a word
    sure = _segment(" Thank you.", 0.5, -0.2, 2)  # the model is sure of it
    assert likely_speech(speech, policy) and not likely_speech(guess, policy) and likely_speech(sure, policy)
    transcript = Transcript(text="Ask not what your country can do. you Thank you.", language="en", duration=3.0,
                            segments=[speech, guess, sure])
    kept = keep_speech(transcript, policy)
    assert kept.text == "Ask not what your country can do. Thank you."
    assert [s.id for s in kept.segments] == [0, 1] and transcript.segments[1] is guess  # the input is unchanged
    assert keep_speech(kept, policy) is kept


def test_an_early_final_covers_only_its_own_turn():
    early = EarlyFinal("item_a", 16000, object())
    assert early.covers("item_a") and not early.covers("item_b") and not early.covers(None)


def test_live_decodes_stop_at_their_token_budget():
    """Live decodes carry the token cap (32 + max_tokens_per_second × seconds new tokens, which
    test_batched checks against CTranslate2): a model looping on a short turn stops there instead of
    at the model's 224 tokens, while real speech decodes whole. The open turn's decodes are greedy,
    the final decode takes the policy's beams."""
    from amanuensis.asr.engine import ChunkJob
    from amanuensis.pipeline import get_transcriber

    engine = get_transcriber().batched.engine
    audio = decode_audio(JFK)  # 11 s, about 30 text tokens
    for partial in (False, True):
        options = transcribe_options(SessionConfig(), partial=partial)
        settings = options.decode_settings()
        assert options.beam_size == (1 if partial else FinalPolicy().beam_size)
        assert settings.max_tokens_per_second == FinalPolicy().max_tokens_per_second
        assert settings.token_cap(len(audio) / SAMPLE_RATE) < 224
    prompt = engine.prompt(engine.tokenizer(), [])
    full = engine.run([ChunkJob(audio, prompt, settings)])[0]
    assert "ask not what your country" in full.text.lower(), full.text
    assert len(full.tokens) < settings.token_cap(len(audio) / SAMPLE_RATE)


def test_a_decode_at_a_pause_settles_the_turn_up_to_the_pause():
    stream = TurnStream(StreamingPolicy())
    h = lambda text: Hypothesis.from_segments([(text, 1.0)])  # noqa: E731
    stream.accept(h(" The cat"), (0, 16000), 0.1)
    assert stream.accept(h(" The cat sat"), (0, 24000), 0.1) == ["The", " cat"]
    # the final decode started at a pause 3 s in: its words past those confirmed are confirmed too
    assert stream.settle(split_words(" The cat sat on the mat."), 3 * 16000) == [" sat", " on", " the", " mat."]
    assert stream.window(4 * 16000) == (3 * 16000, 4 * 16000) and stream.prompt().endswith("on the mat.")
    assert stream.lag_s(4 * 16000) == 1.0
    # decoding goes on from the pause, agreement starting afresh
    assert stream.accept(h(" And then"), (3 * 16000, 4 * 16000), 0.1) == []
    assert stream.accept(h(" And then it"), (3 * 16000, 5 * 16000), 0.1) == [" And", " then"]
    assert stream.settle(split_words(" The cat sat"), 2 * 16000) == []  # the window is past that pause
    assert "".join(stream.confirmed) == "The cat sat on the mat. And then"


def test_agreement_carries_over_one_word_read_two_ways():
    previous = split_words(" I'm talking pretty fast here, there's nothing going on")
    newest = split_words(" I'm talking pretty fast hear there's nothing going on and")
    assert agreed_prefix(previous, newest) == 4
    assert agreed_words(previous, newest, 4, slack=0) == 4  # plain LocalAgreement-2
    assert agreed_words(previous, newest, 4, slack=2) == 9  # "hear" (the newest reading) and on to "on"
    # a longer disagreement, or one word in common after it, is no agreement
    assert agreed_words(split_words(" a b c d e f"), split_words(" a x y z e f"), 1, slack=2) == 1
    assert agreed_words(split_words(" a b c d"), split_words(" a x c y"), 1, slack=2, rejoin=2) == 1
    stream = TurnStream(StreamingPolicy(agreement_slack=2))
    stream.accept(Hypothesis(previous), (0, 48000), 0.1)
    assert "".join(stream.accept(Hypothesis(newest), (0, 56000), 0.1)) == (
        "I'm talking pretty fast hear there's nothing going on")


def test_realtime_is_a_declared_door_for_language_prompt_and_hotwords():
    from dataclasses import fields

    from amanuensis.options import REALTIME, exposed
    from amanuensis.server.realtime.protocol import Transcription

    names = {option.name for option in exposed(REALTIME)}
    assert names == {"language", "prompt", "hotwords"}
    assert names <= set(Transcription.model_fields) and names <= {f.name for f in fields(SessionConfig)}
    event = parse_event(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {
        "input": {"transcription": {"language": "EN", "prompt": "  Kennedy, Americans.  ", "hotwords": "JFK"}}}}}))
    config, _ = apply_update(SessionConfig(), event)
    assert (config.language, config.prompt) == ("en", "Kennedy, Americans.")  # taken as the other doors take them
    assert config.hotwords == "JFK"
    final = transcribe_options(config, partial=False)
    partial = transcribe_options(config, partial=True, prompt="ask not")
    assert (final.language, final.initial_prompt) == ("en", "Kennedy, Americans.")
    assert final.hotwords == partial.hotwords == "JFK"  # every decode of the session leads with them
    assert final.word_timestamps and final.vad_filter and final.beam_size == 5 and final.temperature == 0.0
    assert partial.initial_prompt == "ask not" and not partial.word_timestamps and not partial.vad_filter
    assert partial.beam_size == 1
    assert transcribe_options(config, partial=False, policy=FinalPolicy(beam_size=2)).beam_size == 2


class _FlakyTranscriber:
    """The real transcriber, whose first `failures` calls raise."""

    def __init__(self, failures: int) -> None:
        from amanuensis.pipeline import get_transcriber

        self.inner, self.failures, self.calls = get_transcriber(), failures, 0

    def transcribe(self, audio, options, **kwargs):
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("decoder out of memory")
        return self.inner.transcribe(audio, options, **kwargs)


def _final_events(failures: int, early_fails: bool) -> tuple[list[dict], int]:
    """Run one closed JFK turn through a session's final decoder; returns (events sent, decode calls)."""
    import asyncio
    import time

    from amanuensis.asr.live.streaming import TurnBuffer
    from amanuensis.server.realtime.registry import SessionRegistry
    from amanuensis.server.realtime.turn_decoder import ClosedTurn, Recognizer, TurnDecoder

    transcriber = _FlakyTranscriber(failures)

    async def run() -> list[dict]:
        loop = asyncio.get_running_loop()
        early = None
        if early_fails:
            early = loop.create_future()
            early.set_exception(RuntimeError("early decode lost"))
        events: list[dict] = []
        registry = SessionRegistry(1)
        decoder = TurnDecoder("sess_test", registry, TurnBuffer(), Recognizer(SessionConfig(), transcriber, "tiny.en"),
                              events.append, FinalPolicy())
        turn = ClosedTurn("item_1", 0, decode_audio(JFK), [], SessionConfig(), transcriber, time.monotonic(), early)
        decoder.pending.append(turn)
        await decoder.finals.put(turn)
        await decoder.finals.put(None)
        await decoder._finals()
        registry.shutdown()
        return events

    return asyncio.run(run()), transcriber.calls


@pytest.mark.parametrize(("failures", "early_fails"), [(0, True), (1, False)])
def test_a_failed_final_decode_is_tried_again(failures, early_fails):
    """An early final that failed, or a final decode that failed once, is decoded again from the turn's
    audio: the turn is `.completed` with its words, not `.failed`."""
    events, calls = _final_events(failures, early_fails)
    assert calls == failures + 1
    kinds = [event["type"] for event in events]
    assert kinds[-1] == "conversation.item.input_audio_transcription.completed", kinds
    assert "ask not what your country" in events[-1]["transcript"].lower()


def test_a_final_decode_that_keeps_failing_is_reported_failed():
    events, calls = _final_events(5, True)
    assert calls == 1  # the early decode and one decode of the turn's audio: two tries in all
    assert [event["type"] for event in events] == ["conversation.item.input_audio_transcription.failed"]
    assert events[0]["error"]["code"] == "transcription_failed" and "out of memory" in events[0]["error"]["message"]


def test_partial_decodes_fit_the_shortest_encoder_window():
    """Partial decodes leave a short encoder margin, so a window up to the policy's longest is encoded in
    the 10 s window (a 20 s one costs about three times as much); final decodes keep the engine's margin."""
    from amanuensis.asr.engine import SHORTEST_WINDOW_FRAMES, window_frames

    policy = StreamingPolicy()
    partial = transcribe_options(SessionConfig(), partial=True, margin_s=policy.encoder_margin_s).decode_settings()
    final = transcribe_options(SessionConfig(), partial=False).decode_settings()
    longest = round(policy.max_window_s * SAMPLE_RATE)
    assert window_frames(longest, partial.window_margin_s) == SHORTEST_WINDOW_FRAMES
    assert window_frames(longest, final.window_margin_s) > SHORTEST_WINDOW_FRAMES
    assert final.window_margin_s == transcribe_options(SessionConfig(), partial=True).decode_settings().window_margin_s


def test_finals_hold_back_partial_decodes_only_on_their_own_replica():
    """With `--workers 2` a final owed on one model replica does not stop the open turns of sessions on
    the other replica from being decoded."""
    from amanuensis.server.realtime.registry import SessionRegistry

    sessions, first, second = SessionRegistry(2), object(), object()
    try:
        sessions.try_open("sess_a")
        sessions.final_waiting(+1, first)  # a turn closed on the first replica
        assert sessions.finals_pending_on(first) == 1 and sessions.finals_pending_on(second) == 0
        sessions.turn_done("sess_a", 1.5, first)
        assert sessions.finals_pending_on(first) == 0 and sessions.snapshot()["turns"] == 1
    finally:
        sessions.shutdown()


def test_shutdown_asks_open_sessions_to_finish_and_takes_no_new_ones():
    import asyncio

    from amanuensis.server.realtime.registry import SessionRegistry

    sessions = SessionRegistry(2)

    async def run() -> tuple[int, bool, int | None]:
        sessions.try_open("sess_a")
        stop = sessions.stops.setdefault("sess_a", asyncio.Event())

        async def session() -> None:  # a session that closes once asked to
            await stop.wait()
            sessions.close("sess_a")

        task = asyncio.create_task(session())
        left = await sessions.finish(5.0)
        await task
        return left, stop.is_set(), sessions.try_open("sess_b")

    try:
        assert asyncio.run(run()) == (0, True, None)
    finally:
        sessions.shutdown()
