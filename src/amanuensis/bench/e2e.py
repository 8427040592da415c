"""amanuensis bench e2e: faster-whisper (sequential, batched) and us on the same audio, in one process.

    amanuensis bench e2e [FILES…] [--refs transcripts.tsv] [--concat] [--json]

With --refs and no FILES, every file listed in the TSV is used (paths relative to the TSV). With
--concat the files are joined into one long recording (the long-form case); otherwise each file is
transcribed on its own. `--concat --orders N` joins them in N orders (the listed one, then N-1
shuffles with seeds 1…N-1): on hard speech one order's WER swings by points with small changes, so a
comparison of modes is only firm over several. WER is corpus-level over Whisper's English normalizer
(with several orders, over all of them, and each order's in `wer_by_order`). With --json the last
line printed is {"audio_seconds", "rows": [{"name", "seconds", "realtime", "wer"}], …}.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import ctranslate2
import numpy as np

from ..audio import SAMPLE_RATE, decode_audio
from ..evaluation import word_error_rate

log = logging.getLogger(__name__)

MODES = ("fw-beam5", "fw-beam1", "fw-batched-beam5", "fw-batched-beam1",
         "amanuensis", "amanuensis-beam1", "amanuensis-nocond", "amanuensis-sequential")
DEFAULT_MODES = ("fw-beam5", "fw-batched-beam5", "amanuensis")


def read_refs(path: Path) -> dict[str, str]:
    """relative path -> reference text from a `path<TAB>text` file."""
    refs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and "\t" in line:
            name, text = line.split("\t", 1)
            refs[name] = text.strip()
    return refs


def _runners(transcriber: object, batch_size: int) -> dict[str, Callable[[np.ndarray], str]]:
    from faster_whisper import BatchedInferencePipeline

    from ..asr.batched import BatchedTranscriber
    from ..pipeline import TranscribeOptions

    whisper = transcriber.whisper
    fw_batched = BatchedInferencePipeline(model=whisper)
    ours = BatchedTranscriber(transcriber, batch_size=batch_size)

    def fw(beam: int) -> Callable[[np.ndarray], str]:
        return lambda audio: " ".join(s.text for s in whisper.transcribe(audio, beam_size=beam)[0])

    def fwb(beam: int) -> Callable[[np.ndarray], str]:
        return lambda audio: " ".join(
            s.text for s in fw_batched.transcribe(audio, beam_size=beam, batch_size=batch_size)[0])

    def am(**kw: object) -> Callable[[np.ndarray], str]:
        return lambda audio: " ".join(s.text for s in ours.transcribe(audio, TranscribeOptions(**kw))[0])

    def sequential(audio: np.ndarray) -> str:
        options = TranscribeOptions(vad_filter=False)
        return " ".join(s.text for s in transcriber.iter_segments(audio, options)[0])

    runners = {
        "fw-beam5": fw(5), "fw-beam1": fw(1), "fw-batched-beam5": fwb(5), "fw-batched-beam1": fwb(1),
        "amanuensis": am(), "amanuensis-beam1": am(beam_size=1),
        "amanuensis-nocond": am(condition_on_previous_text=False), "amanuensis-sequential": sequential,
    }
    runners["_profile"] = lambda: ours.profile  # type: ignore[assignment]
    return runners


def run(
    audios: list[np.ndarray],
    refs: list[str] | None,
    modes: list[str],
    transcriber: object,
    batch_size: int = 8,
    seed: int = 0,
    orders: int = 1,
) -> dict:
    """Time every mode on every audio (one warm-up call first); return the JSON-able report.
    With `orders` > 1 the audios are the same recording joined in that many orders."""
    runners = _runners(transcriber, batch_size)
    seconds_of_audio = sum(len(a) for a in audios) / SAMPLE_RATE
    warm = audios[0][: 10 * SAMPLE_RATE]
    rows, profile = [], None
    for mode in modes:
        runner = runners[mode]
        runner(warm)
        ctranslate2.set_random_seed(seed)  # temperature fallback samples: same draws on every run
        started = time.perf_counter()
        texts = [runner(audio) for audio in audios]
        elapsed = time.perf_counter() - started
        wer = word_error_rate(refs, texts) if refs else None
        if mode == "amanuensis":
            profile = runners["_profile"]()
        rows.append({"name": mode, "seconds": round(elapsed, 3), "realtime": round(seconds_of_audio / elapsed, 2),
                     "wer": None if wer is None else round(wer, 4)})
        if refs and orders > 1:
            rows[-1]["wer_by_order"] = [round(word_error_rate([r], [t]), 4) for r, t in zip(refs, texts)]
        log.info("%s: %.1f s, %.1fx realtime, WER %s", mode, elapsed, seconds_of_audio / elapsed, wer)
    report = {"audio_seconds": round(seconds_of_audio, 2), "rows": rows}
    if profile is not None:
        report["profile"] = {"seconds": {k: round(v, 3) for k, v in profile.seconds.items()},
                             "chunks": profile.chunks, "speech_seconds": round(profile.speech_seconds, 2)}
    return report


def _inputs(args: argparse.Namespace) -> tuple[list[np.ndarray], list[str] | None]:
    refs_map = read_refs(Path(args.refs)) if args.refs else {}
    root = Path(args.refs).parent if args.refs else Path(".")
    files = [Path(f) for f in args.files] or [root / name for name in refs_map]
    if not files:
        raise SystemExit("no audio: give FILES or --refs transcripts.tsv")
    audios, refs = [], []
    for path in files:
        audios.append(decode_audio(path))
        key = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
        refs.append(refs_map.get(key, refs_map.get(path.name, "")))
    if args.limit:
        audios, refs = audios[: args.limit], refs[: args.limit]
    if args.concat:
        joined_audio, joined_refs = [], []
        for order in range(max(1, args.orders)):
            indices = list(range(len(audios)))
            if order:
                random.Random(order).shuffle(indices)
            joined_audio.append(np.concatenate([audios[i] for i in indices]))
            joined_refs.append(" ".join(refs[i] for i in indices))
        audios, refs = joined_audio, joined_refs
    return audios, refs if any(refs) else None


def _table(report: dict) -> str:
    rows = report["rows"]
    base = next((r for r in rows if r["name"] == "fw-beam5"), rows[0])
    orders = f" ({report['orders']} orders)" if "orders" in report else ""
    lines = [f"audio: {report['audio_seconds']:.1f} s{orders}",
             f"{'mode':24} {'seconds':>8} {'x realtime':>10} {'WER %':>7} {'speed vs ' + base['name']:>18}"]
    for r in rows:
        wer = "-" if r["wer"] is None else f"{100 * r['wer']:.2f}"
        lines.append(f"{r['name']:24} {r['seconds']:8.2f} {r['realtime']:10.1f} {wer:>7} "
                     f"{base['seconds'] / r['seconds']:17.2f}x")
        if "wer_by_order" in r:
            lines.append(f"{'':24}   WER % by order: " + " ".join(f"{100 * w:.2f}" for w in r["wer_by_order"]))
    if "profile" in report:
        lines.append(f"amanuensis profile: {report['profile']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="amanuensis bench e2e", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="audio files")
    parser.add_argument("--refs", help="transcripts.tsv: relative_path<TAB>reference text")
    parser.add_argument("--concat", action="store_true", help="join the files into one long recording")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N files")
    parser.add_argument("--orders", type=int, default=1,
                        help="with --concat: join the files in N orders (listed, then shuffled with seeds 1…N-1)")
    parser.add_argument("--modes", default=",".join(DEFAULT_MODES), help=f"comma list of {', '.join(MODES)}")
    parser.add_argument("--model", default=None, help="model name or directory (default tiny.en)")
    parser.add_argument("--threads", type=int, default=None, help="CTranslate2 CPU threads")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    if args.orders > 1 and not args.concat:
        parser.error("--orders needs --concat")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    from ..pipeline import Transcriber

    audios, refs = _inputs(args)
    transcriber = Transcriber(args.model, cpu_threads=args.threads)
    report = run(audios, refs, modes, transcriber, args.batch_size, orders=args.orders)
    if args.orders > 1:
        report["orders"] = args.orders
    print(_table(report))
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
