"""Command-line flags generated from the declared options (amanuensis.options): one flag per option a
door exposes, checked as it is parsed (a bad value is argparse's one-line error, exit code 2)."""

from __future__ import annotations

import argparse
import base64
import dataclasses
import mimetypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import OptionsError
from ..formats import SPEAKER_FORMATS
from ..options import Option, TranscribeOptions, describe_default, exposed
from ..pipeline import COMPUTE_TYPES, DEVICES

_DEST = "option_"


def _checked(option: Option):
    def parse(text: str) -> Any:
        try:
            return option.parse(text)
        except OptionsError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = option.name  # argparse names the type in some messages
    return parse


def _checked_speaker(option: Option):
    """NAME=FILE (or NAME=data URL) → (name, data URL) as the option's one pair."""

    def parse(text: str) -> Any:
        name, sep, reference = text.partition("=")
        if sep and not reference.strip().startswith("data:"):
            path = Path(reference.strip())
            try:
                data = path.read_bytes()
            except OSError as exc:
                message = f"{option.cli_flag} {name}: cannot read {path}: {exc.strerror}"
                raise argparse.ArgumentTypeError(message) from None
            media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            text = f"{name}=data:{media};base64,{base64.b64encode(data).decode('ascii')}"
        return _checked(option)(text)

    parse.__name__ = option.name
    return parse


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """--model, --device and --compute-type: which model the command loads, and where."""
    parser.add_argument("--model", default=None, help="model name or directory (default: embedded tiny.en)")
    parser.add_argument("--device", default="auto", choices=DEVICES, help="where the model runs (default: auto)")
    parser.add_argument("--compute-type", default="auto", choices=COMPUTE_TYPES, metavar="TYPE",
                        help=f"CTranslate2 compute type: {', '.join(COMPUTE_TYPES)} (default: auto)")


def add_option_flags(parser: argparse.ArgumentParser, door: str) -> None:
    """Add a flag for every option `door` exposes (unset flags keep the declared default)."""
    group = parser.add_argument_group("transcription options")
    for option in exposed(door):
        help_text = f"{option.help} (default: {describe_default(option.default_on(door))})"
        dest = _DEST + option.name
        if option.kind == "bool":
            group.add_argument(option.cli_flag, dest=dest, default=None, action=argparse.BooleanOptionalAction,
                               help=help_text)
        elif option.kind == "speakers":
            group.add_argument(option.cli_flag, dest=dest, default=None, action="append",
                               type=_checked_speaker(option), metavar="NAME=CLIP", help=help_text)
        else:
            metavar = "|".join(option.choices) if option.choices else option.name.upper()
            group.add_argument(option.cli_flag, dest=dest, default=None, type=_checked(option), metavar=metavar,
                               help=help_text)
    if any(option.name == "vad_filter" for option in exposed(door)):
        group.add_argument("--no-vad", dest=_DEST + "vad_filter", action="store_false", help=argparse.SUPPRESS)


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The option values given on the command line, by option name."""
    values = {key.removeprefix(_DEST): value for key, value in vars(args).items()
              if key.startswith(_DEST) and value is not None}
    return {name: tuple(pair for pairs in value for pair in pairs) if isinstance(value, list) else value
            for name, value in values.items()}  # a repeated flag (--speaker) gives a list of one-pair tuples


def speakers_for_formats(options: TranscribeOptions, formats: Sequence[str]) -> TranscribeOptions:
    """`options` with diarization on when a format is about speakers (diarized_json, rttm)."""
    if any(fmt in SPEAKER_FORMATS for fmt in formats):
        return dataclasses.replace(options, diarize=True)
    return options


def options_from_args(args: argparse.Namespace, door: str) -> TranscribeOptions:
    """TranscribeOptions from the parsed flags of `door` (absent flags take the declared defaults)."""
    return TranscribeOptions.from_door(door, given_options(args))


def form_fields(args: argparse.Namespace) -> dict[str, str | list[str]]:
    """The given options as the form fields of an HTTP door (for `jobs submit`); known speakers are
    one NAME=data-URL field each."""
    fields: dict[str, str | list[str]] = {}
    for name, value in given_options(args).items():
        if name == "known_speakers":
            pairs = [f"{speaker}={reference}" for speaker, reference in value]
            fields[name] = pairs[0] if len(pairs) == 1 else pairs
        else:
            fields[name] = _as_text(value)
    return fields


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(f"{v:g}" for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
