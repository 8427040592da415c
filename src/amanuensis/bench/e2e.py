"""amanuensis bench e2e: faster-whisper (sequential, batched) and us on the same audio, in one process.

    amanuensis bench e2e [FILES…] [--refs A/transcripts.tsv [B/transcripts.tsv …]] [--concat] [--json]

With --refs and no FILES, every file listed in the TSVs is used (paths relative to each TSV). Each
clip belongs to a source: the first path component of its name in the TSV (prefixed by the TSV's
folder when several TSVs are given, e.g. `speech2/cmu_arctic`). With --concat each source's clips are
joined into one long recording (the long-form case); otherwise each file is transcribed on its own.
`--concat --orders N` joins each source in N orders (the listed one, then N-1 shuffles with seeds
1…N-1). The peer rows (`fw-*`) run on a fresh, unmodified faster-whisper `WhisperModel` (its own
feature extractor) and `BatchedInferencePipeline`; the `amanuensis*` rows on our Transcriber. Modes
run source by source, one after another on the same audio, so that a change in the machine's load
hits every mode alike. WER is corpus-level over Whisper's English normalizer, overall and per source.
Temperature fallback samples, and CTranslate2 cannot reseed a running sampler, so every mode gets new
(warmed-up, untimed) CTranslate2 models before each source: a source's figures do not depend on which
sources or modes ran before it.
The report starts with the machine (CPU model, cores, load at start and end, CTranslate2 version, our
decoder layout): ratios against the peer differ from one CPU to another.
With --json the last line printed is {"audio_seconds", "rows": [{"name", "seconds", "realtime",
"wer"}], "sources": {source: {"audio_seconds", "rows"}}, "profile", "machine"}.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ctranslate2
import numpy as np

from ..audio import SAMPLE_RATE, decode_audio
from ..evaluation import word_error_rate
from .machine import emit, measured, summary

log = logging.getLogger(__name__)

MODES = ("fw-beam5", "fw-beam1", "fw-batched-beam5", "fw-batched-beam1",
         "amanuensis", "amanuensis-beam1", "amanuensis-nocond", "amanuensis-sequential")
DEFAULT_MODES = ("fw-beam5", "fw-batched-beam5", "amanuensis")
SPEED_BASE, WER_BASE = "fw-batched-beam5", "fw-beam5"
"""Our default is compared for speed with faster-whisper batched, for WER with its sequential beam 5."""


@dataclass
class Item:
    """One recording to transcribe: its source, samples and reference text ('' when unknown)."""

    source: str
    audio: np.ndarray
    ref: str


def read_refs(path: Path) -> dict[str, str]:
    """relative path -> reference text from a `path<TAB>text` file."""
    refs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and "\t" in line:
            name, text = line.split("\t", 1)
            refs[name] = text.strip()
    return refs


def source_of(name: str, prefix: str = "") -> str:
    """The source of a clip named `name` (relative to its TSV): its first path component."""
    first = Path(name).parts[0] if len(Path(name).parts) > 1 else "."
    return f"{prefix}/{first}" if prefix else first


def peer_model(transcriber: object, threads: int | None) -> object:
    """A fresh faster-whisper WhisperModel on the same checkpoint, device and compute type, with its
    own feature extractor (never the one our Transcriber replaced)."""
    from faster_whisper import WhisperModel

    from ..pipeline import default_cpu_threads

    return WhisperModel(transcriber.info.path, device=transcriber.device, compute_type=transcriber.compute_type,
                        cpu_threads=threads or default_cpu_threads(), local_files_only=True)


class _Profiled:
    """Our batched transcriber's per-stage seconds summed over every call of the `amanuensis` mode."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.chunks = 0
        self.speech_seconds = 0.0
        self.counts: dict[str, int] = {}

    def add(self, profile: object) -> None:
        for key, value in profile.seconds.items():
            self.seconds[key] = self.seconds.get(key, 0.0) + value
        for key, value in profile.counts.items():
            self.counts[key] = self.counts.get(key, 0) + value
        self.chunks += profile.chunks
        self.speech_seconds += profile.speech_seconds


