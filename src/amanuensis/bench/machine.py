"""What a benchmark ran on: the CPU model, cores, load and library versions, printed with its figures.

Ratios against a peer depend on the machine (a faster CPU can speed the peer up more than us), so every
report says which machine it came from, and which front end ran: the compiled log-mel kernel and its numpy
fallback give features equal to within float rounding, which can still flip a decoder's choice, so
two runs compare only when both name the same kernel (a git worktree holds no build of the kernel).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
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


def frontend_in_use(chain: object) -> str | None:
    """The front-end backend the next call goes to, with the CPU kernel it runs: 'cpu (c-avx2)',
    'cpu (numpy)', 'torch:cuda'; None when no backend is healthy."""
    label = getattr(chain, "active", None)
    if label is None:
        return None
    for entry in getattr(chain, "entries", []):
        if entry.label == label and entry.backend is not None:
            kernel = getattr(entry.backend, "kernel", None)
            return f"{label} ({kernel})" if kernel else label
    return label


def describe(transcriber: object | None = None) -> dict:
    """The machine and, given our Transcriber, its device, compute type, decoder layout and front end."""
    import ctranslate2

    info: dict = {"cpu": cpu_model(), "cpus": os.cpu_count(), "load": load_average(),
                  "ctranslate2": ctranslate2.__version__}
    if transcriber is not None:
        per, decoders = transcriber.layout
        info.update(device=str(transcriber.recognizer.model.device), compute_type=transcriber.compute_type,
                    decoders=decoders, threads_per_decoder=per,
                    frontend=frontend_in_use(getattr(transcriber, "frontend", None)))
    return info


def summary(info: dict) -> str:
    """One line for a report's header."""
    layout = ""
    if info.get("decoders"):
        layout = f", ours {info['decoders']} decoder(s) x {info['threads_per_decoder']} thread(s)"
    device = f", {info['device']} {info['compute_type']}" if info.get("device") else ""
    frontend = f", front end {info['frontend']}" if info.get("frontend") else ""
    ends = info.get("load_end")
    load = f"load {info['load']}" + (f" -> {ends}" if ends is not None else "")
    versions = f"ctranslate2 {info['ctranslate2']}{device}{layout}{frontend}"
    return f"machine: {info['cpu']}, {info['cpus']} cpus, {load}, {versions}"


def measured(model: str | None, threads: int | None, measure: Callable[[object], dict]) -> dict:
    """Load our Transcriber for `model`, run `measure(transcriber)` and add the machine it ran on
    (`"machine"`: `describe`, with the load at the start and at the end)."""
    from ..pipeline import Transcriber

    transcriber = Transcriber(model, cpu_threads=threads)
    machine = describe(transcriber)
    report = measure(transcriber)
    report["machine"] = {**machine, "load_end": load_average()}
    return report


def emit(table: str, report: dict, as_json: bool) -> int:
    """Print a bench's table, then (`as_json`) its report as one JSON line; the exit status."""
    print(table)
    if as_json:
        print(json.dumps(report))
    return 0
