"""Batched decoding on the recognizer: chunk jobs grouped, dealt to the decoders, encoded and generated.

`WhisperEngine.run(jobs)` takes chunk jobs that share decoding settings and runs one feature pass,
one encoder call and one batched `generate` for each group of them; the rows that fail the quality
checks are decoded again as `asr.fallback` says, and word times come from `asr.alignment`. On a CPU
a batch is dealt into sub-batches, one per CTranslate2 worker, decoded at once (each with its own
fallback), since one call gains little from a second thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import ctranslate2
import numpy as np

from ..constants import FRAMES_PER_SECOND, N_FRAMES, SAMPLE_RATE
from ..constants import HOP_LENGTH as HOP_SAMPLES
from .alignment import align
from .decoding import (
    TIME_PRECISION,
    Decoded,
    DecodeSettings,
    compression_ratio,
    loop_start,
    segment_ratio,
    timestamped_segments,
)
from .fallback import decode_with_fallback
from .recognizer import Recognizer

log = logging.getLogger(__name__)

WINDOW_STEP_FRAMES = 1000
"""Encoder windows are 10, 20 or 30 s, so that chunks of different lengths still share batches."""
SHORTEST_WINDOW_FRAMES = 1000
"""Windows shorter than 10 s made the model loop on short clips: never below this."""
_STATS_LOCK = threading.Lock()
CAP_SLACK_TOKENS = 2
"""A decode this close to its cap counts as stopped by it (a try wrongly counted so is decoded again in full)."""
MAX_PROMPT_TOKENS = 223
MAX_HOTWORD_TOKENS = MAX_PROMPT_TOKENS // 2  # hotwords are cut to this, so previous text keeps room in the prompt
Task = tuple[int, list[int], list[list[int]]]
"""A sub-batch: (encoder frames, job indices, their prompts)."""
OnResult = Callable[[int, Decoded], None]
"""Called with (job index, its Decoded) as soon as a job's sub-batch is decoded."""


