"""transcribe(audio, options) -> Transcript, on CTranslate2 through faster-whisper's WhisperModel."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from .audio import SAMPLE_RATE, AudioSource, decode_audio
from .errors import ModelError, OptionsError
from .models import ModelInfo, resolve_model
from .options import DEFAULT_TEMPERATURES, MODES, TASKS, TranscribeOptions
from .transcript import Segment, Transcript, Word

if TYPE_CHECKING:
    from .asr.scheduler import BatchScheduler

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float, float], None]
"""Called as progress(done_seconds, total_seconds) while transcribing."""
SegmentCallback = Callable[[Segment], None]
"""Called with each segment as soon as it is decoded."""

DEVICES = ("auto", "cpu", "cuda")
"""Where the model runs (auto: CUDA when CTranslate2 sees a GPU)."""
COMPUTE_TYPES = ("auto", "int8", "int8_float16", "int8_float32", "int8_bfloat16", "int16", "float16",
                 "bfloat16", "float32")
"""CTranslate2 compute types (auto: int8 on CPU, float16 on CUDA)."""

_FASTER_WHISPER_VAD = {"threshold": "threshold", "min_silence_ms": "min_silence_duration_ms",
                       "speech_pad_ms": "speech_pad_ms"}
"""Our VadOptions fields by the name faster-whisper's VadOptions gives them (sequential mode)."""

__all__ = ["DEFAULT_TEMPERATURES", "MODES", "TASKS", "TranscribeOptions", "Transcriber", "transcribe"]


