"""How much time diarization adds to a transcription of the same audio.

Run: PYTHONPATH=src python -m tests.diar_timing [repeats]. Transcribes the four-speaker test conversation
with the embedded tiny.en (default options, and with word timestamps as diarized output usually wants),
diarizes it, interleaving the runs, and prints the best and median times and the ratio.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

from amanuensis.diarize import diarize
from amanuensis.pipeline import TranscribeOptions, Transcriber

from .diar_conversation import four_speaker_conversation


def timed(function: Callable[..., object], *args: object, **kwargs: object) -> float:
    began = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - began


def main(repeats: int = 5) -> None:
    samples = four_speaker_conversation().samples
    transcriber = Transcriber()
    diarize(samples)  # load the encoder and warm up, as a server would have
    transcriber.transcribe(samples)
    runs: dict[str, list[float]] = {"transcribe": [], "transcribe+words": [], "diarize": []}
    for _ in range(repeats):
        runs["transcribe"].append(timed(transcriber.transcribe, samples))
        runs["transcribe+words"].append(timed(transcriber.transcribe, samples, TranscribeOptions(word_timestamps=True)))
        runs["diarize"].append(timed(diarize, samples))
    seconds = len(samples) / 16000
    print(f"audio {seconds:.1f} s; {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    for name, values in runs.items():
        print(f"{name:17s} best {min(values):6.2f} s  median {statistics.median(values):6.2f} s")
    for base in ("transcribe", "transcribe+words"):
        best = min(runs["diarize"]) / min(runs[base])
        median = statistics.median(runs["diarize"]) / statistics.median(runs[base])
        print(f"diarize / {base}: best {best:.1%}  median {median:.1%}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
