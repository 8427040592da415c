"""The lanes: VAD -> ≤30 s chunks -> batched decoding in lanes -> segments in original time, in order.

The speech of a window is dealt into `batch_size` lanes of consecutive speech (one lane in
sequential mode); each batch step decodes the next chunk of every lane, prompted with the previous
text of its own lane. Like Whisper's seek, a lane goes on from the last timestamp the model closed
when it left speech undecoded at the end of a chunk (a sentence cut at a pause) or fell into a loop,
so nothing is skipped. Segments are published as soon as every lane before theirs is done, so a
caller streaming them sees them in order while the later lanes are still decoding. Multilingual
input is decoded run by run, each run of one language with that language fixed (`asr.languages`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from dataclasses import dataclass, field, replace

import numpy as np

from ..constants import SAMPLE_RATE
from ..transcript import Segment, Word
from .acoustic_alignment import AcousticAligner, align_segments
from .acoustic_alignment import available as acoustic_alignment_available
from .chunking import (
    CHUNK_SAMPLES,
    Chunk,
    ends_in_speech,
    next_chunk,
    pause_scores,
    plan_lanes,
    speech_between,
    split_long_regions,
    split_windows,
)
from .decoding import Decoded, DecodeSettings, looping_segment
from .engine import ChunkJob, WhisperEngine
from .languages import LanguageRun, language_runs
from .nonspeech import made_up
from .recognizer import Recognizer
from .segments import _is_loop, is_skip, split_at_seams, split_by_timestamps, take_words, token_logprobs
from .speech_time import has_speech_run, speech_seconds, trim_span
from .vad import SileroVad, VadOptions, default_vad, detect_speech, regions_from_probs
from .word_timing import place_word

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float, float], None]
SegmentCallback = Callable[[Segment], None]
RunBatch = Callable[[list[ChunkJob]], list[Decoded]]
SubmitBatch = Callable[[list[ChunkJob]], list[Future]]
PROMPT_RESET_TEMPERATURE = 0.5
TAIL_SPEECH_SECONDS = 0.32
"""Speech (by VAD) this long in an untranscribed chunk tail means the model left a word out."""
UNINTELLIGIBLE = " [unintelligible]"
"""The text of a segment of speech the model looped on at every temperature and that the lane steps
over (the words of such speech are not known; Whisper's English normaliser drops bracketed text)."""


@dataclass
class Profile:
    """Seconds per stage in the last transcribe() call (engine stages include concurrent callers')."""

    seconds: dict[str, float] = field(default_factory=dict)
    chunks: int = 0
    speech_seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    """Items per engine stage (chunks; decoder token steps = tokens × hypotheses)."""


@dataclass
class _Context:
    """What every batch step of one transcribe() call needs."""

    samples: np.ndarray
    probs: np.ndarray
    silero: np.ndarray
    pauses: np.ndarray
    """Where to cut a chunk (chunking.pause_scores)."""
    tokenizer: object
    settings: DecodeSettings
    condition: bool
    language: str
    aligner: AcousticAligner | None
    """Times the words of each chunk acoustically (None: attention times)."""
    logprobs: bool = False
    """Give each segment its tokens' log-probabilities (needs word alignment)."""
    initial: list[int] = field(default_factory=list)
    chunks: int = 0
    in_flight: list[Future] = field(default_factory=list)  # the current step's decodes


class BatchedTranscriber:
    """Batched decoding in lanes on a Recognizer's model and front end, with one VAD."""

    def __init__(
        self,
        recognizer: Recognizer,
        batch_size: int = 8,
        lane_steps: int = 8,
        vad_options: VadOptions | None = None,
        vad: SileroVad | None = None,
        run_batch: RunBatch | None = None,
        tail_seconds: float = 1.5,
        min_advance_seconds: float = 5.0,
    ) -> None:
        """`run_batch`: decode each batch step with this instead of the engine (its results come back
        together, at the end of the step)."""
        self.recognizer = recognizer
        self.engine = WhisperEngine(recognizer)
        self.batch_size = batch_size
        self.lane_steps = lane_steps
        self.vad_options = vad_options or VadOptions()
        self._vad = vad
        self.run_batch: RunBatch | None = run_batch
        self.submit_batch: SubmitBatch = self.engine.submit
        """Starts a batch step; each future resolves as its chunk is decoded (`BatchScheduler.start` to
        share batches with concurrent callers)."""
        self.tail_seconds = tail_seconds
        self.min_advance_seconds = min_advance_seconds
        self.aligner = AcousticAligner() if acoustic_alignment_available() else None
        self.profile = Profile()

    def settings(self, options: object) -> DecodeSettings:
        """The typed DecodeSettings of a TranscribeOptions, seeking past loops as this transcriber does."""
        return replace(options.decode_settings(), seek_past_loops_after=self.min_advance_seconds)

    def plan(self, samples: np.ndarray, vad_filter: bool = True, speech_scores: np.ndarray | None = None,
             vad_options: VadOptions | None = None) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
        """Regions of at most 30 s cut at pauses (speech only with `vad_filter`), the frame speech scores
        that planned them, and Silero's own scores before the energy gate (which judge word times and
        made-up text): the VAD's, or `speech_scores` (one per 512-sample frame, serving as both) where the
        caller has them already (a realtime session's live VAD), so the VAD does not run again.
        `vad_options` replace this transcriber's for one call."""
        vad_options = vad_options or self.vad_options
        if speech_scores is None:
            result = detect_speech(samples, vad_options, self._vad or default_vad())
            probs, speech = result.probs, result.regions
            silero = probs if result.silero is None else result.silero
        else:
            probs = silero = speech_scores
            speech = regions_from_probs(probs, len(samples), vad_options) if vad_filter else []
        regions = speech if vad_filter else [(0, len(samples))]
        return split_long_regions(regions, pause_scores(probs, silero)), probs, silero

    def transcribe(
        self,
        samples: np.ndarray,
        options: object,
        progress: ProgressCallback | None = None,
        on_segment: SegmentCallback | None = None,
        speech_scores: np.ndarray | None = None,
    ) -> tuple[list[Segment], str, float]:
        """Decode `samples` (16 kHz mono float32); returns (segments, language, language probability).

        `options.mode` "sequential" decodes the speech as one lane, each chunk prompted with the text
        of the chunk before it; "batched" deals it into `batch_size` lanes decoded side by side.
        `speech_scores`: the frames' speech scores when the caller has them (see `plan`)."""
        started = time.perf_counter()
        before = dict(self.engine.stats.seconds)
        counted = dict(self.engine.stats.counts)
        duration = len(samples) / SAMPLE_RATE
        regions, probs, silero = self.plan(samples, options.vad_filter, speech_scores,
                                           replace(self.vad_options, **options.vad_settings()))
        vad_s = time.perf_counter() - started
        settings = self.settings(options)
        runs = self._language_runs(samples, regions, options)
        pauses = pause_scores(probs, silero)
        lanes = 1 if options.mode == "sequential" else self.batch_size
        window_speech = lanes * self.lane_steps * CHUNK_SAMPLES if lanes > 1 else len(samples) + 1
        total = sum(e - s for s, e in regions)
        done, chunks = 0, 0
        decoded: list[int] = []  # chunks of this step, reported once the step's segments are out
        segments: list[Segment] = []
        for run in runs:
            tokenizer = self.engine.tokenizer(options.task, run.language)
            context = _Context(samples, probs, silero, pauses, tokenizer, settings,
                               options.condition_on_previous_text, run.language, self._aligner(options, run),
                               options.logprobs and options.word_timestamps)
            if options.initial_prompt:
                context.initial = context.tokenizer.encode(" " + options.initial_prompt.strip())
            for window in split_windows(run.regions, window_speech):
                try:  # a caller that stops (a cancelled request) leaves the engine idle: the step's decodes end first
                    for produced, consumed in self._decode_window(context, window, lanes):
                        if produced is None:
                            decoded.append(consumed)
                            continue
                        for segment in produced:
                            self._append(segments, segment, duration, on_segment)
                        for consumed_here in decoded:  # one progress report per decoded chunk
                            done += consumed_here
                            if progress:
                                progress(duration * min(done, total) / total, duration)
                        decoded.clear()
                except BaseException:
                    wait(context.in_flight)
                    raise
            chunks += context.chunks
        if progress:
            progress(duration, duration)
        stats = {k: v - before.get(k, 0.0) for k, v in self.engine.stats.seconds.items()}
        counts = {k: v - counted.get(k, 0) for k, v in self.engine.stats.counts.items()}
        self.profile = Profile({"vad+chunking": vad_s, **stats, "total": time.perf_counter() - started},
                               chunks, total / SAMPLE_RATE, counts)
        return segments, runs[0].language, runs[0].probability

    def _aligner(self, options: object, run: LanguageRun) -> AcousticAligner | None:
        """The acoustic aligner for English transcription with word times (attention times otherwise)."""
        wanted = options.word_timestamps and options.word_alignment == "acoustic" and options.task == "transcribe"
        return self.aligner if wanted and run.language == "en" else None

    def _language_runs(self, samples: np.ndarray, regions: list[tuple[int, int]], options: object
                       ) -> list[LanguageRun]:
        """The regions in runs of one language: one run in the asked language, else in the language of the
        first chunk, or with `multilingual` (on a multilingual model) one run per stretch of one language."""
        if options.language or not self.engine.multilingual:
            return [LanguageRun(options.language or "en", 1.0, regions)]
        if options.multilingual:
            runs = language_runs(samples, regions, self.engine.language_of)
            if runs:
                return runs
        chunk = next_chunk(regions, regions[0][0]) if regions else None
        if chunk is None:
            return [LanguageRun("en", 0.0, regions)]
        return [LanguageRun(*self.engine.language_of(chunk.audio(samples)), regions)]

    def _decode_window(
        self, ctx: _Context, regions: list[tuple[int, int]], lane_count: int
    ) -> Iterator[tuple[list[Segment] | None, int]]:
        """Decode one window in at most `lane_count` lanes; yield (None, speech samples done) after each
        chunk and (segments now ready to publish in order, 0) after each chunk's lane is dealt with: the
        lanes' results are taken in lane order as each is decoded, so the first lane's segments go out
        while the step's other chunks are still being decoded."""
        lanes = plan_lanes(regions, lane_count)
        positions: list[int | None] = [lane[0][0] for lane in lanes]
        history = [list(ctx.initial) for _ in lanes]
        pending: list[list[Segment]] = [[] for _ in lanes]
        limits: list[int | None] = [None] * len(lanes)  # a shorter next chunk, after a skip
        published = 0
        while True:
            active, chunks = [], []
            for i, lane in enumerate(lanes):
                room = limits[i] or CHUNK_SAMPLES
                chunk = next_chunk(lane, positions[i], ctx.pauses, room) if positions[i] is not None else None
                if chunk is None:
                    positions[i] = None
                    continue
                chunk.cut_in_speech = ends_in_speech(regions, chunk.pieces[-1][1])
                active.append(i)
                chunks.append(chunk)
            if not active:
                break
            jobs = [ChunkJob(chunk.audio(ctx.samples),
                             self.engine.prompt(ctx.tokenizer, history[i] if ctx.condition else ctx.initial,
                                                ctx.settings.hotwords),
                             ctx.settings)
                    for i, chunk in zip(active, chunks, strict=True)]
            futures = ctx.in_flight = self._submit(jobs)
            ctx.chunks += len(jobs)
            for i, chunk, future in zip(active, chunks, futures, strict=True):
                decoded = future.result()
                produced, covered, kept, retry = self._segments(chunk, decoded, ctx, retry_skips=not limits[i])
                limits[i] = retry
                if not retry:  # else the model skipped speech at the start: a shorter chunk from here again
                    end = chunk.pieces[-1][1] if covered >= chunk.duration else round(
                        chunk.to_original(covered, is_end=True) * SAMPLE_RATE)
                    consumed = speech_between(lanes[i], positions[i], end)
                    positions[i] = end
                    pending[i].extend(produced)
                    if decoded.temperature > PROMPT_RESET_TEMPERATURE or not produced or not kept:
                        history[i] = []
                    else:
                        history[i].extend(kept)
                    yield None, consumed
                ready: list[Segment] = []
                while published < len(lanes):  # lanes after i keep this step's chunk: they stop it
                    ready.extend(pending[published])
                    pending[published] = []
                    if positions[published] is not None and next_chunk(lanes[published], positions[published]):
                        break
                    published += 1
                yield ready, 0
        rest = [s for lane in pending[published:] for s in lane]
        if rest:
            yield rest, 0

    def _submit(self, jobs: list[ChunkJob]) -> list[Future]:
        if self.run_batch is None:
            return self.submit_batch(jobs)
        futures: list[Future] = [Future() for _ in jobs]
        for future, result in zip(futures, self.run_batch(jobs), strict=True):
            future.set_result(result)
        return futures

    @staticmethod
    def _is_silence(decoded: Decoded, settings: DecodeSettings) -> bool:
        if settings.no_speech_threshold is None or decoded.no_speech_prob <= settings.no_speech_threshold:
            return False
        return settings.log_prob_threshold is None or decoded.avg_logprob < settings.log_prob_threshold

    def _segments(
        self, chunk: Chunk, decoded: Decoded, ctx: _Context, retry_skips: bool = True
    ) -> tuple[list[Segment], float, list[int], int | None]:
        """Segments in original time, the chunk time decoded for good, the tokens to condition on, and
        (when the model skipped speech at the chunk's start) the samples of a shorter chunk to decode instead."""
        if self._is_silence(decoded, ctx.settings):
            return [], chunk.duration, [], None
        split = split_by_timestamps(decoded.tokens, ctx.tokenizer, chunk.duration)
        pieces, covered, kept = split.complete, split.covered, split.kept_tokens
        if split.trailing is not None or covered < chunk.duration:
            tail = chunk.duration - covered
            # a short tail is let go only when it holds no words: a word cut off by the chunk's end
            # is left out by the model, so a tail with speech in it starts the lane's next chunk
            idle = split.trailing is None and not (
                chunk.cut_in_speech and has_speech_run(ctx.probs, chunk, covered, TAIL_SPEECH_SECONDS))
            if (tail <= self.tail_seconds and idle) or covered < self.min_advance_seconds:
                pieces = pieces + ([split.trailing] if split.trailing else [])
                covered, kept = chunk.duration, split.all_tokens
        loop = looping_segment([(start, end, ctx.tokenizer.decode(tokens)) for start, end, tokens in pieces],
                               ctx.settings.compression_ratio_threshold)
        given_up = None
        if loop is not None:
            # decode again from where the loop began (with a fresh prompt), always moving forward: speech
            # between a loop near the chunk's start and that minimal step is reported, not left out
            start = pieces[loop][0]
            covered = min(chunk.duration, max(start, self.min_advance_seconds))
            if speech_seconds(ctx.silero, chunk, start, covered) >= TAIL_SPEECH_SECONDS:
                given_up = (start, covered)
            pieces, kept = pieces[:loop], []
        skip = next((k for k, piece in enumerate(pieces)
                     if is_skip(*piece, ctx.tokenizer, speech_seconds(ctx.probs, chunk, piece[0], piece[1]))), None)
        if skip is not None and retry_skips:
            start, end, _ = pieces[skip]
            if start < self.min_advance_seconds:
                return [], 0.0, [], max(round((start + end) / 2 * SAMPLE_RATE), CHUNK_SAMPLES // 6)
            covered, pieces, kept = start, pieces[:skip], []
        words = list(decoded.words or [])
        probs = list(decoded.token_probs or []) if ctx.logprobs else None
        out = []
        for start, end, tokens in pieces:
            text = ctx.tokenizer.decode(tokens)
            own, words = take_words(words, len(tokens))
            logprobs = None
            if probs is not None:
                logprobs = token_logprobs(ctx.tokenizer, tokens, probs[:len(tokens)])
                del probs[:len(tokens)]
            if not text.strip() or _is_loop(text, ctx.settings):
                continue
            if not ctx.settings.word_timestamps:
                out.append(self._segment(chunk, decoded, ctx, (start, end), tokens, text, None))
                continue
            groups = split_at_seams(chunk, own)
            for k, group in enumerate(groups):
                part = tokens if len(groups) == 1 else [t for w in group for t in w["tokens"]]
                span = (start if k == 0 else group[0]["start"], end if k == len(groups) - 1 else group[-1]["end"])
                part_text = text if len(groups) == 1 else ctx.tokenizer.decode(part)
                segment = self._segment(chunk, decoded, ctx, span, part, part_text, group)
                if logprobs is not None:
                    segment.logprobs, logprobs = logprobs[:len(part)], logprobs[len(part):]
                out.append(segment)
        if given_up:
            out.append(self._segment(chunk, decoded, ctx, given_up, [], UNINTELLIGIBLE,
                                     [] if ctx.settings.word_timestamps else None))
        out = [s for s in out if not made_up(s, ctx.silero, ctx.settings)]
        if ctx.aligner is not None:
            align_segments(ctx.aligner, out, chunk, ctx.samples, ctx.silero)
        return out, covered, kept, None

    @staticmethod
    def _segment(chunk: Chunk, decoded: Decoded, ctx: _Context, span: tuple[float, float], tokens: list[int],
                 text: str, words: list[dict] | None) -> Segment:
        """One segment in original time: cut to its words' times, or without words to the speech in it."""
        segment = Segment(
            id=0,
            start=chunk.to_original(span[0]),
            end=chunk.to_original(span[1], is_end=True),
            text=text,
            avg_logprob=decoded.avg_logprob,
            no_speech_prob=decoded.no_speech_prob,
            compression_ratio=decoded.compression_ratio,
            temperature=decoded.temperature,
            tokens=list(tokens),
            language=ctx.language,
        )
        if words is not None:
            segment.words = [Word(w["word"], *place_word(ctx.silero, *chunk.span_to_original(w["start"], w["end"])),
                                  probability=round(w["probability"], 4)) for w in words]
        if segment.words:
            segment.start = max(segment.start, min(segment.words[0].start, segment.end))
            segment.end = max(segment.start, segment.words[-1].end)
        else:
            segment.start, segment.end = trim_span(ctx.probs, segment.start, segment.end)
        return segment

    @staticmethod
    def _append(segments: list[Segment], segment: Segment, duration: float, on_segment: SegmentCallback | None) -> None:
        """Round, clamp into the audio and after the previous segment, number, and publish."""
        floor = segments[-1].end if segments else 0.0
        segment.start = round(min(max(segment.start, floor), duration), 3)
        segment.end = round(min(max(segment.end, segment.start), duration), 3)
        for word in segment.words or []:
            word.start = round(min(max(word.start, segment.start), segment.end), 3)
            word.end = round(min(max(word.end, word.start), segment.end), 3)
        segment.id = len(segments)
        segments.append(segment)
        if on_segment:
            on_segment(segment)
