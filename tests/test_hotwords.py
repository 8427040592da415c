"""Hotwords: the tokens every prompt leads with (as faster-whisper's `hotwords`), kept whole when previous
text is cut to a batch's common length; on real speech, the clip that says "ComfyUI"."""

from __future__ import annotations

import numpy as np
import pytest

from amanuensis.asr.decoding import DecodeSettings
from amanuensis.asr.engine import MAX_HOTWORD_TOKENS, MAX_PROMPT_TOKENS, ChunkJob
from amanuensis.options import TranscribeOptions

from .conftest import DATA

COMFY = DATA / "faster-whisper" / "hotwords.mp3"


@pytest.fixture(scope="module")
def engine(transcriber):
    return transcriber.batched.engine


def test_without_hotwords_the_prompt_is_unchanged(engine):
    tokenizer = engine.tokenizer()
    previous = list(range(1000, 1300))
    assert engine.prompt(tokenizer, previous) == [tokenizer.sot_prev, *previous[-MAX_PROMPT_TOKENS:],
                                                  *tokenizer.sot_sequence]
    assert engine.prompt(tokenizer, [], True, hotwords="  ") == [*tokenizer.sot_sequence, tokenizer.no_timestamps]


def test_hotwords_lead_every_prompt_and_previous_text_fills_the_room_left(engine):
    tokenizer = engine.tokenizer()
    hot = engine.hotword_tokens("ComfyUI, Kubernetes")
    assert hot == tokenizer.encode(" ComfyUI, Kubernetes") and hot
    assert engine.prompt(tokenizer, [], hotwords="ComfyUI, Kubernetes") == [tokenizer.sot_prev, *hot,
                                                                              *tokenizer.sot_sequence]
    previous = list(range(1000, 1300))
    prompt = engine.prompt(tokenizer, previous, hotwords="ComfyUI, Kubernetes")
    assert prompt[: 1 + len(hot)] == [tokenizer.sot_prev, *hot]
    assert prompt[1 + len(hot) : prompt.index(tokenizer.sot)] == previous[-(MAX_PROMPT_TOKENS - len(hot)) :]
    assert len(engine.hotword_tokens("word " * 500)) == MAX_HOTWORD_TOKENS


def test_a_batch_cuts_previous_text_to_a_common_length_but_never_the_hotwords(engine):
    tokenizer = engine.tokenizer()
    settings = DecodeSettings(hotwords="ComfyUI")
    hot = engine.hotword_tokens("ComfyUI")
    audio = np.zeros(16000, dtype=np.float32)
    jobs = [ChunkJob(audio, engine.prompt(tokenizer, previous, hotwords="ComfyUI"), settings)
            for previous in ([], list(range(1000, 1010)), list(range(2000, 2004)))]
    groups = dict((tuple(indices), prompts) for indices, prompts in engine._prompt_groups(jobs))
    assert groups[(0,)] == [jobs[0].prompt]  # no previous text: a batch of its own, hotwords kept
    assert groups[(1, 2)] == [[tokenizer.sot_prev, *hot, *range(1006, 1010), *tokenizer.sot_sequence],
                              [tokenizer.sot_prev, *hot, *range(2000, 2004), *tokenizer.sot_sequence]]


def test_hotwords_reach_the_settings_and_key_the_batches():
    assert TranscribeOptions(hotwords="ComfyUI").decode_settings().hotwords == "ComfyUI"
    assert TranscribeOptions().decode_settings() == DecodeSettings(word_timestamps=False)
    assert TranscribeOptions(hotwords="ComfyUI").decode_settings() != TranscribeOptions().decode_settings()


@pytest.mark.parametrize("mode", ["batched", "sequential"])
def test_the_clip_that_says_comfyui_is_heard_with_the_hotword(transcriber, mode):
    without = transcriber.transcribe(COMFY, TranscribeOptions(mode=mode)).text
    with_hotword = transcriber.transcribe(COMFY, TranscribeOptions(mode=mode, hotwords="ComfyUI")).text
    assert "ComfyUI" not in without
    assert "ComfyUI" in with_hotword, with_hotword
