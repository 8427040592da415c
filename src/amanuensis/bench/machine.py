"""What a benchmark ran on: the CPU model, cores, load and library versions, printed with its figures.

Ratios against a peer depend on the machine (the same code read 1.20x faster-whisper batched on one
2-core box and 0.98x on another, where the peer gained more from the faster CPU), so every report says
which machine it came from.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name ('unknown' where the system does not say)."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Processor", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def load_average() -> float | None:
    """The 1-minute load average (None where the system has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def describe(transcriber: object | None = None) -> dict:
    """The machine and, given our Transcriber, its device, compute type and decoder layout."""
    import ctranslate2

    info: dict = {"cpu": cpu_model(), "cpus": os.cpu_count(), "load": load_average(),
                  "ctranslate2": ctranslate2.__version__}
    if transcriber is not None:
        per, decoders = transcriber.layout
        info.update(device=str(transcriber.whisper.model.device), compute_type=transcriber.compute_type,
                    decoders=decoders, threads_per_decoder=per)
    return info


def summary(info: dict) -> str:
    """One line for a report's header."""
    layout = ""
    if info.get("decoders"):
        layout = f", ours {info['decoders']} decoder(s) x {info['threads_per_decoder']} thread(s)"
    device = f", {info['device']} {info['compute_type']}" if info.get("device") else ""
    ends = info.get("load_end")
    load = f"load {info['load']}" + (f" -> {ends}" if ends is not None else "")
    return f"machine: {info['cpu']}, {info['cpus']} cpus, {load}, ctranslate2 {info['ctranslate2']}{device}{layout}"