def default_cpu_threads(workers: int = 1) -> int:
    """CTranslate2 threads per model copy: AMANUENSIS_CPU_THREADS, else the cores shared by `workers` copies."""
    return int(os.environ.get("AMANUENSIS_CPU_THREADS", "0")) or max(1, (os.cpu_count() or 1) // workers)


MAX_DECODERS = 4
"""At most this many one-call decoders per model copy, so that a batch of 8 still gives each 2 rows."""


def cpu_layout(threads: int, device: str = "cpu") -> tuple[int, int]:
    """(threads per CTranslate2 worker, workers) for a model copy given `threads` CPU threads.

    On a CPU the copy runs `decoders` workers of threads / decoders each, and the engine splits each
    batch between them (`WhisperEngine.decoders`): CTranslate2's decoder gains little from a second
    thread inside one call (on this project's 2-core machine one 2-thread `generate` of 8 chunks took
    1.6x as long as two 1-thread calls of 4 at once). AMANUENSIS_DECODERS sets the count (1: one
    worker with every thread, as before); on a GPU there is one worker."""
    threads = max(1, threads)
    if device == "cuda" or (device == "auto" and _cuda_present()):
        return threads, 1
    raw = os.environ.get("AMANUENSIS_DECODERS", "").strip()
    if raw and not raw.isdigit():
        raise OptionsError(f"AMANUENSIS_DECODERS must be a whole number (0: as many as threads), not {raw!r}",
                           "AMANUENSIS_DECODERS")
    chosen = int(raw or "0") or min(threads, MAX_DECODERS)
    decoders = max(1, min(chosen, threads))
    return max(1, threads // decoders), decoders


def _cuda_present() -> bool:
    import ctranslate2

    return ctranslate2.get_cuda_device_count() > 0


def default_batch_size() -> int:
    """30 s chunks decoded together in batched mode: AMANUENSIS_BATCH_SIZE or 8."""
    return max(1, int(os.environ.get("AMANUENSIS_BATCH_SIZE", "8")))


def default_compute_type(device: str) -> str:
    """int8 on CPU (fastest there), float16 on CUDA; AMANUENSIS_COMPUTE_TYPE overrides."""
    chosen = os.environ.get("AMANUENSIS_COMPUTE_TYPE")
    if chosen:
        return chosen
    on_cuda = device == "cuda" or (device == "auto" and _cuda_present())
    return "float16" if on_cuda else "int8"


class Transcriber:
    """A loaded model and the front end; thread-safe `transcribe()` calls."""

    def __init__(
        self,
        model: str | ModelInfo | None = None,
        device: str = "auto",
        compute_type: str = "auto",
        cpu_threads: int | None = None,
        frontend: object | None = None,
        batch_size: int | None = None,
    ) -> None:
        from faster_whisper import WhisperModel

        if device not in DEVICES:
            raise OptionsError(f"device must be one of {', '.join(DEVICES)}, not {device!r}", "device")
        if compute_type not in COMPUTE_TYPES:
            raise OptionsError(f"compute_type must be one of {', '.join(COMPUTE_TYPES)}, not {compute_type!r}",
                               "compute_type")
        self.info = model if isinstance(model, ModelInfo) else resolve_model(model)
        self.device = device
        compute_type = default_compute_type(device) if compute_type == "auto" else compute_type
        worker_threads, decoders = cpu_layout(cpu_threads or default_cpu_threads(), device)
        self.layout = (worker_threads, decoders)
        """(threads per CTranslate2 worker, workers) of this model copy (`cpu_layout`)."""
        try:
            self.whisper = WhisperModel(
                self.info.path,
                device=device,
                compute_type=compute_type,
                cpu_threads=worker_threads,
                num_workers=decoders,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"model {self.info.name} could not be loaded: {exc}") from exc
        self.compute_type = compute_type
        if frontend is None:
            from .features.chain import default_chain

            frontend = default_chain()
        self.frontend = frontend
        self._install_frontend(frontend)
        self._lock = threading.Lock()
        self._batched: object | None = None
        self._scheduler: BatchScheduler | None = None
        self.batch_size = batch_size or default_batch_size()

    def share_batches(self, scheduler: BatchScheduler) -> None:
        """Send batched mode's chunk batches through `scheduler` (which serialises engine calls), so that
        concurrent batched-mode calls run at once and their chunks share engine batches; other modes
        stay one call at a time."""
        self.batched.run_batch = scheduler.run
        self._scheduler = scheduler

    @property
    def batched(self) -> object:
        """The BatchedTranscriber on this model (created on first use)."""
        if self._batched is None:
            from .asr.batched import BatchedTranscriber

            self._batched = BatchedTranscriber(self, batch_size=self.batch_size)
        return self._batched

    def _install_frontend(self, frontend: object) -> None:
        from .features.adapter import FeatureExtractorAdapter

        self.whisper.feature_extractor = FeatureExtractorAdapter(frontend, self.whisper.feature_extractor)

    @property
    def name(self) -> str:
        """The resolved model name."""
        return self.info.name

    def transcribe(
        self,
        audio: AudioSource,
        options: TranscribeOptions | None = None,
        *,
        progress: ProgressCallback | None = None,
        on_segment: SegmentCallback | None = None,
        speech_scores: np.ndarray | None = None,
    ) -> Transcript:
        """Transcribe `audio` (path, bytes, file object or 16 kHz float32 array) into a Transcript.
        `speech_scores`: the speech score of each 512-sample frame where the caller has them (a realtime
        session's live VAD): batched mode then takes them instead of running the VAD again."""
        options = options or TranscribeOptions()
        options.validate(self.info)
        samples = decode_audio(audio)
        duration = len(samples) / SAMPLE_RATE
        if options.diarize:
            from .diarize.encoder import get_encoder
            from .diarize.known import load_known_voices

            # raises DiarizationUnavailableError, or OptionsError for a bad reference clip, before decoding
            known = load_known_voices(options.known_speakers, get_encoder())
        # Diarization splits segments at word boundaries, so it decodes with word times.
        decode_options = replace(options, word_timestamps=True) if options.diarize else options
        segments, language, probability = self._decode(samples, decode_options, duration, progress, on_segment,
                                                       speech_scores)
        transcript = Transcript(
            text="".join(s.text for s in segments).strip(),
            language=language,
            duration=duration,
            segments=segments,
            language_probability=probability,
            task=options.task,
            model=self.info.name,
        )
        if options.diarize:
            from .diarize import diarize_transcript

            transcript = diarize_transcript(
                samples, transcript, min_speakers=options.min_speakers, max_speakers=options.max_speakers,
                known=known,
            )
            if not options.word_timestamps:
                for segment in transcript.segments:
                    segment.words = None
        return transcript

    def iter_segments(
        self, samples: np.ndarray, options: TranscribeOptions
    ) -> tuple[Iterator[Segment], str, float]:
        """Start decoding; returns (lazy segment iterator, language, language probability)."""
        options.validate(self.info)
        raw, info = self.whisper.transcribe(
            samples,
            language=options.language,
            task=options.task,
            beam_size=options.beam_size,
            best_of=options.best_of,
            temperature=list(options.temperatures),
            initial_prompt=options.initial_prompt,
            hotwords=options.hotwords,
            condition_on_previous_text=options.condition_on_previous_text,
            vad_filter=options.vad_filter,
            vad_parameters={_FASTER_WHISPER_VAD[name]: value for name, value in options.vad_settings().items()},
            word_timestamps=options.word_timestamps,
            multilingual=options.multilingual and self.info.multilingual,
        )
        language = info.language or options.language or "en"
        return (_convert(s) for s in raw), language, float(info.language_probability or 1.0)

    def _decode(
        self,
        samples: np.ndarray,
        options: TranscribeOptions,
        duration: float,
        progress: ProgressCallback | None,
        on_segment: SegmentCallback | None,
        speech_scores: np.ndarray | None = None,
    ) -> tuple[list[Segment], str, float]:
        multilingual = options.multilingual and self.info.multilingual and options.language is None
        if self._scheduler is not None and options.mode == "batched" and not multilingual:
            with self._scheduler.caller():
                return self.batched.transcribe(samples, options, progress=progress, on_segment=on_segment,
                                               speech_scores=speech_scores)
        with self._lock:
            if options.multilingual and self.info.multilingual and options.language is None:
                return self._decode_multilingual(samples, options, duration, progress, on_segment)
            if options.mode == "batched":
                return self.batched.transcribe(samples, options, progress=progress, on_segment=on_segment,
                                               speech_scores=speech_scores)
            iterator, language, probability = self.iter_segments(samples, options)
            segments = self._collect(iterator, language, 0.0, duration, progress, on_segment, [])
        if progress:
            progress(duration, duration)
        return segments, language, probability

    def _collect(
        self,
        iterator: Iterator[Segment],
        language: str,
        offset: float,
        duration: float,
        progress: ProgressCallback | None,
        on_segment: SegmentCallback | None,
        segments: list[Segment],
    ) -> list[Segment]:
        """Number, shift by `offset` seconds, label and report each segment as it arrives."""
        for segment in iterator:
            _shift(segment, offset, duration)
            segment.id = len(segments)
            segment.language = language
            segments.append(segment)
            if on_segment:
                on_segment(segment)
            if progress:
                progress(min(segment.end, duration), duration)
        return segments

    def _decode_multilingual(
        self,
        samples: np.ndarray,
        options: TranscribeOptions,
        duration: float,
        progress: ProgressCallback | None,
        on_segment: SegmentCallback | None,
    ) -> tuple[list[Segment], str, float]:
        """Transcribe each run of one language with that language fixed (see amanuensis.asr.languages)."""
        from .asr.languages import language_runs

        runs = language_runs(self.whisper, samples)
        segments: list[Segment] = []
        for run in runs:
            fixed = replace(options, language=run.language, multilingual=False)
            iterator, _, _ = self.iter_segments(samples[run.start : run.end], fixed)
            self._collect(iterator, run.language, run.start / SAMPLE_RATE, duration, progress, on_segment, segments)
        if progress:
            progress(duration, duration)
        return segments, runs[0].language, runs[0].probability


def _shift(segment: Segment, offset: float, duration: float) -> None:
    """Move a segment (and its words) by `offset` seconds, keeping it inside [0, duration]."""
    segment.start = min(round(segment.start + offset, 3), duration)
    segment.end = min(round(segment.end + offset, 3), duration)
    for word in segment.words or []:
        word.start = min(round(word.start + offset, 3), duration)
        word.end = min(round(word.end + offset, 3), duration)


def _convert(raw: object) -> Segment:
    words = None
    if getattr(raw, "words", None) is not None:
        words = [
            Word(word=w.word, start=round(w.start, 3), end=round(w.end, 3), probability=round(w.probability, 4))
            for w in raw.words
        ]
    return Segment(
        id=raw.id,
        start=round(raw.start, 3),
        end=round(raw.end, 3),
        text=raw.text,
        avg_logprob=float(raw.avg_logprob),
        no_speech_prob=float(raw.no_speech_prob),
        compression_ratio=float(raw.compression_ratio),
        temperature=float(raw.temperature or 0.0),
        tokens=list(raw.tokens),
        words=words,
    )


_default_lock = threading.Lock()
_default: dict[str, Transcriber] = {}


def get_transcriber(model: str | None = None) -> Transcriber:
    """A process-wide cached Transcriber for `model` (loaded on first use)."""
    key = model or "tiny.en"
    with _default_lock:
        if key not in _default:
            _default[key] = Transcriber(model)
        return _default[key]


def transcribe(
    audio: AudioSource,
    options: TranscribeOptions | None = None,
    model: str | None = None,
    *,
    progress: ProgressCallback | None = None,
    on_segment: SegmentCallback | None = None,
) -> Transcript:
    """Transcribe `audio` with the cached model `model` (default: the embedded tiny.en)."""
    return get_transcriber(model).transcribe(audio, options, progress=progress, on_segment=on_segment)
