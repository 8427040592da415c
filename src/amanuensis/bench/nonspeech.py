"""amanuensis bench nonspeech: words made up on non-speech, us and faster-whisper with and without VAD.

    amanuensis bench nonspeech [--seconds 20] [--meetings DIR] [--model M] [--json]

Non-speech: generated signals (digital silence, room tone, white/pink/brown noise at -50, -35 and
-20 dBFS, synthesized chords and a melody with drums; see bench.signals) and the non-speech stretches of
real meetings (../shared/data/meetings, the time outside the reference RTTM's speaker turns). Each
meeting is transcribed whole with word times; a word is a false alarm when it overlaps no reference
turn widened by a 0.25 s collar, and speech is still being transcribed when words land in the turns:
`speech wpm` is words per minute of reference speech and `turns heard` the share of turns of at least
1 s that hold a word. Figures are words per minute of non-speech, per kind (silence, room tone, noise,
music, meetings). Modes: `amanuensis` (our default), `fw` (faster-whisper WhisperModel, beam 5, no VAD)
and `fw-vad` (the same with vad_filter=True).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE, decode_audio
from .load import shared_data_dir
from .machine import emit, measured, summary
from .signals import catalogue
from .words import TimedWord, add_common_arguments, chosen_modes

log = logging.getLogger(__name__)

MODES = ("amanuensis", "fw", "fw-vad")
COLLAR_S = 0.25
MIN_TURN_S = 1.0
KINDS = ("silence", "room tone", "noise", "music", "meetings")


@dataclass
class Meeting:
    """A meeting recording and its reference speaker turns (seconds)."""

    name: str
    audio: np.ndarray
    turns: list[tuple[float, float]]


def read_rttm(path: Path) -> dict[str, list[tuple[float, float]]]:
    """File id -> (start, end) of every SPEAKER turn of an RTTM file."""
    turns: dict[str, list[tuple[float, float]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0] == "SPEAKER":
            start, duration = float(fields[3]), float(fields[4])
            turns.setdefault(fields[1], []).append((start, start + duration))
    return turns


def load_meetings(folder: Path) -> list[Meeting]:
    """Every WAV of `folder` that reference.rttm annotates (file ids compared without accents)."""
    import unicodedata

    def plain(name: str) -> str:
        return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()

    turns = {plain(k): v for k, v in read_rttm(folder / "reference.rttm").items()}
    return [Meeting(path.stem, decode_audio(path), sorted(turns[plain(path.stem)]))
            for path in sorted(folder.glob("*.wav")) if plain(path.stem) in turns]


def speech_seconds(turns: list[tuple[float, float]], duration: float) -> float:
    """Seconds covered by the union of `turns` inside [0, duration]."""
    covered, reach = 0.0, 0.0
    for start, end in sorted(turns):
        start, end = max(start, reach), min(end, duration)
        if end > start:
            covered += end - start
            reach = end
    return covered


def in_turns(word: TimedWord, turns: list[tuple[float, float]], collar: float = COLLAR_S) -> bool:
    """True when the word overlaps a turn widened by `collar` each side."""
    return any(word.start < end + collar and word.end > start - collar for start, end in turns)


def _runners(transcriber: object, modes: list[str]) -> dict[str, Callable[[np.ndarray], list[TimedWord]]]:
    from ..pipeline import TranscribeOptions
    from .e2e import peer_model

    def ours(audio: np.ndarray) -> list[TimedWord]:
        transcript = transcriber.transcribe(audio, TranscribeOptions(word_timestamps=True))
        return [TimedWord(w.word, w.start, w.end) for s in transcript.segments for w in s.words or []]

    runners: dict[str, Callable[[np.ndarray], list[TimedWord]]] = {"amanuensis": ours}
    if any(mode.startswith("fw") for mode in modes):
        peer = peer_model(transcriber, None)

        def fw(vad: bool) -> Callable[[np.ndarray], list[TimedWord]]:
            def go(audio: np.ndarray) -> list[TimedWord]:
                segments, _ = peer.transcribe(audio, beam_size=5, word_timestamps=True, vad_filter=vad)
                return [TimedWord(w.word, w.start, w.end) for s in segments for w in s.words or []]
            return go
        runners.update({"fw": fw(False), "fw-vad": fw(True)})
    return runners


def run(signals: list[tuple[str, str, np.ndarray]], meetings: list[Meeting], modes: list[str],
        transcriber: object) -> dict:
    """Transcribe every signal and meeting in every mode; the JSON-able report (words per minute of
    non-speech per kind and mode, each recording's text, the meetings' speech figures)."""
    runners = _runners(transcriber, modes)
    report: dict = {"modes": modes, "kinds": {}, "recordings": [], "speech": {}, "seconds": {}}
    minutes: dict[str, float] = {}
    words: dict[tuple[str, str], int] = {}
    for mode in modes:
        started = time.perf_counter()
        for kind, name, audio in signals:
            found = runners[mode](audio)
            minutes[kind] = minutes.get(kind, 0.0) + len(audio) / SAMPLE_RATE / 60 / len(modes)
            words[kind, mode] = words.get((kind, mode), 0) + len(found)
            report["recordings"].append({"kind": kind, "name": name, "mode": mode,
                                         "text": " ".join(w.word.strip() for w in found)})
        heard, turns_long, speech_words, speech_min = 0, 0, 0, 0.0
        for meeting in meetings:
            duration = len(meeting.audio) / SAMPLE_RATE
            found = runners[mode](meeting.audio)
            outside = [w for w in found if not in_turns(w, meeting.turns)]
            inside = [w for w in found if in_turns(w, meeting.turns, 0.0)]
            speech = speech_seconds(meeting.turns, duration)
            minutes["meetings"] = minutes.get("meetings", 0.0) + (duration - speech) / 60 / len(modes)
            words["meetings", mode] = words.get(("meetings", mode), 0) + len(outside)
            speech_words += len(inside)
            speech_min += speech / 60
            long_turns = [t for t in meeting.turns if t[1] - t[0] >= MIN_TURN_S]
            turns_long += len(long_turns)
            heard += sum(any(in_turns(w, [t], 0.0) for w in found) for t in long_turns)
            report["recordings"].append({"kind": "meetings", "name": meeting.name, "mode": mode,
                                         "text": " ".join(w.word.strip() for w in outside),
                                         "speech_text": " ".join(w.word.strip() for w in inside)})
        report["seconds"][mode] = round(time.perf_counter() - started, 2)
        if meetings:
            report["speech"][mode] = {"speech_wpm": round(speech_words / max(speech_min, 1e-9), 1),
                                      "turns_heard": round(heard / max(turns_long, 1), 3)}
        log.info("%s done in %.1f s", mode, report["seconds"][mode])
    for kind in KINDS:
        if kind in minutes:
            report["kinds"][kind] = {"minutes": round(minutes[kind], 2),
                                     **{mode: round(words[kind, mode] / minutes[kind], 2) for mode in modes}}
    return report


def table(report: dict) -> str:
    """Words per minute of non-speech by kind and mode, the meetings' speech figures, every text found."""
    modes = report["modes"]
    lines = [summary(report["machine"])] if "machine" in report else []
    lines.append(f"{'words per minute of':22} {'minutes':>8} " + " ".join(f"{m:>11}" for m in modes))
    for kind, row in report["kinds"].items():
        lines.append(f"{kind:22} {row['minutes']:8.2f} " + " ".join(f"{row[m]:11.2f}" for m in modes))
    for name, key in (("meeting speech wpm", "speech_wpm"), ("meeting turns heard", "turns_heard")):
        if report["speech"]:
            lines.append(f"{name:22} {'':8} " + " ".join(f"{report['speech'][m][key]:11}" for m in modes))
    lines.append(f"{'seconds':22} {'':8} " + " ".join(f"{report['seconds'][m]:11.1f}" for m in modes))
    for r in report["recordings"]:
        if r["text"]:
            lines.append(f"  {r['mode']:11} {r['kind']:9} {r['name']:26} {r['text'][:120]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="amanuensis bench nonspeech", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each generated signal")
    parser.add_argument("--meetings", type=Path, default=None,
                        help="folder of WAVs with reference.rttm (default ../shared/data/meetings; 'none' skips)")
    add_common_arguments(parser, MODES, MODES)
    args = parser.parse_args(argv)
    modes = chosen_modes(parser, args.modes, MODES)
    if not 1.0 <= args.seconds <= 600.0:
        parser.error("--seconds must be between 1 and 600")
    folder = args.meetings or shared_data_dir() / "meetings"
    if str(folder) != "none" and not (folder / "reference.rttm").is_file():
        parser.error(f"no reference.rttm in {folder}")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    meetings = load_meetings(folder) if str(folder) != "none" else []
    report = measured(args.model, args.threads,
                      lambda transcriber: run(catalogue(args.seconds), meetings, modes, transcriber))
    return emit(table(report), report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
