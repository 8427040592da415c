"""CTranslate2 Whisper, batched: features, encode, generate with per-chunk fallback, language id, words.

`WhisperEngine.run(jobs)` takes chunk jobs that share decoding settings and runs one feature pass,
one encoder call and one batched `generate` for all of them; only the chunks that fail the
compression-ratio / log-probability checks are decoded again, together, at the next temperature.
On a CPU the batch is dealt into sub-batches, one per CTranslate2 worker, decoded at once (each with
its own fallback), since one call gains little from a second thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import ctranslate2
import numpy as np

from ..constants import FRAMES_PER_SECOND, N_FRAMES, SAMPLE_RATE
from ..constants import HOP_LENGTH as HOP_SAMPLES
from .decoding import (
    TIME_PRECISION,
    Decoded,
    DecodeSettings,
    compression_ratio,
    loop_start,
    loops,
    needs_fallback,
    pick_best,
    segment_ratio,
    stuck_in_a_loop,
    timestamped_segments,
    too_repetitive,
)

log = logging.getLogger(__name__)

WINDOW_STEP_FRAMES = 1000
"""Encoder windows are 10, 20 or 30 s, so that chunks of different lengths still share batches."""
SHORTEST_WINDOW_FRAMES = 1000
"""Windows shorter than 10 s made the model loop on short clips: never below this."""
_STATS_LOCK = threading.Lock()
TOKENS_PER_SECOND = 50
CAP_SLACK_TOKENS = 2
"""A decode this close to its cap counts as stopped by it (measured: exactly at the cap; a try
wrongly counted so is only decoded again in full)."""
MAX_PROMPT_TOKENS = 223
MAX_HOTWORD_TOKENS = MAX_PROMPT_TOKENS // 2
"""Hotwords are cut to this many tokens, so that previous text keeps room in the prompt."""


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
    """One chunk to decode: its audio, the decoder prompt, and whether to detect its language."""

    audio: np.ndarray
    prompt: list[int]
    settings: DecodeSettings
    detect_language: bool = False
    window: int | None = None
    """Encoder window (frames) chosen by the caller; None: the shortest that fits (`window_frames`)."""

    @property
    def frames(self) -> int:
        """Encoder window (frames) for this job."""
        return self.window or window_frames(len(self.audio), self.settings.window_margin_s)


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
    """Batched calls on a faster-whisper WhisperModel's CTranslate2 model and feature extractor."""

    def __init__(self, whisper: object) -> None:
        self.whisper = whisper
        self.model: ctranslate2.models.Whisper = whisper.model
        self.stats = EngineStats()
        self._tokenizers: dict[tuple[str, str | None], object] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_size = 0

    @property
    def multilingual(self) -> bool:
        """True for multilingual checkpoints."""
        return bool(self.model.is_multilingual)

    def tokenizer(self, task: str = "transcribe", language: str | None = None) -> object:
        """A cached faster-whisper Tokenizer for (task, language)."""
        from faster_whisper.tokenizer import Tokenizer

        key = (task, language if self.multilingual else None)
        if key not in self._tokenizers:
            self._tokenizers[key] = Tokenizer(
                self.whisper.hf_tokenizer, self.multilingual, task=task, language=key[1] or "en"
            )
        return self._tokenizers[key]

    def hotword_tokens(self, hotwords: str | None) -> list[int]:
        """The tokens of `hotwords` as prompts carry them (at most MAX_HOTWORD_TOKENS); none for none."""
        if not hotwords or not hotwords.strip():
            return []
        return list(self.tokenizer().encode(" " + hotwords.strip()))[:MAX_HOTWORD_TOKENS]

    def prompt(
        self, tokenizer: object, previous: list[int], without_timestamps: bool = False, hotwords: str | None = None
    ) -> list[int]:
        """[sot_prev, hotwords…, previous text…] + sot sequence (+ no_timestamps). Hotwords lead every
        prompt, with or without previous text, as faster-whisper's `hotwords` do (there: when no prefix
        is given; there is none here); the previous text fills the room they leave."""
        hot = self.hotword_tokens(hotwords)
        tokens: list[int] = []
        if previous or hot:
            room = MAX_PROMPT_TOKENS - len(hot)
            tokens = [tokenizer.sot_prev, *hot, *(previous[-room:] if previous else [])]
        tokens.extend(tokenizer.sot_sequence)
        if without_timestamps:
            tokens.append(tokenizer.no_timestamps)
        return tokens

    def features(self, audios: list[np.ndarray], frames: int = N_FRAMES) -> np.ndarray:
        """Log-mel features (B, n_mels, frames) of chunks zero-padded to `frames` (default 30 s), via the
        installed front end: one batched call when it has one (our adapter's `windows`), else a call per
        chunk. Columns equal the first `frames` of the 30 s window's (padding is silence)."""
        extractor = self.whisper.feature_extractor
        if hasattr(extractor, "windows"):
            return extractor.windows(audios, frames=frames)
        samples = frames * HOP_SAMPLES
        out = []
        for audio in audios:
            padded = np.zeros(samples, dtype=np.float32)
            padded[: min(len(audio), samples)] = audio[:samples]
            mel = np.asarray(extractor(padded), dtype=np.float32)
            out.append(mel[:, :frames])
        return np.ascontiguousarray(np.stack(out))

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

    def run(self, jobs: list[ChunkJob]) -> list[Decoded]:
        """Decode chunk jobs that share one DecodeSettings: batched encode and generate, then fallback.

        CTranslate2 needs <|startoftranscript|> at one position in every prompt of a batch, so jobs
        with previous text are decoded together with their previous text cut to a common length,
        and jobs without previous text form a second batch. Jobs are also grouped by encoder window
        (short chunks are encoded in short windows, see `window_frames`). Each group is dealt into
        `decoders` sub-batches of about equal audio (`split_rows`), decoded at once, the largest first.
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
        tasks: list[tuple[int, list[int], list[list[int]]]] = []
        for frames, members in sorted(by_window.items()):
            for indices, prompts in self._prompt_groups([jobs[i] for i in members]):
                sizes = [len(jobs[members[i]].audio) for i in indices]
                for part in split_rows(sizes, self.decoders):
                    tasks.append((frames, [members[indices[k]] for k in part], [prompts[k] for k in part]))
        # the decoders take sub-batches in this order as they come free: the largest first (LPT), so that
        # a small one (a short chunk, a chunk without previous text) fills a gap instead of ending the step
        tasks.sort(key=lambda task: -sum(task[0] + len(jobs[i].audio) // HOP_SAMPLES for i in task[1]))

        def decode(task: tuple[int, list[int], list[list[int]]]) -> list[Decoded]:
            frames, rows, prompts = task
            return self._run_group([jobs[i] for i in rows], prompts, settings, frames)

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
        """Partition jobs by whether they carry previous text; equalise the previous-text lengths (the
        hotwords before it, the same in every job of a batch, stay whole)."""
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
        languages = self._languages(encoded, jobs)
        for i, language in enumerate(languages):
            if language is not None:
                prompts[i] = self._with_language(prompts[i], language[0])
        seconds = [len(job.audio) / SAMPLE_RATE for job in jobs]
        results = self._generate_with_fallback(encoded, features, prompts, settings, seconds)
        for result, language in zip(results, languages, strict=True):
            result.language = language
        if settings.word_timestamps:
            t3 = time.perf_counter()
            self._align(encoded, prompts, jobs, results)
            self.stats.add("align", time.perf_counter() - t3, len(jobs))
        return results

    def _languages(self, encoded: ctranslate2.StorageView, jobs: list[ChunkJob]) -> list[tuple[str, float] | None]:
        if not self.multilingual or not any(job.detect_language for job in jobs):
            return [None] * len(jobs)
        detected = self.model.detect_language(encoded)
        out: list[tuple[str, float] | None] = []
        for job, ranked in zip(jobs, detected):
            token, probability = ranked[0]
            out.append((token[2:-2], float(probability)) if job.detect_language else None)
        return out

    def _with_language(self, prompt: list[int], language: str) -> list[int]:
        tokenizer = self.tokenizer()
        language_token = tokenizer.tokenizer.token_to_id(f"<|{language}|>")
        start = prompt.index(tokenizer.sot)
        if start + 1 < len(prompt):
            prompt[start + 1] = language_token
        return prompt

    def _generate(
        self, encoded: ctranslate2.StorageView, prompts: list[list[int]], settings: DecodeSettings, temperature: float,
        beam_size: int | None = None, *, seconds: list[float], cap: int | None = None,
    ) -> list[Decoded]:
        """One `generate` call; `cap`: the most new tokens of a row (default: the token cap of the longest)."""
        if temperature > 0 and settings.seed is not None:
            ctranslate2.set_random_seed(settings.seed)
        beam = settings.beam_size if beam_size is None else beam_size
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
        stage = "fallback" if temperature > 0 else "greedy" if beam == 1 < settings.beam_size else "generate"
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
        limit = self.whisper.max_length
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
        """`seconds`: each row's audio length, which bounds its new tokens (`DecodeSettings.token_cap`)."""
        temperatures = settings.temperatures or (0.0,)
        results = self._first_pass(encoded, features, prompts, settings, temperatures[0], seconds)
        tried: list[list[Decoded]] = [[r] for r in results]
        pending = [i for i, r in enumerate(results) if needs_fallback(r, settings)]
        pending = self._retry_without_previous_text(encoded, features, prompts, settings, results, tried, pending,
                                                    seconds)
        if not settings.sample_unlikely:  # an unlikely chunk keeps its best beam result; loops go on
            loops = [i for i in pending if too_repetitive(results[i], settings)]
            for i in set(pending) - set(loops):
                results[i] = pick_best(tried[i], settings)
            pending = loops
        for temperature in temperatures[1:]:
            if not pending:
                break
            log.debug("fallback to t=%.1f for %d of %d chunks", temperature, len(pending), len(prompts))
            retry = self._staged(encoded, features, pending, prompts, settings, temperature, seconds,
                                 settings.retry_stage)
            still = []
            for i, result in zip(pending, retry, strict=True):
                tried[i].append(result)
                results[i] = result
                if needs_fallback(result, settings):
                    if stuck_in_a_loop(tried[i], settings):
                        results[i] = pick_best(tried[i], settings)
                    else:
                        still.append(i)
            pending = still
        for i in pending:
            results[i] = pick_best(tried[i], settings)
        return results

    def _first_pass(
        self,
        encoded: ctranslate2.StorageView,
        features: np.ndarray,
        prompts: list[list[int]],
        settings: DecodeSettings,
        temperature: float,
        seconds: list[float],
    ) -> list[Decoded]:
        """Decode at the first temperature; with `greedy_first_logprob`, greedily first and with the beam
        only the chunks whose greedy result is unsure."""
        threshold = settings.greedy_first_logprob
        if threshold is None or settings.beam_size <= 1 or temperature > 0:
            return self._staged(encoded, features, list(range(len(prompts))), prompts, settings, temperature,
                                seconds, settings.first_stage)
        results = self._generate(encoded, prompts, settings, temperature, beam_size=1, seconds=seconds)
        unsure = [i for i, r in enumerate(results) if r.avg_logprob < threshold or needs_fallback(r, settings)]
        if unsure:
            beam = self._generate(self._subset(encoded, features, unsure) if len(unsure) < len(prompts) else encoded,
                                  [prompts[i] for i in unsure], settings, temperature,
                                  seconds=[seconds[i] for i in unsure])
            for i, result in zip(unsure, beam, strict=True):
                results[i] = result
        self.stats.count("beam_after_greedy", len(unsure))
        return results

    def _retry_without_previous_text(
        self,
        encoded: ctranslate2.StorageView,
        features: np.ndarray,
        prompts: list[list[int]],
        settings: DecodeSettings,
        results: list[Decoded],
        tried: list[list[Decoded]],
        pending: list[int],
        seconds: list[float],
    ) -> list[int]:
        """Failed chunks that were prompted with previous text are decoded once more without it (a
        loop is often the previous text's doing); returns the chunks that still fail."""
        sot, head = self.tokenizer().sot, self._head(settings)
        prompted = [i for i in pending if prompts[i].index(sot) > head]
        if not prompted or not settings.temperatures or settings.temperatures[0] > 0:
            return pending
        for i in prompted:  # the hotwords stay
            kept = prompts[i][:head] if head > 1 else []
            prompts[i] = [*kept, *prompts[i][prompts[i].index(sot) :]]
        retry = self._staged(encoded, features, prompted, prompts, settings, settings.temperatures[0], seconds,
                             settings.retry_stage)
        for i, result in zip(prompted, retry, strict=True):
            tried[i].append(result)
            results[i] = result
        return [i for i in pending if needs_fallback(results[i], settings)]

    def _staged(
        self,
        encoded: ctranslate2.StorageView,
        features: np.ndarray,
        rows: list[int],
        prompts: list[list[int]],
        settings: DecodeSettings,
        temperature: float,
        seconds: list[float],
        stage: float | None,
    ) -> list[Decoded]:
        """Rows `rows` of a batch decoded at `temperature`, first to `stage` of their token cap; a try that
        has ended or fallen into a loop by then is kept (a loop would run to the cap, and the caller drops
        it or decodes it again), the rest is decoded again to the whole cap."""
        results: dict[int, Decoded] = {}
        todo = list(rows)
        full = settings.token_cap(max(seconds[i] for i in rows))
        caps = [None] if stage is None or full is None else [max(1, math.ceil(full * stage)), None]
        for cap in caps:
            whole = len(todo) == encoded.shape[0]
            decoded = self._generate(encoded if whole else self._subset(encoded, features, todo),
                                     [prompts[i] for i in todo], settings, temperature,
                                     seconds=[seconds[i] for i in todo], cap=cap)
            results.update(zip(todo, decoded, strict=True))
            todo = [i for i in todo if results[i].reached_cap and not loops(results[i], settings)]
            if cap is not None:
                self.stats.count("loops_stopped_early", sum(r.reached_cap and loops(r, settings) for r in decoded))
            if not todo:
                break
        return [results[i] for i in rows]

    def _subset(
        self, encoded: ctranslate2.StorageView, features: np.ndarray, rows: list[int]
    ) -> ctranslate2.StorageView:
        """Encoder output of some batch rows: sliced on CPU, encoded again elsewhere."""
        if self.model.device == "cpu":
            return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(encoded)[rows]))
        return self.encode(np.ascontiguousarray(features[rows]))

    def _align(
        self, encoded: ctranslate2.StorageView, prompts: list[list[int]], jobs: list[ChunkJob], results: list[Decoded]
    ) -> None:
        tokenizer = self.tokenizer()
        texts = [[t for t in r.tokens if t < tokenizer.eot] for r in results]
        starts = [tuple(t for t in p[p.index(tokenizer.sot):] if t != tokenizer.no_timestamps) for p in prompts]
        frames = [max(1, min(N_FRAMES, -(-len(job.audio) // HOP_SAMPLES))) for job in jobs]
        for result in results:
            result.words = []
        if all(texts) and len(set(starts)) == 1:
            aligned = self.model.align(encoded, list(starts[0]), texts, frames)
            for result, text, one in zip(results, texts, aligned):
                result.words = words_from_alignment(tokenizer, text, one)
            return
        array = np.asarray(encoded)
        for i, result in enumerate(results):
            if texts[i]:
                one = ctranslate2.StorageView.from_array(np.ascontiguousarray(array[i : i + 1]))
                aligned = self.model.align(one, list(starts[i]), [texts[i]], frames[i])[0]
                result.words = words_from_alignment(tokenizer, texts[i], aligned)


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