def window_frames(num_samples: int, margin_s: float | None) -> int:
    """Encoder frames for a chunk of `num_samples`: 30 s, or with `margin_s`, the shortest window of 10,
    20 or 30 s that leaves `margin_s` of silence after the audio.

    The encoder's cost grows faster than its input (a 15 s window costs a fifth of a 30 s one), and
    the decoder only needs the silence after the speech to see where it ends."""
    if margin_s is None:
        return N_FRAMES
    needed = -(-num_samples // HOP_SAMPLES) + round(margin_s * FRAMES_PER_SECOND)
    stepped = -(-needed // WINDOW_STEP_FRAMES) * WINDOW_STEP_FRAMES
    return min(N_FRAMES, max(SHORTEST_WINDOW_FRAMES, stepped))


@dataclass
class ChunkJob:
    """One chunk to decode: its audio, the decoder prompt and the settings it is decoded with."""

    audio: np.ndarray
    prompt: list[int]
    settings: DecodeSettings

    @property
    def frames(self) -> int:
        """Encoder window (frames) for this job: the shortest that fits (`window_frames`)."""
        return window_frames(len(self.audio), self.settings.window_margin_s)


def split_rows(sizes: list[int], parts: int) -> list[list[int]]:
    """Row indices of a batch dealt into at most `parts` sub-batches of about equal total size (largest
    rows first, each to the lightest part), each in batch order."""
    count = max(1, min(parts, len(sizes)))
    loads, out = [0] * count, [[] for _ in range(count)]
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        k = loads.index(min(loads))
        loads[k] += sizes[i]
        out[k].append(i)
    return [sorted(part) for part in out if part]


@dataclass
class EngineStats:
    """Cumulative seconds and counts per stage (for profiles and /metrics). Sub-batches decoded at
    once each add their own seconds, so a stage's seconds can exceed the wall time."""

    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, stage: str, seconds: float, count: int = 1) -> None:
        """Account `seconds` and `count` items to `stage`."""
        with _STATS_LOCK:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
            self.counts[stage] = self.counts.get(stage, 0) + count

    def count(self, what: str, count: int) -> None:
        """Account `count` items (no time) to `what`."""
        with _STATS_LOCK:
            self.counts[what] = self.counts.get(what, 0) + count


class WhisperEngine:
    """Batched calls on a Recognizer's CTranslate2 model, tokenizer and front end."""

    def __init__(self, recognizer: Recognizer) -> None:
        self.recognizer = recognizer
        self.model: ctranslate2.models.Whisper = recognizer.model
        self.stats = EngineStats()
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_size = 0
        self._hotwords: dict[str, list[int]] = {}  # hotword tokens by text, encoded once, not per prompt
        self._dispatcher = ThreadPoolExecutor(1, thread_name_prefix="amanuensis-dispatch")
        """Runs `submit`'s batches (its thread starts at the first one)."""

    @property
    def multilingual(self) -> bool:
        """True for multilingual checkpoints."""
        return bool(self.model.is_multilingual)

    def tokenizer(self, task: str = "transcribe", language: str | None = None) -> object:
        """The recognizer's cached tokenizer for (task, language)."""
        return self.recognizer.tokenizer(task, language)

    def hotword_tokens(self, hotwords: str | None) -> list[int]:
        """The tokens of `hotwords` as prompts carry them (at most MAX_HOTWORD_TOKENS); none for none."""
        if not hotwords or not hotwords.strip():
            return []
        if hotwords not in self._hotwords:
            self._hotwords[hotwords] = list(self.tokenizer().encode(" " + hotwords.strip()))[:MAX_HOTWORD_TOKENS]
        return self._hotwords[hotwords]

    def prompt(self, tokenizer: object, previous: list[int], hotwords: str | None = None) -> list[int]:
        """[sot_prev, hotwords…, previous text…] + sot sequence. Hotwords lead every prompt, with or
        without previous text, as faster-whisper's `hotwords` do (there: when no prefix is given; there
        is none here); the previous text fills the room they leave."""
        hot = self.hotword_tokens(hotwords)
        tokens: list[int] = []
        if previous or hot:
            room = MAX_PROMPT_TOKENS - len(hot)
            tokens = [tokenizer.sot_prev, *hot, *(previous[-room:] if previous else [])]
        tokens.extend(tokenizer.sot_sequence)
        return tokens

    def features(self, audios: list[np.ndarray], frames: int = N_FRAMES) -> np.ndarray:
        """Log-mel features (B, n_mels, frames) of chunks zero-padded to `frames` (default 30 s), in one
        call of the recognizer's front end."""
        return self.recognizer.features(audios, frames)

    def encode(self, features: np.ndarray) -> ctranslate2.StorageView:
        """Run the encoder on a batch of features; the result stays on the model's device.

        On CPU the rows are encoded one at a time and joined: a batched encoder call costs more per
        row than single calls there (its activations outgrow the caches), unlike on a GPU."""
        if self.model.device != "cpu" or len(features) == 1:
            return self.model.encode(ctranslate2.StorageView.from_array(features), to_cpu=False)
        rows = [np.asarray(self.model.encode(ctranslate2.StorageView.from_array(features[i : i + 1])))
                for i in range(len(features))]
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate(rows)))

    def language_of(self, audio: np.ndarray) -> tuple[str, float]:
        """The language detected in one chunk and its probability (serialised with `run`)."""
        with self._lock:
            encoded = self.encode(self.features([audio]))
            token, probability = self.model.detect_language(encoded)[0][0]
        return token[2:-2], float(probability)

    def submit(self, jobs: list[ChunkJob]) -> list[Future]:
        """Start `run(jobs)` on the engine's dispatch thread; each future resolves to its job's Decoded as
        soon as that job's sub-batch is decoded (or raises the run's error)."""
        futures: list[Future] = [Future() for _ in jobs]

        def report(index: int, result: Decoded) -> None:
            futures[index].set_result(result)

        def failed(done: Future) -> None:
            if done.exception() is not None:
                for future in futures:
                    if not future.done():
                        future.set_exception(done.exception())

        self._dispatcher.submit(self.run, jobs, report).add_done_callback(failed)
        return futures

    def run(self, jobs: list[ChunkJob], on_result: OnResult | None = None) -> list[Decoded]:
        """Decode chunk jobs that share one DecodeSettings: batched encode and generate, then fallback.

        CTranslate2 needs <|startoftranscript|> at one position in every prompt of a batch, so jobs
        with previous text are decoded together with their previous text cut to a common length,
        and jobs without previous text form a second batch. Jobs are also grouped by encoder window
        (short chunks are encoded in short windows, see `window_frames`). Each group is dealt into
        `decoders` sub-batches of about equal audio (`split_rows`), decoded at once, the largest first.
        With `on_result(index, decoded)`, which hears of each job as its sub-batch ends, the first job
        (the first lane's chunk, whose segments go out first) is taken out of its sub-batch and decoded
        first, alone, by the decoder that then goes on with the rest of that sub-batch: it comes back
        early and the step's balance is unchanged (on a CPU; one GPU decoder takes the batch whole).
        """
        if not jobs:
            return []
        settings = jobs[0].settings
        if any(job.settings != settings for job in jobs):
            raise ValueError("one engine batch needs one DecodeSettings")
        results: list[Decoded | None] = [None] * len(jobs)
        by_window: dict[int, list[int]] = {}
        for i, job in enumerate(jobs):
            by_window.setdefault(job.frames, []).append(i)
        tasks: list[Task] = []
        for frames, members in sorted(by_window.items()):
            for indices, prompts in self._prompt_groups([jobs[i] for i in members]):
                sizes = [len(jobs[members[i]].audio) for i in indices]
                for part in split_rows(sizes, self.decoders):
                    tasks.append((frames, [members[indices[k]] for k in part], [prompts[k] for k in part]))
        # the decoders take sub-batches in this order as they come free: the largest first (LPT), so that
        # a small one (a short chunk, a chunk without previous text) fills a gap instead of ending the step
        tasks.sort(key=lambda task: -sum(task[0] + len(jobs[i].audio) // HOP_SAMPLES for i in task[1]))
        if on_result is not None and self.decoders > 1:
            tasks = _first_job_first(tasks)

        def decode(task: Task) -> list[Decoded]:
            frames, rows, prompts = task
            decoded = self._run_group([jobs[i] for i in rows], prompts, settings, frames)
            if on_result is not None:
                for i, result in zip(rows, decoded, strict=True):
                    on_result(i, result)
            return decoded

        with self._lock:
            if len(tasks) == 1:
                outputs = [decode(tasks[0])]
            else:  # every sub-batch is finished before an error is raised (none outlives the lock)
                futures = [self._pool().submit(decode, task) for task in tasks]
                wait(futures)
                outputs = [future.result() for future in futures]
        for (_, rows, _), decoded in zip(tasks, outputs, strict=True):
            for i, result in zip(rows, decoded, strict=True):
                results[i] = result
        return results  # type: ignore[return-value]

    @property
    def decoders(self) -> int:
        """Sub-batches decoded at once: the CTranslate2 model's workers on CPU (see
        `pipeline.cpu_layout`), one on a GPU, where one large batch is faster."""
        return max(1, int(self.model.num_workers)) if self.model.device == "cpu" else 1

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None or self._executor_size != self.decoders:
            if self._executor is not None:
                self._executor.shutdown(wait=False)
            self._executor = ThreadPoolExecutor(self.decoders, thread_name_prefix="amanuensis-decoder")
            self._executor_size = self.decoders
        return self._executor

    def _head(self, settings: DecodeSettings) -> int:
        """Tokens before the previous text in a prompt of these settings: sot_prev and the hotwords."""
        return 1 + len(self.hotword_tokens(settings.hotwords))

    def _prompt_groups(self, jobs: list[ChunkJob]) -> list[tuple[list[int], list[list[int]]]]:
        """Partition jobs by whether they carry previous text; equalise the previous-text lengths."""
        sot = self.tokenizer().sot
        head = self._head(jobs[0].settings)
        groups: dict[bool, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(job.prompt.index(sot) > head, []).append(i)
        out = []
        for with_text, indices in groups.items():
            prompts = [list(jobs[i].prompt) for i in indices]
            if with_text:
                keep = min(p.index(sot) for p in prompts) - head
                prompts = [[*p[:head], *p[p.index(sot) - keep : p.index(sot)], *p[p.index(sot) :]] for p in prompts]
            out.append((indices, prompts))
        return out

    def _run_group(
        self, jobs: list[ChunkJob], prompts: list[list[int]], settings: DecodeSettings, frames: int = N_FRAMES
    ) -> list[Decoded]:
        t0 = time.perf_counter()
        features = self.features([job.audio for job in jobs], frames)
        t1 = time.perf_counter()
        encoded = self.encode(features)
        t2 = time.perf_counter()
        self.stats.add("features", t1 - t0, len(jobs))
        self.stats.add("encode", t2 - t1, len(jobs))
        seconds = [len(job.audio) / SAMPLE_RATE for job in jobs]
        results = self._generate_with_fallback(encoded, features, prompts, settings, seconds)
        if settings.word_timestamps:
            t3 = time.perf_counter()
            align(self.model, self.tokenizer(), encoded, prompts, [len(job.audio) for job in jobs], results)
            self.stats.add("align", time.perf_counter() - t3, len(jobs))
        return results

    def _generate(
        self, encoded: ctranslate2.StorageView, prompts: list[list[int]], settings: DecodeSettings, temperature: float,
        *, seconds: list[float], cap: int | None = None,
    ) -> list[Decoded]:
        """One `generate` call; `cap`: the most new tokens of a row (default: the token cap of the longest)."""
        if temperature > 0 and settings.seed is not None:
            ctranslate2.set_random_seed(settings.seed)
        beam = settings.beam_size
        if temperature > 0:
            kwargs = {"beam_size": 1, "num_hypotheses": settings.best_of, "sampling_topk": 0,
                      "sampling_temperature": temperature}
            beam = settings.best_of
        else:
            kwargs = {"beam_size": beam, "patience": settings.patience}
        new_tokens = settings.token_cap(max(seconds)) if cap is None else cap
        max_length = self._max_length(prompts, new_tokens)
        t0 = time.perf_counter()
        raw = self.model.generate(
            encoded,
            prompts,
            length_penalty=settings.length_penalty,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=settings.suppress_blank,
            suppress_tokens=list(settings.suppress_tokens),
            max_initial_timestamp_index=int(round(settings.max_initial_timestamp / TIME_PRECISION)),
            **kwargs,
        )
        stage = "fallback" if temperature > 0 else "generate"
        self.stats.add(stage, time.perf_counter() - t0, len(prompts))
        self.stats.count("decoder_token_steps", beam * sum(len(r.sequences_ids[0]) for r in raw))
        tokenizer = self.tokenizer()
        out = []
        for result, prompt, length in zip(raw, prompts, seconds, strict=True):
            limit = min(max_length // 2, max_length - len(prompt) + 1)
            best = None
            for tokens, score in zip(result.sequences_ids, result.scores):
                avg = score * (len(tokens) ** settings.length_penalty) / (len(tokens) + 1)
                if best is None or avg > best[1]:
                    best = (tokens, avg)
            tokens, avg = best
            text = tokenizer.decode([t for t in tokens if t < tokenizer.eot])
            segments = timestamped_segments(tokenizer, tokens)
            out.append(Decoded(list(tokens), float(avg), float(result.no_speech_prob),
                               compression_ratio(text.strip()), temperature, text,
                               segment_ratio=segment_ratio(segments),
                               loop_start=loop_start(segments, settings.compression_ratio_threshold),
                               seconds=length, reached_cap=len(tokens) + CAP_SLACK_TOKENS >= limit))
        return out

    def _max_length(self, prompts: list[list[int]], cap: int | None) -> int:
        """CTranslate2's max_length for these rows: the model's, or less where `cap` bounds the new
        tokens. (CTranslate2 stops a Whisper decode after min(max_length / 2, max_length - prompt + 1)
        new tokens, so the cap is mapped onto that rule.)"""
        limit = self.recognizer.max_length
        if cap is None:
            return limit
        return min(limit, max(2 * cap, cap + max(len(p) for p in prompts) - 1))

    def _generate_with_fallback(
        self,
        encoded: ctranslate2.StorageView,
        features: np.ndarray,
        prompts: list[list[int]],
        settings: DecodeSettings,
        seconds: list[float],
    ) -> list[Decoded]:
        """The rows of `encoded` decoded under the fallback policy (`asr.fallback`); `seconds`: each
        row's audio length, which bounds its new tokens (`DecodeSettings.token_cap`)."""

        def decode(rows: list[int], row_prompts: list[list[int]], temperature: float, cap: int | None
                   ) -> list[Decoded]:
            part = encoded if len(rows) == len(prompts) else self._subset(encoded, features, rows)
            return self._generate(part, row_prompts, settings, temperature, seconds=[seconds[i] for i in rows],
                                  cap=cap)

        return decode_with_fallback(decode, prompts, settings, seconds, self.tokenizer().sot, self._head(settings),
                                    self.stats.count)

    def _subset(
        self, encoded: ctranslate2.StorageView, features: np.ndarray, rows: list[int]
    ) -> ctranslate2.StorageView:
        """Encoder output of some batch rows: sliced on CPU, encoded again elsewhere."""
        if self.model.device == "cpu":
            return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(encoded)[rows]))
        return self.encode(np.ascontiguousarray(features[rows]))


def _first_job_first(tasks: list[Task]) -> list[Task]:
    """Sub-batches with job 0 taken out of its own into a one-row sub-batch that goes first; the rest of
    its sub-batch goes right after the largest other one, so the decoder that took job 0 takes it next."""
    k = next(k for k, (_, rows, _) in enumerate(tasks) if 0 in rows)
    frames, rows, prompts = tasks.pop(k)
    if len(rows) == 1:
        return [(frames, rows, prompts), *tasks]
    at = rows.index(0)
    rest = (frames, rows[:at] + rows[at + 1 :], prompts[:at] + prompts[at + 1 :])
    return [(frames, [0], [prompts[at]]), *tasks[:1], rest, *tasks[1:]]
