"""Command line: amanuensis transcribe | batch | models | serve | bench | jobs."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from ..constants import SAMPLE_RATE
from ..errors import AmanuensisError

log = logging.getLogger("amanuensis")

PROGRESS_MIN_SECONDS = 60.0
EXIT_BAD_INPUT = 2


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit code 2; flags are never
    abbreviated (--mode must not quietly mean --model)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    from ..formats import FORMATS
    from ..options import CLI
    from .flags import add_model_flags, add_option_flags

    parser = OneLineParser(prog="amanuensis", description="Self-hosted speech-to-text on Whisper.")
    parser.add_argument("--version", action="version", version=f"amanuensis {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    tr = commands.add_parser("transcribe", help="transcribe audio or video files")
    tr.add_argument("files", nargs="+", type=Path, metavar="FILE")
    tr.add_argument("--format", default="text", choices=FORMATS, help="output format (default: text)")
    tr.add_argument("--output-dir", type=Path, default=None, help="write FILE-stem.EXT here")
    add_model_flags(tr)
    add_option_flags(tr, CLI)
    tr.set_defaults(handler=cmd_transcribe)

    models = commands.add_parser("models", help="list the models available without a download")
    models.add_argument("--json", action="store_true")
    models.set_defaults(handler=cmd_models)

    serve = commands.add_parser("serve", help="run the HTTP server")
    try:
        from ..server import add_serve_arguments

        add_serve_arguments(serve)
        serve.set_defaults(handler=cmd_serve)
    except ImportError as exc:  # the server package failed to import: say so when it is used
        reason = str(exc)
        serve.set_defaults(handler=lambda args: _unavailable("serve", reason))

    bench = commands.add_parser("bench", help="benchmarks against peers (frontend, e2e, realtime, load, corpus, "
                                "words, nonspeech), a soak test (soak), diarization (diarize); needs the bench extra")
    bench.add_argument("which", choices=("frontend", "e2e", "realtime", "load", "corpus", "words", "nonspeech",
                                         "soak", "diarize"))
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(handler=cmd_bench)

    from .jobs import add_jobs_arguments

    add_jobs_arguments(commands)
    from .batch import add_batch_arguments

    add_batch_arguments(commands)
    return parser


def _unavailable(command: str, reason: str) -> int:
    sys.stderr.write(f"amanuensis: error: '{command}' is unavailable: {reason}\n")
    return EXIT_BAD_INPUT


def cmd_models(args: argparse.Namespace) -> int:
    """Print the locally available models."""
    import json

    from ..models import list_models

    found = list_models()
    if args.json:
        sys.stdout.write(json.dumps([m.to_dict() for m in found], indent=2) + "\n")
        return 0
    sys.stdout.write(f"{'name':<10} {'languages':<13} {'size':>9}  {'source':<9} path\n")
    for m in found:
        langs = "multilingual" if m.multilingual else "English"
        sys.stdout.write(f"{m.name:<10} {langs:<13} {m.size_bytes / 1e6:>7.1f}MB  {m.source:<9} {m.path}\n")
    return 0


def cmd_transcribe(args: argparse.Namespace) -> int:
    """Transcribe each file; write to stdout or --output-dir."""
    from ..audio import decode_audio
    from ..formats import EXTENSIONS, render
    from ..options import CLI
    from ..pipeline import Transcriber
    from .flags import options_from_args, speakers_for_formats

    options = speakers_for_formats(options_from_args(args, CLI), [args.format])
    transcriber = Transcriber(args.model, device=args.device, compute_type=args.compute_type)
    options.validate(transcriber.info)
    if args.output_dir:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in args.files:
        try:
            samples = decode_audio(path)
            with _progress_bar(len(samples) / SAMPLE_RATE, path.name) as progress:
                transcript = transcriber.transcribe(samples, options, progress=progress)
        except AmanuensisError as exc:
            sys.stderr.write(f"amanuensis: error: {path}: {exc}\n")
            failures += 1
            continue
        output = render(transcript, args.format, options.subtitle_style(), name=path.stem)
        if args.output_dir:
            target = args.output_dir / f"{path.stem}.{EXTENSIONS[args.format]}"
            target.write_text(output, encoding="utf-8")
            log.info("wrote %s", target)
        else:
            if len(args.files) > 1:
                sys.stdout.write(f"==> {path} <==\n")
            sys.stdout.write(output if output.endswith("\n") else output + "\n")
            sys.stdout.flush()
    return EXIT_BAD_INPUT if failures else 0


class _progress_bar:
    """A tqdm bar on stderr for audio longer than a minute; silent when stderr is not a TTY."""

    def __init__(self, total_seconds: float, name: str) -> None:
        self.bar = None
        if total_seconds >= PROGRESS_MIN_SECONDS and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=round(total_seconds, 1), desc=name, unit="s", file=sys.stderr, leave=False)

    def __enter__(self):
        return self.update if self.bar is not None else None

    def update(self, done: float, total: float) -> None:
        if self.bar is not None:
            self.bar.n = round(min(done, total), 1)
            self.bar.refresh()

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP server (see amanuensis.server)."""
    from ..server import serve_from_args

    return serve_from_args(args)


def cmd_bench(args: argparse.Namespace) -> int:
    """Dispatch to amanuensis.bench.<which>.main(rest), once the bench extra is known to be installed."""
    import importlib

    from ..bench import require_extra

    require_extra()
    module = importlib.import_module(f"amanuensis.bench.{args.which}")
    return int(module.main(list(args.rest)) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `amanuensis` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.handler(args) or 0)
    except AmanuensisError as exc:
        sys.stderr.write(f"amanuensis: error: {exc}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130

