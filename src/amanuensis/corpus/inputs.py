"""The files of a corpus run: named files, folders walked recursively, and text files listing paths."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av

from ..errors import AmanuensisError
from ..formats import EXTENSIONS

log = logging.getLogger(__name__)

MEDIA_SUFFIXES = frozenset({
    ".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".webm", ".wma", ".aif", ".aiff",
    ".amr", ".mka", ".mp4", ".m4v", ".mov", ".mkv", ".avi", ".3gp", ".caf", ".au", ".spx", ".ac3",
})
"""Suffixes picked up when walking a folder (files named directly or in a list are always taken)."""
LIST_SUFFIXES = frozenset({".txt", ".lst", ".list"})
"""A named file with one of these suffixes is read as a list of paths, one a line."""


class InputError(AmanuensisError):
    """An input named on the command line does not exist or lists nothing usable."""

    code = "invalid_input"


@dataclass(frozen=True)
class CorpusFile:
    """One input file: its resolved path and the path of its outputs below OUTDIR (without suffix)."""

    path: Path
    stem: Path

    def outputs(self, formats: Sequence[str]) -> list[Path]:
        """Output paths relative to OUTDIR, one per format."""
        return [self.stem.with_name(f"{self.stem.name}.{EXTENSIONS[fmt]}") for fmt in formats]


def _absolute(path: Path) -> Path:
    """An absolute, normalised path that keeps symbolic links (outputs mirror the tree as the user sees it)."""
    return Path(os.path.abspath(path))


def _walk(folder: Path) -> Iterable[Path]:
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in MEDIA_SUFFIXES and not name.startswith("."):
                yield Path(root) / name


def _read_list(list_file: Path) -> Iterable[tuple[Path, Path]]:
    """(file, root) per line of a list; relative lines are taken relative to the list's folder."""
    for line in list_file.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(line).expanduser()
        path = path if path.is_absolute() else list_file.parent / path
        path = _absolute(path)
        yield path, path.parent


def collect_inputs(inputs: Sequence[Path]) -> list[CorpusFile]:
    """Every input file once, in a stable order; outputs mirror the tree below the deepest common folder.

    A folder contributes its media files (by suffix) with the folder as the root of its tree; a named
    file, or a file listed in a list, has its own folder as root. Raises InputError for a missing input.
    """
    found: dict[Path, Path] = {}  # file -> root folder of its tree
    for given in inputs:
        path = Path(given).expanduser()
        if not path.exists():
            raise InputError(f"no such file or folder: {given}")
        path = _absolute(path)
        if path.is_dir():
            for file in _walk(path):
                found.setdefault(file, path)
        elif path.suffix.lower() in LIST_SUFFIXES:
            for file, root in _read_list(path):
                found.setdefault(file, root)
        else:
            found.setdefault(path, path.parent)
    if not found:
        raise InputError("the inputs hold no media files (" + ", ".join(str(p) for p in inputs) + ")")
    base = Path(os.path.commonpath([str(root) for root in found.values()]))
    files = sorted(found)
    stems = [file.relative_to(base).with_suffix("") for file in files]
    clashes = {stem for stem, count in Counter(stems).items() if count > 1}
    result = []
    for file, stem in zip(files, stems):
        # a.wav and a.mp3 side by side keep their suffix in the output name (a.wav.txt, a.mp3.txt)
        result.append(CorpusFile(file, file.relative_to(base) if stem in clashes else stem))
    return result


def declared_seconds(path: Path) -> float:
    """The duration a file's header declares (0.0 when unknown or unreadable), for the progress bar."""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if container.duration is not None:
                return container.duration / av.time_base
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, OSError):
        pass
    return 0.0
