"""The in-process runner: transcribes a job's audio with the cached pipeline model in a thread."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ..audio import SAMPLE_RATE, decode_audio
from ..pipeline import ProgressCallback, SegmentCallback, TranscribeOptions, get_transcriber
from ..transcript import Transcript
from .store import JobRecord


class TranscriberRunner:
    """Runs jobs on `pipeline.get_transcriber(job.model)`; used where no server model pool exists."""

    async def __call__(self, job: JobRecord, audio: Path, options: TranscribeOptions, progress: ProgressCallback,
                       on_segment: SegmentCallback) -> Transcript:
        """Transcribe in a worker thread; progress and on_segment are called from that thread."""
        return await asyncio.to_thread(self._work, job, audio, options, progress, on_segment)

    @staticmethod
    def _work(job: JobRecord, audio: Path, options: TranscribeOptions, progress: ProgressCallback,
              on_segment: SegmentCallback) -> Transcript:
        transcriber = get_transcriber(job.model)
        samples = decode_audio(audio)
        progress(0.0, len(samples) / SAMPLE_RATE)
        return transcriber.transcribe(samples, options, progress=progress, on_segment=on_segment)
