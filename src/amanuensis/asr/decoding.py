"""Decoding settings and results, and Whisper's quality checks on a decoded chunk.

The checks decide which chunks are decoded again at a higher temperature: too repetitive (by
zlib compression ratio, per segment and per chunk), too unlikely (average log-probability), unless
the model also says there is likely no speech.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

TIME_PRECISION = 0.02


@dataclass(frozen=True)
class DecodeSettings:
    """Decoding options shared by every chunk of one batch (hashable: it keys batches)."""

    beam_size: int = 5
    best_of: int = 5
    patience: float = 1.0
    length_penalty: float = 1.0
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float | None = 2.4
    log_prob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    suppress_blank: bool = True
    suppress_tokens: tuple[int, ...] = (-1,)
    max_initial_timestamp: float = 1.0
    max_repeating_chars_per_second: float | None = 25.0
    """A text that repeats a phrase (4 words or more, twice) and holds more characters per second of its
    audio than this is a repeat the model made up, not speech: it fails like a loop. Twice compresses
    too little for the ratio test, and fluent speech stays under about 24 characters a second (a
    short chunk prompted with the sentence it holds can come out as that sentence and half of it
    again). None: no such check."""
    chunk_ratio_slack: float = 1.5
    """A packed chunk holds more speech than one of Whisper's windows, so legitimately repetitive
    speech compresses better: the whole chunk fails at threshold × slack, each segment at threshold."""
    seed: int | None = 0
    """Seed handed to CTranslate2 before each sampled fallback (None: not reseeded). CTranslate2 seeds
    a worker thread's sampler only at that thread's first draw (OpenNMT/CTranslate2#1757): the same
    requests in the same order in a fresh process give the same text, but the fallback draws of one
    request depend on the fallbacks decoded before it in the process, and with several decoders on
    which worker took it (`pipeline.cpu_layout`; AMANUENSIS_DECODERS=1 for one sampler)."""
    seek_past_loops_after: float | None = 5.0
    """A loop (a repetitive segment) that starts this many seconds or more into a chunk is no reason
    to fall back: the caller drops it and decodes again from its start. None: always fall back."""
    window_margin_s: float | None = 5.0
    """Encode a chunk in the shortest window (10, 20 or 30 s) that leaves this much silence after it;
    None: always Whisper's 30 s window."""
    word_timestamps: bool = False
    hotwords: str | None = None
    """Names and terms every prompt leads with (WhisperEngine.prompt)."""
    max_tokens_per_second: float | None = 5.0
    """A chunk's decode stops after 32 + this many tokens per second of its audio (None: the model's
    limit of 224). Real speech with timestamps takes about 3 tokens a second and stays under 32 + 4/s;
    what reaches the cap is a loop or sampled noise, which the repetition
    and log-probability checks then catch. Fast speech cut at the cap loses nothing: the lane goes on
    from the last timestamp, as after any chunk the model left unfinished."""
    sample_unlikely: bool = False
    """True: Whisper's rule, a chunk whose text is merely unlikely (average log-probability under the
    threshold) is sampled again at higher temperatures, like a loop. False (the default): only loops
    are sampled again; an unlikely chunk keeps its most likely beam result, with or without previous
    text: sampling merely unlikely chunks makes hard (non-native) speech worse."""
    first_stage: float | None = 0.75
    """A chunk's first decode stops at this fraction of its token cap (`token_cap`); where it has
    neither ended nor fallen into a loop by then (speech faster than 32 + 3.75 tokens a second), it is
    decoded again to the whole cap. A loop runs to the cap, and its text is dropped or decoded again
    anyway, so this cuts what a loop costs. None: to the whole cap at once."""
    retry_stage: float | None = 0.5
    """The same for a chunk decoded again after it failed (without previous text, then sampled): a
    loop that failed once most often loops again. None: to the whole cap at once."""

    def token_cap(self, seconds: float) -> int | None:
        """The most new tokens a decode of `seconds` of audio may produce (None: no cap)."""
        if self.max_tokens_per_second is None:
            return None
        return 32 + math.ceil(self.max_tokens_per_second * seconds)


@dataclass
class Decoded:
    """The chosen hypothesis of one chunk, its statistics, and optional word alignment."""

    tokens: list[int]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    temperature: float
    text: str = ""
    words: list[dict] | None = None
    token_probs: list[float] | None = None
    """Each text token's probability under the model, from the word alignment (with `words`)."""
    segment_ratio: float = 0.0
    """The highest compression ratio of one timestamped segment (a loop inside one segment)."""
    loop_start: float | None = None
    """Chunk time (s) where the first looping segment starts, if any."""
    seconds: float = 0.0
    """Length of the audio decoded (0: unknown, and no density check)."""
    reached_cap: bool = False
    """The decode stopped at its token cap (`DecodeSettings.token_cap`), not at the end of the text."""

    @property
    def is_silence(self) -> bool:
        """Whisper's no-speech rule is applied by the caller; this only says the text is empty."""
        return not self.text.strip()


def compression_ratio(text: str) -> float:
    """len(text) / len(zlib(text)): high values mean repetitive (hallucinated) output."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def needs_fallback(result: Decoded, settings: DecodeSettings) -> bool:
    """Whisper's rule: too repetitive or too unlikely, unless it is likely silence."""
    failed = too_repetitive(result, settings)
    low = settings.log_prob_threshold is not None and result.avg_logprob < settings.log_prob_threshold
    if low:
        failed = True
    if low and settings.no_speech_threshold is not None and result.no_speech_prob > settings.no_speech_threshold:
        failed = False
    return failed


def too_repetitive(result: Decoded, settings: DecodeSettings) -> bool:
    """One segment compresses beyond the threshold, or the whole chunk beyond threshold × slack."""
    if repeats_too_densely(result, settings):
        return True
    threshold = settings.compression_ratio_threshold
    if threshold is None:
        return False
    after = settings.seek_past_loops_after
    if result.loop_start is not None:  # a loop late in the chunk is cut by the caller, not sampled again
        return after is None or result.loop_start < after
    return result.segment_ratio > threshold or result.compression_ratio > threshold * settings.chunk_ratio_slack


REPEAT_WORDS = 4
"""The shortest phrase whose second occurrence counts as a repeat (`repeats_too_densely`)."""


def repeats_too_densely(result: Decoded, settings: DecodeSettings) -> bool:
    """More characters a second than speech holds, and a phrase said twice: made-up repetition."""
    limit = settings.max_repeating_chars_per_second
    text = result.text.strip()
    if limit is None or result.seconds <= 0 or len(text) <= limit * result.seconds:
        return False
    words = _words(text)
    phrases = [tuple(words[k : k + REPEAT_WORDS]) for k in range(len(words) - REPEAT_WORDS + 1)]
    return len(set(phrases)) < len(phrases)


def loops(result: Decoded, settings: DecodeSettings) -> bool:
    """The text falls into a loop somewhere (too repetitive, or a looping segment the caller cuts off)."""
    return result.loop_start is not None or too_repetitive(result, settings)


def stuck_in_a_loop(tried: list[Decoded], settings: DecodeSettings) -> bool:
    """A sampled try that loops like the try before it: higher temperatures will not get out."""
    return (len(tried) >= 2 and tried[-1].temperature > 0
            and all(too_repetitive(r, settings) for r in tried[-2:]))


def is_loop(text: str, threshold: float | None) -> bool:
    """A longish text that compresses beyond `threshold`: one phrase said over and over."""
    text = text.strip()
    return threshold is not None and len(text) > 40 and compression_ratio(text) > threshold


REPEATED_SEGMENTS = 3
"""Timestamped segments in a row that say the same words in the same time are a loop from the second
of them on: the model stepping its timestamps through audio it cannot make out and saying one phrase
each time (a 7 s clip of hard non-native speech read as ' Thank you.' in six segments of exactly 1 s).
Each such segment is too short for the compression test, and the chunk as a whole passes the chunk
slack. A speaker who says one phrase again and again ("Montreal, forced aligner") takes a different
time for each, so real repetition is not cut."""


def looping_segment(segments: list[tuple[float, float, str]], threshold: float | None) -> int | None:
    """Index of the first of a chunk's (start, end, text) segments where a loop starts: a text that
    compresses beyond `threshold` (`is_loop`), or the second of `REPEATED_SEGMENTS` or more in a row
    with the same words and the same length (to a timestamp's 20 ms). None when there is none, or
    when `threshold` is None (no repetition checks)."""
    if threshold is None:
        return None
    for k, (_, _, text) in enumerate(segments):
        if is_loop(text, threshold):
            return k
        run = segments[k - 1 : k - 1 + REPEATED_SEGMENTS] if k else []
        if len(run) == REPEATED_SEGMENTS and _stepped(run):
            return k
    return None


def _stepped(run: list[tuple[float, float, str]]) -> bool:
    """Segments that all say the same (non-empty) words in the same time."""
    words = {_words(text) for _, _, text in run}
    lengths = {round((end - start) / TIME_PRECISION) for start, end, _ in run}
    return len(words) == 1 and () not in words and len(lengths) == 1


def _words(text: str) -> tuple[str, ...]:
    """Lower-case words without punctuation, for comparing texts."""
    return tuple(w for w in ("".join(c for c in w.lower() if c.isalnum()) for w in text.split()) if w)


def timestamped_segments(tokenizer: object, tokens: list[int]) -> list[tuple[float, float, str]]:
    """(start, end, text) in chunk time of each run of text tokens between timestamp tokens (a run
    that no timestamp closes ends where it starts)."""
    begin, opened, run, out = tokenizer.timestamp_begin, 0.0, [], []
    for token in tokens:
        if token >= begin:
            closed = (token - begin) * TIME_PRECISION
            if run:
                out.append((opened, closed, tokenizer.decode(run)))
            run, opened = [], closed
        elif token < tokenizer.eot:
            run.append(token)
    if run:
        out.append((opened, opened, tokenizer.decode(run)))
    return out


def loop_start(segments: list[tuple[float, float, str]], threshold: float | None) -> float | None:
    """Chunk time of the timestamped segment (`timestamped_segments`) where the text falls into a loop
    (`looping_segment`; None when it does not)."""
    k = looping_segment(segments, threshold)
    return None if k is None else segments[k][0]


def segment_ratio(segments: list[tuple[float, float, str]]) -> float:
    """The highest compression ratio among the timestamped segments' texts (`timestamped_segments`)."""
    return max((compression_ratio(text.strip()) for _, _, text in segments), default=0.0)


def pick_best(tried: list[Decoded], settings: DecodeSettings) -> Decoded:
    """When every temperature failed: the most likely result among those not too repetitive."""
    fine = [r for r in tried if not too_repetitive(r, settings)]
    best = max(fine or tried, key=lambda r: r.avg_logprob)
    best.temperature = tried[-1].temperature
    return best
