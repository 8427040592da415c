"""transcribe(audio, options) -> Transcript: every mode and door through one recognizer.

`Transcriber` loads the recognizer (`asr.Recognizer`: the CTranslate2 Whisper model, its tokenizer and
our front-end chain) and decodes every request in its lanes (`asr.batched`), with one VAD; it checks
the options, decodes the audio and adds speaker labels when asked."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from .audio import SAMPLE_RATE, AudioSource, decode_audio
from .errors import OptionsError
from .models import ModelInfo, resolve_model
from .options import DEFAULT_TEMPERATURES, MODES, TASKS, TranscribeOptions
from .transcript import Segment, Transcript

if TYPE_CHECKING:
    from .asr.batched import BatchedTranscriber
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
    thread inside one call (one 2-thread `generate` of 8 chunks takes longer than two 1-thread calls of 4
    at once). AMANUENSIS_DECODERS sets the count (1: one worker with every thread); on a GPU there is
    one worker."""
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
    """A loaded recognizer and its lanes; thread-safe `transcribe()` calls."""

    def __init__(
        self,
        model: str | ModelInfo | None = None,
        device: str = "auto",
        compute_type: str = "auto",
        cpu_threads: int | None = None,
        frontend: object | None = None,
        batch_size: int | None = None,
    ) -> None:
        from .asr.recognizer import Recognizer

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
        if frontend is None:
            from .features.chain import default_chain

            frontend = default_chain()
        self.recognizer = Recognizer(self.info.path, device=device, compute_type=compute_type,
                                     worker_threads=worker_threads, decoders=decoders, frontend=frontend)
        self.compute_type = compute_type
        self._lock = threading.Lock()
        self._batched: BatchedTranscriber | None = None
        self._scheduler: BatchScheduler | None = None
        self.batch_size = batch_size or default_batch_size()

    @property
    def frontend(self) -> object:
        """The front-end chain the recognizer computes features with."""
        return self.recognizer.frontend

    def share_batches(self, scheduler: BatchScheduler) -> None:
        """Send the lanes' chunk batches through `scheduler` (which serialises engine calls), so that
        concurrent calls run at once and their chunks share engine batches."""
        self.batched.submit_batch = scheduler.start
        self._scheduler = scheduler

    @property
    def batched(self) -> BatchedTranscriber:
        """The lanes (VAD, chunking, batched engine) on this recognizer (created on first use)."""
        if self._batched is None:
            from .asr.batched import BatchedTranscriber

            self._batched = BatchedTranscriber(self.recognizer, batch_size=self.batch_size)
        return self._batched

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
        session's live VAD): the lanes then take them instead of running the VAD again."""
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
        segments, language, probability = self._decode(samples, decode_options, progress, on_segment, speech_scores)
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

    def _decode(
        self,
        samples: np.ndarray,
        options: TranscribeOptions,
        progress: ProgressCallback | None,
        on_segment: SegmentCallback | None,
        speech_scores: np.ndarray | None = None,
    ) -> tuple[list[Segment], str, float]:
        """Every mode through the lanes: with a shared scheduler concurrent calls decode at once (their
        chunks share engine batches), without one a call at a time."""
        if self._scheduler is not None:
            with self._scheduler.caller():
                return self.batched.transcribe(samples, options, progress=progress, on_segment=on_segment,
                                               speech_scores=speech_scores)
        with self._lock:
            return self.batched.transcribe(samples, options, progress=progress, on_segment=on_segment,
                                           speech_scores=speech_scores)


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
