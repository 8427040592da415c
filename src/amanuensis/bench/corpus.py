"""Corpus throughput, local workers against local Ray, side by side in one process.

    amanuensis bench corpus LIST_OR_FOLDER [--configs 2x1,1x2,ray] [--rounds 2]

Each configuration (`WxT`: W local models of T threads; `ray`: a Ray started on the spot with one
single-threaded model actor per core) transcribes the same files into a fresh folder, the
configurations taking turns round after round. Prints, per configuration, the start-up seconds
(models loaded; for Ray also the cluster started and the actors ready), the run seconds, the audio
hours per hour of the run, and each one's ratio to the first configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ..corpus import CorpusRun, collect_inputs, options_digest
from ..corpus.local import LocalBackend
from ..corpus.work import WorkerSpec
from ..pipeline import TranscribeOptions
from .machine import describe, summary

log = logging.getLogger(__name__)


def _backend(config: str, model: str):
    if config == "ray":
        from ..corpus.ray_backend import RayBackend

        started = time.perf_counter()
        backend = RayBackend(WorkerSpec(model, threads=1))
        backend.wait_ready()
        return backend, time.perf_counter() - started, backend.connect_seconds
    workers, threads = (int(part) for part in config.split("x"))
    started = time.perf_counter()
    backend = LocalBackend(WorkerSpec(model, threads=threads), workers)
    return backend, time.perf_counter() - started, 0.0


def run_config(config: str, inputs: Sequence[Path], model: str) -> dict:
    """One configuration over the corpus into a temporary folder: start-up, run time, throughput."""
    files = collect_inputs(inputs)
    options = TranscribeOptions()
    with tempfile.TemporaryDirectory(prefix="amanuensis-bench-corpus-") as out:
        run = CorpusRun(files, Path(out), options, ["text"], options_digest(options, model, ["text"]), progress=False)
        backend, startup, cluster = _backend(config, model)
        try:
            summary = run.execute(backend)
        finally:
            backend.close()
    rate = summary.audio_seconds / summary.wall_seconds if summary.wall_seconds else 0.0
    return {"config": config, "files": summary.done, "failed": len(summary.failed),
            "audio_s": round(summary.audio_seconds, 1), "startup_s": round(startup, 2),
            "cluster_start_s": round(cluster, 2), "run_s": round(summary.wall_seconds, 2),
            "audio_hours_per_hour": round(rate, 2), "load": os.getloadavg()[0]}


def _line(round_number: int, result: dict) -> str:
    return (f"round {round_number} {result['config']:>5}: start-up {result['startup_s']:6.1f} s, "
            f"run {result['run_s']:6.1f} s, {result['audio_hours_per_hour']:5.1f} audio h/h "
            f"({result['files']} files, load {result['load']:.1f})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="amanuensis bench corpus", description=__doc__.split("\n")[0])
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--configs", default="2x1,1x2,ray", help="comma-separated: WxT or ray (default 2x1,1x2,ray)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--json", action="store_true", help="print every run as a JSON line too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    runs: dict[str, list[dict]] = {config: [] for config in configs}
    print(summary(describe()), flush=True)
    for round_number in range(1, args.rounds + 1):
        for config in configs:
            result = run_config(config, args.inputs, args.model)
            runs[config].append(result)
            print(json.dumps({"round": round_number, **result}) if args.json else _line(round_number, result),
                  flush=True)
    first = statistics.median(r["audio_hours_per_hour"] for r in runs[configs[0]])
    print(f"median over {args.rounds} round(s); ratio = throughput / {configs[0]}'s")
    for config in configs:
        rate = statistics.median(r["audio_hours_per_hour"] for r in runs[config])
        startup = statistics.median(r["startup_s"] for r in runs[config])
        ratio = rate / first if first else 0.0
        print(f"{config:>5}: {rate:5.1f} audio h/h, start-up {startup:5.1f} s, ratio {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
