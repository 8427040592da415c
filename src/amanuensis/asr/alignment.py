"""Word times of decoded chunks: CTranslate2's cross-attention alignment of the text to the audio."""

from __future__ import annotations

import ctranslate2
import numpy as np

from ..constants import HOP_LENGTH, N_FRAMES
from .decoding import Decoded

TOKENS_PER_SECOND = 50
"""Alignment steps per second of audio (the encoder's output rate)."""


def align(
    model: ctranslate2.models.Whisper,
    tokenizer: object,
    encoded: ctranslate2.StorageView,
    prompts: list[list[int]],
    audio_samples: list[int],
    results: list[Decoded],
) -> None:
    """Set `words` (word dicts in chunk time) and `token_probs` on each decoded row of `encoded`;
    `audio_samples` is each row's audio length. Rows that share their start-of-transcript sequence are
    aligned in one call."""
    texts = [[t for t in r.tokens if t < tokenizer.eot] for r in results]
    starts = [tuple(t for t in p[p.index(tokenizer.sot):] if t != tokenizer.no_timestamps) for p in prompts]
    frames = [max(1, min(N_FRAMES, -(-samples // HOP_LENGTH))) for samples in audio_samples]
    for result in results:
        result.words, result.token_probs = [], []
    if all(texts) and len(set(starts)) == 1:
        aligned = model.align(encoded, list(starts[0]), texts, frames)
        for result, text, one in zip(results, texts, aligned):
            result.words = words_from_alignment(tokenizer, text, one)
            result.token_probs = list(one.text_token_probs)
        return
    array = np.asarray(encoded)
    for i, result in enumerate(results):
        if texts[i]:
            one = ctranslate2.StorageView.from_array(np.ascontiguousarray(array[i : i + 1]))
            aligned = model.align(one, list(starts[i]), [texts[i]], frames[i])[0]
            result.words = words_from_alignment(tokenizer, texts[i], aligned)
            result.token_probs = list(aligned.text_token_probs)


def words_from_alignment(tokenizer: object, text_tokens: list[int], aligned: object) -> list[dict]:
    """Word dicts (word, tokens, start, end, probability) in chunk time from a CTranslate2 alignment."""
    words, word_tokens = tokenizer.split_to_word_tokens(text_tokens + [tokenizer.eot])
    if len(word_tokens) <= 1:
        return []
    pairs = np.asarray(aligned.alignments, dtype=np.int64).reshape(-1, 2)
    if len(pairs) == 0:
        return []
    text_indices, time_indices = pairs[:, 0], pairs[:, 1]
    boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] / TOKENS_PER_SECOND
    probs = np.asarray(aligned.text_token_probs, dtype=np.float64)
    out = []
    for k in range(len(word_tokens) - 1):
        lo, hi = int(boundaries[k]), int(boundaries[k + 1])
        start = float(jump_times[min(lo, len(jump_times) - 1)])
        end = float(jump_times[min(hi, len(jump_times) - 1)])
        probability = float(np.mean(probs[lo:hi])) if hi > lo and hi <= len(probs) else 0.0
        out.append({"word": words[k], "tokens": word_tokens[k], "start": start, "end": max(start, end),
                    "probability": probability})
    _merge_punctuation(out)
    return out


def _merge_punctuation(words: list[dict]) -> None:
    """Attach leading/trailing punctuation to the neighbouring word (in place), as Whisper does."""
    from faster_whisper.transcribe import merge_punctuations

    if words:
        merge_punctuations(words, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、")
        words[:] = [w for w in words if w["word"]]
