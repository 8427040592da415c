"""`amanuensis batch INPUT… -o OUTDIR`: a corpus run that resumes, on local workers or with --ray."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..formats import EXTENSIONS, FORMATS
from ..options import CLI
from .flags import add_model_flags, add_option_flags, options_from_args, speakers_for_formats

log = logging.getLogger(__name__)

EXIT_SOME_FAILED = 1
EXIT_BAD_INPUT = 2
LOCAL_RAY = ""
"""The --ray value when no address is given: a Ray instance started on the spot for this run."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _formats(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown format {', '.join(unknown) or text!r}: use {', '.join(FORMATS)}")
    return names


def add_batch_arguments(commands: argparse._SubParsersAction) -> None:
    """Declare `amanuensis batch` and its flags."""
    batch = commands.add_parser("batch", help="transcribe a corpus into a folder, resumably (local or Ray)",
                                description="Transcribe files, folders (walked recursively) and list files "
                                "into OUTDIR with a manifest; re-running skips what is done.")
    batch.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                       help="audio/video file, folder, or .txt/.lst file listing paths (one a line)")
    batch.add_argument("-o", "--output-dir", type=Path, required=True, metavar="OUTDIR")
    batch.add_argument("--format", dest="formats", type=_formats, action="append", metavar="FORMAT",
                       help=f"output format(s), repeatable or comma-separated: {', '.join(FORMATS)} (default text)")
    add_model_flags(batch)
    batch.add_argument("--workers", type=_positive_int, default=None,
                       help="local models transcribing files side by side (default: from the cores)")
    batch.add_argument("--threads", type=_positive_int, default=None,
                       help="CTranslate2 threads per model (default: from the cores)")
    batch.add_argument("--ray", nargs="?", const=LOCAL_RAY, default=None, metavar="ADDRESS",
                       help="run on Ray: auto, ray://host:10001, host:6379, or none for a local Ray started now")
    batch.add_argument("--replicas", type=_positive_int, default=None,
                       help="with --ray: model actors (default: the cluster's CPUs / --threads)")
    batch.add_argument("--gpus-per-replica", type=float, default=None,
                       help="with --ray: GPUs per model actor (default 1 when the cluster has GPUs, else 0)")
    batch.add_argument("--no-progress", dest="progress", action="store_false",
                       help="no progress bar (it is shown only when stderr is a terminal anyway)")
    add_option_flags(batch, CLI)
    batch.set_defaults(handler=cmd_batch, progress=None)


def _chosen_formats(args: argparse.Namespace) -> list[str]:
    formats = list(dict.fromkeys(name for group in (args.formats or [["text"]]) for name in group))
    by_extension: dict[str, str] = {}
    for fmt in formats:
        other = by_extension.setdefault(EXTENSIONS[fmt], fmt)
        if other != fmt:
            raise ValueError(f"formats {other} and {fmt} both write .{EXTENSIONS[fmt]} files: choose one")
    return formats


def _fail(message: str) -> int:
    sys.stderr.write(f"amanuensis batch: error: {message}\n")
    return EXIT_BAD_INPUT


def _backend(args: argparse.Namespace, spec_model: str | None):
    from ..corpus.local import LocalBackend, plan_parallelism
    from ..corpus.work import WorkerSpec

    if args.ray is not None:
        from ..corpus.ray_backend import RayBackend
        from ..ray_support import RayUnavailableError

        try:
            spec = WorkerSpec(spec_model, args.device, args.compute_type, args.threads or 1)
            return RayBackend(spec, address=args.ray or None, replicas=args.replicas,
                              gpus_per_replica=args.gpus_per_replica)
        except RayUnavailableError as exc:
            raise ValueError(str(exc)) from exc
    workers, threads = plan_parallelism(workers=args.workers, threads=args.threads)
    return LocalBackend(WorkerSpec(spec_model, args.device, args.compute_type, threads), workers)


def cmd_batch(args: argparse.Namespace) -> int:
    """Run the corpus; exit 0 when every file succeeded, 1 when some failed, 2 on bad input."""
    from ..corpus import CorpusRun, InputError, collect_inputs, options_digest
    from ..errors import AmanuensisError
    from ..models import resolve_model

    if args.ray is None and (args.replicas or args.gpus_per_replica is not None):
        return _fail("--replicas and --gpus-per-replica need --ray")
    if args.ray is not None and args.workers:
        return _fail("--workers is for local runs: with --ray, use --replicas")
    try:
        formats = _chosen_formats(args)
        options = speakers_for_formats(options_from_args(args, CLI), formats)
        model = resolve_model(args.model)
        options.validate(model)
        files = collect_inputs(args.inputs)
    except (ValueError, InputError, AmanuensisError) as exc:
        return _fail(str(exc))
    digest = options_digest(options, model.name, formats)
    run = CorpusRun(files, args.output_dir, options, formats, digest, progress=args.progress)
    try:
        backend = _backend(args, model.path if model.source == "local" else model.name)
    except (ValueError, AmanuensisError) as exc:
        return _fail(str(exc))
    try:
        summary = run.execute(backend)
    except KeyboardInterrupt:
        sys.stderr.write(f"amanuensis batch: interrupted; run the same command again to resume "
                         f"({run.summary.done} files finished this time)\n")
        return 130
    finally:
        backend.close()
    sys.stderr.write(f"amanuensis batch: {summary.line()}\n")
    return 0 if summary.ok else EXIT_SOME_FAILED
