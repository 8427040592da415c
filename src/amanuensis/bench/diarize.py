"""Diarization error rate of `amanuensis.diarize` against references, per file and pooled.

    amanuensis bench diarize [FILES... --rttm FILE] [--min-speakers N --max-speakers N] [--json]

Without files: the meeting excerpts in ../shared/data/meetings (scored against its reference.rttm) and
the conversations built from dev-set clips (bench/conversations.py). Scored with pyannote.metrics'
DiarizationErrorRate at collars 0 and 0.25 s, with overlapping speech scored and skipped; each line
gives the error rate and its parts (missed speech, false alarm, confusion, as shares of the reference
speech), the speakers found against the reference's, and the seconds diarization took per minute of audio.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE, decode_audio
from .load import default_data_dir
from .machine import cpu_model, load_average

log = logging.getLogger(__name__)

Turns = list[tuple[float, float, str]]
SETTINGS: tuple[tuple[float, bool], ...] = ((0.25, False), (0.25, True), (0.0, False), (0.0, True))
"""(collar seconds, skip_overlap) pairs scored; the first is the headline."""
PARTS = ("missed detection", "false alarm", "confusion")


@dataclass
class Recording:
    """One scored input: its audio (16 kHz mono float32) and reference turns."""

    name: str
    samples: np.ndarray
    reference: Turns


def read_rttm(path: Path) -> dict[str, Turns]:
    """Reference turns per file id from a NIST RTTM file (SPEAKER lines only)."""
    turns: dict[str, Turns] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            continue
        if len(fields) < 8:
            raise ValueError(f"{path}:{number}: an RTTM SPEAKER line has 10 fields")
        start, duration = float(fields[3]), float(fields[4])
        turns.setdefault(fields[1], []).append((start, start + duration, fields[7]))
    return turns


def meetings_dir() -> Path:
    """../shared/data/meetings beside the checkout (or under AMANUENSIS_TEST_DATA)."""
    return default_data_dir().parent / "meetings"


def load_recordings(files: Sequence[Path], rttm: Path | None) -> list[Recording]:
    """The named files scored against `rttm`, or by default the meetings and the built conversations."""
    if files:
        if rttm is None:
            raise ValueError("--rttm is required with FILES")
        references = read_rttm(rttm)
        missing = [f.name for f in files if f.stem not in references]
        if missing:
            raise ValueError(f"no turns in {rttm} for: {', '.join(missing)}")
        return [Recording(f.stem, decode_audio(str(f)), references[f.stem]) for f in files]
    folder = meetings_dir()
    references = read_rttm(rttm or folder / "reference.rttm")
    recordings = [Recording(f.stem, decode_audio(str(f)), references[f.stem])
                  for f in sorted(folder.glob("*.wav")) if f.stem in references]
    return recordings + conversation_recordings()


def conversation_recordings() -> list[Recording]:
    """The dev-set conversations: four read-speech speakers joined, and the two-channel recording mixed."""
    from .conversations import four_speaker_conversation, stereo_conversation

    return [Recording(name, conversation.samples, conversation.turns)
            for name, conversation in (("conv-four-speakers", four_speaker_conversation()),
                                       ("conv-stereo-mixed", stereo_conversation()))]


def annotation(turns: Turns, uri: str):
    """A pyannote.core Annotation of `turns`."""
    from pyannote.core import Annotation, Segment

    result = Annotation(uri=uri)
    for index, (start, end, speaker) in enumerate(turns):
        if end > start:
            result[Segment(start, end), index] = speaker
    return result


def score(recordings: list[Recording], hypotheses: dict[str, Turns]) -> dict:
    """Per file and pooled error rates with their parts, for every (collar, skip_overlap) in SETTINGS."""
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    out: dict = {"files": {}, "pooled": {}}
    for collar, skip in SETTINGS:
        key = f"collar {collar:g}" + (", overlap skipped" if skip else "")
        metric = DiarizationErrorRate(collar=collar, skip_overlap=skip)
        for recording in recordings:
            duration = len(recording.samples) / SAMPLE_RATE
            uem = Timeline([Segment(0.0, duration)])
            parts = metric(annotation(recording.reference, recording.name),
                           annotation(hypotheses[recording.name], recording.name), uem=uem, detailed=True)
            out["files"].setdefault(recording.name, {})[key] = _shares(parts)
        out["pooled"][key] = _shares({name: metric[name] for name in (*PARTS, "total")})
    return out


def _shares(parts: dict) -> dict:
    total = parts["total"] or 1e-9
    shares = {name.split()[0]: parts[name] / total for name in PARTS}
    return {"der": sum(shares.values()), **shares}


def run(recordings: list[Recording], min_speakers: int | None, max_speakers: int | None) -> dict:
    """Diarize every recording (the encoder loaded first, as a server would have) and score."""
    from ..diarize import diarize
    from ..diarize.encoder import get_encoder

    get_encoder()
    hypotheses: dict[str, Turns] = {}
    found: dict[str, dict] = {}
    seconds = audio = 0.0
    for recording in recordings:
        began = time.perf_counter()
        turns = diarize(recording.samples, min_speakers=min_speakers, max_speakers=max_speakers)
        took = time.perf_counter() - began
        seconds, audio = seconds + took, audio + len(recording.samples) / SAMPLE_RATE
        hypotheses[recording.name] = [(t.start, t.end, t.speaker) for t in turns]
        found[recording.name] = {"found": len({t.speaker for t in turns}),
                                 "reference": len({s for _, _, s in recording.reference}),
                                 "seconds": took, "audio_s": len(recording.samples) / SAMPLE_RATE}
    scores: dict = {"files": {}, "pooled": {}}
    for group in dict.fromkeys(_group(r.name) for r in recordings):
        part = score([r for r in recordings if _group(r.name) == group], hypotheses)
        scores["files"].update(part["files"])
        scores["pooled"][group] = part["pooled"]
    for name, counts in found.items():
        scores["files"][name].update(counts)
    scores["seconds_per_minute"] = 60 * seconds / audio if audio else 0.0
    return scores


def _group(name: str) -> str:
    return "conversations" if name.startswith("conv-") else "files"


def report(scores: dict) -> list[str]:
    """Human-readable lines: one per file, pooled by group, and the time per minute of audio."""
    headline = "collar 0.25"
    lines = [f"{'file':20s} {'DER':>6s} {'miss':>6s} {'FA':>6s} {'conf':>6s} {'no-ovl':>6s} {'c0':>6s}"
             f" {'c0 no-ovl':>9s}  speakers  s/min"]
    for name, row in scores["files"].items():
        main = row[headline]
        exact = "=" if row["found"] == row["reference"] else " "
        lines.append(
            f"{name:20s} {main['der']:6.1%} {main['missed']:6.1%} {main['false']:6.1%} {main['confusion']:6.1%}"
            f" {row[headline + ', overlap skipped']['der']:6.1%} {row['collar 0']['der']:6.1%}"
            f" {row['collar 0, overlap skipped']['der']:9.1%}  {row['found']:2d}/{row['reference']:<2d}{exact}"
            f"     {60 * row['seconds'] / row['audio_s']:5.2f}")
    for group, pooled_by_key in scores["pooled"].items():
        for key, pooled in pooled_by_key.items():
            lines.append(f"pooled {group} ({key}): DER {pooled['der']:.1%} (missed {pooled['missed']:.1%}, "
                     f"false alarm {pooled['false']:.1%}, confusion {pooled['confusion']:.1%})")
    rows = [row for name, row in scores["files"].items() if _group(name) == "files"]
    exact = sum(row["found"] == row["reference"] for row in rows)
    lines.append(f"speaker count exact on {exact}/{len(rows)} files (conversations not counted); "
                 f"{scores['seconds_per_minute']:.2f} s of diarization per minute of audio")
    return lines


def machine_line() -> str:
    """The machine the figures came from (diarization runs on the CPU with torch)."""
    import os

    import torch

    return (f"machine: {cpu_model()}, {os.cpu_count()} cpus, load {load_average()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads available")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="amanuensis bench diarize", description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE")
    parser.add_argument("--rttm", type=Path, default=None, help="reference turns (default: the meetings' RTTM)")
    parser.add_argument("--min-speakers", type=int, default=None)
    parser.add_argument("--max-speakers", type=int, default=None)
    parser.add_argument("--only", choices=("meetings", "conversations"), default=None,
                        help="without FILES: score only one of the default groups")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        recordings = load_recordings(args.files, args.rttm)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    if args.only and not args.files:
        recordings = [r for r in recordings if r.name.startswith("conv-") == (args.only == "conversations")]
    print(machine_line(), flush=True)
    scores = run(recordings, args.min_speakers, args.max_speakers)
    for line in report(scores):
        print(line)
    if args.json:
        print(json.dumps(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
