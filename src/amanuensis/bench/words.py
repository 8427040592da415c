"""amanuensis bench words: word-time error against reference word boundaries, us and faster-whisper.

    amanuensis bench words [ALIGNMENTS.tsv] [--model M] [--json]

The reference is a `path<TAB>word<TAB>start<TAB>end` file (seconds; paths relative to the file's
parent folder), by default ../shared/data/wordtimes/alignments.tsv. Each recording is transcribed
with word times by our Transcriber (`amanuensis`: the default batched mode, acoustic word alignment;
`amanuensis-attention`: the same with the model's cross-attention times) and by an unmodified
faster-whisper `WhisperModel` (`fw`, word_timestamps=True, its own feature extractor). Words are
matched by an edit-distance alignment of normalised text (equal and substituted words are pairs);
for each pair the start and end error (hypothesis minus reference, ms) are scored: mean absolute,
median absolute, signed mean (bias), and the share of words whose start and end are both within
50, 100 and 200 ms. `timed` counts the hypothesis words, `matched` the pairs, `reference` the
scored reference words (fillers such as "uh" vanish in normalisation). Seconds are each mode's
transcription time over all recordings, so the cost of word timing shows beside the peer's.
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

from ..audio import decode_audio
from ..evaluation import normalize, word_error_rate
from .load import shared_data_dir
from .machine import emit, measured, summary

log = logging.getLogger(__name__)

MODES = ("amanuensis", "amanuensis-attention", "fw", "amanuensis-sequential")
DEFAULT_MODES = ("amanuensis", "amanuensis-attention", "fw")
TOLERANCES_MS = (50, 100, 200)


@dataclass(frozen=True)
class TimedWord:
    """One word with its start and end in seconds."""

    word: str
    start: float
    end: float


def default_alignments() -> Path:
    """../shared/data/wordtimes/alignments.tsv beside the checkout (or under AMANUENSIS_TEST_DATA)."""
    return shared_data_dir() / "wordtimes" / "alignments.tsv"


def read_alignments(path: Path) -> dict[Path, list[TimedWord]]:
    """Recording path (resolved against the TSV's parent folder) -> its reference words in order."""
    out: dict[Path, list[TimedWord]] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        fields = line.split("\t")
        if not line.strip() or fields[0] == "path":
            continue
        if len(fields) != 4:
            raise ValueError(f"{path}:{number}: expected path<TAB>word<TAB>start<TAB>end")
        audio = (path.parent.parent / fields[0]).resolve()
        out.setdefault(audio, []).append(TimedWord(fields[1], float(fields[2]), float(fields[3])))
    return out


def _tokens(words: list[TimedWord]) -> tuple[list[str], list[int]]:
    """Normalised tokens of `words` and, for each token, the index of the word it came from."""
    tokens, owners = [], []
    for k, word in enumerate(words):
        for token in normalize(word.word).split():
            tokens.append(token)
            owners.append(k)
    return tokens, owners


def match_words(reference: list[TimedWord], hypothesis: list[TimedWord]) -> list[tuple[TimedWord, TimedWord]]:
    """(reference, hypothesis) pairs of an edit-distance alignment of the normalised words (equal and
    substituted tokens; each reference word paired once)."""
    import jiwer

    ref_tokens, ref_owner = _tokens(reference)
    hyp_tokens, hyp_owner = _tokens(hypothesis)
    if not ref_tokens or not hyp_tokens:
        return []
    alignment = jiwer.process_words(" ".join(ref_tokens), " ".join(hyp_tokens)).alignments[0]
    pairs, seen = [], set()
    for chunk in alignment:
        if chunk.type not in ("equal", "substitute"):
            continue
        for offset in range(chunk.ref_end_idx - chunk.ref_start_idx):
            r, h = ref_owner[chunk.ref_start_idx + offset], hyp_owner[chunk.hyp_start_idx + offset]
            if r not in seen:
                seen.add(r)
                pairs.append((reference[r], hypothesis[h]))
    return pairs


def score(pairs: list[tuple[TimedWord, TimedWord]], reference_words: int, timed: int) -> dict:
    """Start/end error statistics (ms) and the shares within each tolerance of matched word pairs."""
    row: dict = {"reference": reference_words, "timed": timed, "matched": len(pairs)}
    if not pairs:
        return row
    starts = np.array([1000 * (h.start - r.start) for r, h in pairs])
    ends = np.array([1000 * (h.end - r.end) for r, h in pairs])
    for name, errors in (("start", starts), ("end", ends)):
        row[f"{name}_mean_ms"] = round(float(np.mean(np.abs(errors))), 1)
        row[f"{name}_median_ms"] = round(float(np.median(np.abs(errors))), 1)
        row[f"{name}_bias_ms"] = round(float(np.mean(errors)), 1)
    worst = np.round(np.maximum(np.abs(starts), np.abs(ends)), 3)  # times in ms to 1 µs: no float crumbs
    for tolerance in TOLERANCES_MS:
        row[f"within_{tolerance}"] = round(float(np.mean(worst <= tolerance)), 4)
    return row


def _runners(transcriber: object, modes: list[str]) -> dict[str, Callable[[np.ndarray], list[TimedWord]]]:
    from ..pipeline import TranscribeOptions
    from .e2e import peer_model

    def ours(mode: str, alignment: str = "acoustic") -> Callable[[np.ndarray], list[TimedWord]]:
        options = TranscribeOptions(word_timestamps=True, mode=mode, word_alignment=alignment)

        def go(audio: np.ndarray) -> list[TimedWord]:
            transcript = transcriber.transcribe(audio, options)
            return [TimedWord(w.word, w.start, w.end) for s in transcript.segments for w in s.words or []]
        return go

    runners: dict[str, Callable[[np.ndarray], list[TimedWord]]] = {
        "amanuensis": ours("batched"), "amanuensis-attention": ours("batched", "attention"),
        "amanuensis-sequential": ours("sequential")}
    if "fw" in modes:
        peer = peer_model(transcriber, None)

        def fw(audio: np.ndarray) -> list[TimedWord]:
            segments, _ = peer.transcribe(audio, beam_size=5, word_timestamps=True)
            return [TimedWord(w.word, w.start, w.end) for s in segments for w in s.words or []]
        runners["fw"] = fw
    return runners


def run(references: dict[Path, list[TimedWord]], modes: list[str], transcriber: object) -> dict:
    """Transcribe every recording in every mode (one untimed warm-up call each); the JSON-able report."""
    audios = {path: decode_audio(path) for path in references}
    runners = _runners(transcriber, modes)
    first = next(iter(audios.values()))
    rows = []
    for mode in modes:
        runners[mode](first)
        pairs: list[tuple[TimedWord, TimedWord]] = []
        timed = 0
        refs, texts = [], []
        started = time.perf_counter()
        for path, audio in audios.items():
            words = runners[mode](audio)
            pairs.extend(match_words(references[path], words))
            timed += len(words)
            refs.append(" ".join(w.word for w in references[path]))
            texts.append(" ".join(w.word for w in words))
        seconds = time.perf_counter() - started
        scored = sum(bool(normalize(w.word)) for ws in references.values() for w in ws)
        row = {"name": mode, "seconds": round(seconds, 2), "wer": round(word_error_rate(refs, texts), 4),
               **score(pairs, scored, timed)}
        log.info("%s: %s", mode, row)
        rows.append(row)
    return {"recordings": len(audios), "rows": rows}


def table(report: dict) -> str:
    """The report as a text table, the machine line first."""
    header = (f"{'mode':22} {'start mean/med/bias ms':>24} {'end mean/med/bias ms':>24} "
              f"{'<=50':>6} {'<=100':>6} {'<=200':>6} {'ref/timed/match':>16} {'WER %':>6} {'seconds':>8}")
    lines = [summary(report["machine"])] if "machine" in report else []
    lines += [f"recordings: {report['recordings']}", header]
    for r in report["rows"]:
        if not r.get("matched"):
            lines.append(f"{r['name']:22} no matched words")
            continue
        start = f"{r['start_mean_ms']:.0f}/{r['start_median_ms']:.0f}/{r['start_bias_ms']:+.0f}"
        end = f"{r['end_mean_ms']:.0f}/{r['end_median_ms']:.0f}/{r['end_bias_ms']:+.0f}"
        shares = " ".join(f"{100 * r[f'within_{t}']:5.1f}%" for t in TOLERANCES_MS)
        counts = f"{r['reference']}/{r['timed']}/{r['matched']}"
        lines.append(f"{r['name']:22} {start:>24} {end:>24} {shares} {counts:>16} {100 * r['wer']:6.2f} "
                     f"{r['seconds']:8.2f}")
    return "\n".join(lines)


def add_common_arguments(parser: argparse.ArgumentParser, default: tuple[str, ...], modes: tuple[str, ...]) -> None:
    """--modes, --model, --threads and --json, as every word-level bench takes them."""
    parser.add_argument("--modes", default=",".join(default), help=f"comma list of {', '.join(modes)}")
    parser.add_argument("--model", default=None, help="model name or directory (default tiny.en)")
    parser.add_argument("--threads", type=int, default=None, help="CTranslate2 CPU threads")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")


def chosen_modes(parser: argparse.ArgumentParser, value: str, modes: tuple[str, ...]) -> list[str]:
    """The comma-separated modes asked for; an unknown one is a usage error (exit code 2)."""
    chosen = [m.strip() for m in value.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in modes]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(modes)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="amanuensis bench words", description=__doc__.splitlines()[0])
    parser.add_argument("alignments", nargs="?", type=Path, default=None,
                        help="path<TAB>word<TAB>start<TAB>end file (default ../shared/data/wordtimes/alignments.tsv)")
    add_common_arguments(parser, DEFAULT_MODES, MODES)
    args = parser.parse_args(argv)
    modes = chosen_modes(parser, args.modes, MODES)
    path = args.alignments or default_alignments()
    if not path.is_file():
        parser.error(f"no reference word times at {path}")
    try:
        references = read_alignments(path)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    report = measured(args.model, args.threads, lambda transcriber: run(references, modes, transcriber))
    return emit(table(report), report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