def fresh_sampler(whisper: object, path: str, compute_type: str, threads: int) -> None:
    """Give a faster-whisper WhisperModel or our Recognizer (both hold `model` and `hf_tokenizer`) a new,
    warmed-up CTranslate2 model on the same files.
    CTranslate2 seeds a worker thread's sampler only at its first draw (OpenNMT/CTranslate2#1757), so
    with a new model per source and mode the temperature-fallback draws no longer depend on what was
    decoded before. The warm-up (an encode and a greedy decode of silence) draws nothing. The new model
    keeps the old one's workers, which share `threads`."""
    old = whisper.model
    model = ctranslate2.models.Whisper(path, device=old.device, device_index=old.device_index,
                                       compute_type=compute_type, intra_threads=max(1, threads // old.num_workers),
                                       inter_threads=old.num_workers)
    silence = np.zeros((1, model.n_mels, 3000), dtype=np.float32)
    start = whisper.hf_tokenizer.token_to_id("<|startoftranscript|>")
    model.generate(ctranslate2.StorageView.from_array(silence), [[start]], beam_size=1, max_length=8)
    whisper.model = model


def _runners(transcriber: object, batch_size: int, peer: object, profiled: _Profiled, threads: int | None
             ) -> tuple[dict[str, Callable[[np.ndarray], str]], Callable[[], None]]:
    from faster_whisper import BatchedInferencePipeline

    from ..asr.batched import BatchedTranscriber
    from ..pipeline import TranscribeOptions, default_cpu_threads

    fw_batched = BatchedInferencePipeline(model=peer)
    ours = BatchedTranscriber(transcriber.recognizer, batch_size=batch_size)

    def fw(beam: int) -> Callable[[np.ndarray], str]:
        return lambda audio: " ".join(s.text for s in peer.transcribe(audio, beam_size=beam)[0])

    def fwb(beam: int) -> Callable[[np.ndarray], str]:
        return lambda audio: " ".join(
            s.text for s in fw_batched.transcribe(audio, beam_size=beam, batch_size=batch_size)[0])

    def am(profile: bool = False, **kw: object) -> Callable[[np.ndarray], str]:
        def go(audio: np.ndarray) -> str:
            text = " ".join(s.text for s in ours.transcribe(audio, TranscribeOptions(**kw))[0])
            if profile:
                profiled.add(ours.profile)
            return text
        return go

    def refresh() -> None:
        for model in (peer, transcriber.recognizer):
            fresh_sampler(model, transcriber.info.path, transcriber.compute_type, threads or default_cpu_threads())
        ours.engine.model = transcriber.recognizer.model

    return {
        "fw-beam5": fw(5), "fw-beam1": fw(1), "fw-batched-beam5": fwb(5), "fw-batched-beam1": fwb(1),
        "amanuensis": am(profile=True), "amanuensis-beam1": am(beam_size=1),
        "amanuensis-nocond": am(condition_on_previous_text=False), "amanuensis-sequential": am(mode="sequential"),
    }, refresh


def _row(name: str, seconds: float, audio_seconds: float, refs: list[str], texts: list[str]) -> dict:
    wer = word_error_rate(refs, texts) if any(refs) else None
    return {"name": name, "seconds": round(seconds, 3), "realtime": round(audio_seconds / max(seconds, 1e-9), 2),
            "wer": None if wer is None else round(wer, 4)}


def run(
    items: list[Item],
    modes: list[str],
    transcriber: object,
    batch_size: int = 8,
    seed: int = 0,
    orders: int = 1,
    threads: int | None = None,
) -> dict:
    """Time every mode on every item (one warm-up call per mode first), source by source; return the
    JSON-able report. With `orders` > 1 each source's items are its recording joined in that many orders."""
    profiled = _Profiled()
    runners, refresh = _runners(transcriber, batch_size, peer_model(transcriber, threads), profiled, threads)
    warm = items[0].audio[: 10 * SAMPLE_RATE]
    for mode in modes:
        runners[mode](warm)
    sources = list(dict.fromkeys(item.source for item in items))
    texts: dict[str, list[str]] = {mode: [""] * len(items) for mode in modes}
    seconds: dict[tuple[str, str], float] = {}
    for source in sources:
        members = [k for k, item in enumerate(items) if item.source == source]
        for mode in modes:
            refresh()  # new models: this source's fallback draws do not depend on the sources before it
            ctranslate2.set_random_seed(seed)
            started = time.perf_counter()
            for k in members:
                texts[mode][k] = runners[mode](items[k].audio)
            seconds[source, mode] = time.perf_counter() - started
            log.info("%s %s: %.1f s", source, mode, seconds[source, mode])
    refs = [item.ref for item in items]
    audio_seconds = sum(len(item.audio) for item in items) / SAMPLE_RATE
    rows = []
    for mode in modes:
        rows.append(_row(mode, sum(seconds[s, mode] for s in sources), audio_seconds, refs, texts[mode]))
        if any(refs) and orders > 1:
            rows[-1]["wer_by_order"] = [round(word_error_rate(refs[k::orders], texts[mode][k::orders]), 4)
                                        for k in range(orders)]
    by_source = {}
    for source in sources:
        members = [k for k, item in enumerate(items) if item.source == source]
        length = sum(len(items[k].audio) for k in members) / SAMPLE_RATE
        part = [_row(mode, seconds[source, mode], length, [refs[k] for k in members],
                     [texts[mode][k] for k in members]) for mode in modes]
        if any(refs[k] for k in members) and orders > 1:  # a source's items are its joins, order by order
            for row, mode in zip(part, modes, strict=True):
                row["wer_by_order"] = [round(word_error_rate([refs[k]], [texts[mode][k]]), 4) for k in members]
        by_source[source] = {"audio_seconds": round(length, 2), "rows": part}
    report = {"audio_seconds": round(audio_seconds, 2), "rows": rows, "sources": by_source,
              "texts": texts}
    if "amanuensis" in modes:
        report["profile"] = {"seconds": {k: round(v, 3) for k, v in profiled.seconds.items()},
                             "chunks": profiled.chunks, "speech_seconds": round(profiled.speech_seconds, 2),
                             "counts": profiled.counts}
    return report


def _clips(args: argparse.Namespace) -> list[tuple[str, Path, str]]:
    """(source, path, reference) of every clip asked for."""
    tsvs = [Path(p) for p in args.refs or []]
    clips: list[tuple[str, Path, str]] = []
    lookup: dict[Path, tuple[str, str]] = {}
    for tsv in tsvs:
        prefix = tsv.resolve().parent.name if len(tsvs) > 1 else ""
        for name, text in read_refs(tsv).items():
            lookup[(tsv.parent / name).resolve()] = (source_of(name, prefix), text)
            if not args.files:
                clips.append((source_of(name, prefix), tsv.parent / name, text))
    for file in args.files:
        path = Path(file)
        source, text = lookup.get(path.resolve(), (path.resolve().parent.name, ""))
        clips.append((source, path, text))
    if not clips:
        raise SystemExit("no audio: give FILES or --refs transcripts.tsv")
    return clips[: args.limit] if args.limit else clips


def _inputs(args: argparse.Namespace) -> list[Item]:
    items = [Item(source, decode_audio(path), ref) for source, path, ref in _clips(args)]
    if not args.concat:
        return items
    joined = []
    for source in dict.fromkeys(item.source for item in items):
        members = [item for item in items if item.source == source]
        for order in range(max(1, args.orders)):
            indices = list(range(len(members)))
            if order:
                random.Random(order).shuffle(indices)
            joined.append(Item(source, np.concatenate([members[i].audio for i in indices]),
                               " ".join(members[i].ref for i in indices)))
    return joined


def write_texts(path: Path, items: list[Item], texts: dict[str, list[str]]) -> None:
    """One line per recording and mode: index, source, mode, reference, text (tabs and newlines as spaces)."""
    def flat(text: str) -> str:
        return " ".join(text.split())

    with path.open("w", encoding="utf-8") as out:
        out.write("index\tsource\tmode\treference\ttext\n")
        for mode, hypotheses in texts.items():
            for k, (item, text) in enumerate(zip(items, hypotheses, strict=True)):
                out.write(f"{k}\t{item.source}\t{mode}\t{flat(item.ref)}\t{flat(text)}\n")


def _lines(rows: list[dict], indent: str = "") -> list[str]:
    speed = next((r for r in rows if r["name"] == SPEED_BASE), None)
    accuracy = next((r for r in rows if r["name"] == WER_BASE), None)
    lines = []
    for r in rows:
        wer = "-" if r["wer"] is None else f"{100 * r['wer']:.2f}"
        ratio = f"{speed['seconds'] / r['seconds']:.2f}x" if speed else "-"
        delta = (f"{100 * (r['wer'] - accuracy['wer']):+.2f}"
                 if accuracy and r["wer"] is not None and accuracy["wer"] is not None else "-")
        lines.append(f"{indent}{r['name']:22} {r['seconds']:8.2f} {r['realtime']:9.1f} {wer:>7} {ratio:>9} {delta:>8}")
    return lines


def _table(report: dict) -> str:
    orders = f" ({report['orders']} orders)" if "orders" in report else ""
    header = f"{'mode':22} {'seconds':>8} {'x rtime':>9} {'WER %':>7} {'speed vs':>9} {'WER vs':>8}"
    sub = f"{'':22} {'':8} {'':9} {'':7} {'fw-batch5':>9} {'fw-beam5':>8}"
    lines = [f"audio: {report['audio_seconds']:.1f} s{orders}", header, sub, *_lines(report["rows"])]
    if "machine" in report:
        lines.insert(0, summary(report["machine"]))
    for r in report["rows"]:
        if "wer_by_order" in r:
            lines.append(f"{r['name']:22} WER % by order: " + " ".join(f"{100 * w:.2f}" for w in r["wer_by_order"]))
    for source, part in report.get("sources", {}).items():
        lines.append(f"-- {source} ({part['audio_seconds']:.1f} s)")
        lines.extend(_lines(part["rows"], "  "))
        lines.extend(f"  {r['name']:22} WER % by order: " + " ".join(f"{100 * w:.2f}" for w in r["wer_by_order"])
                     for r in part["rows"] if "wer_by_order" in r)
    if "profile" in report:
        lines.append(f"amanuensis profile: {report['profile']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="amanuensis bench e2e", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="audio files")
    parser.add_argument("--refs", nargs="+", action="extend",
                        help="transcripts.tsv files: relative_path<TAB>reference text")
    parser.add_argument("--concat", action="store_true", help="join each source's files into one long recording")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N files")
    parser.add_argument("--orders", type=int, default=1,
                        help="with --concat: join the files in N orders (listed, then shuffled with seeds 1…N-1)")
    parser.add_argument("--modes", default=",".join(DEFAULT_MODES), help=f"comma list of {', '.join(MODES)}")
    parser.add_argument("--model", default=None, help="model name or directory (default tiny.en)")
    parser.add_argument("--threads", type=int, default=None, help="CTranslate2 CPU threads")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--texts", type=Path, default=None,
                        help="write every recording's reference and each mode's text to this TSV")
    args = parser.parse_args(argv)
    if args.orders > 1 and not args.concat:
        parser.error("--orders needs --concat")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    items = _inputs(args)
    report = measured(args.model, args.threads, lambda transcriber: run(
        items, modes, transcriber, args.batch_size, orders=args.orders, threads=args.threads))
    if args.orders > 1:
        report["orders"] = args.orders
    texts = report.pop("texts")
    if args.texts:
        write_texts(args.texts, items, texts)
    return emit(_table(report), report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
