"""The run's manifest: one JSON line per finished file (done or failed), the last line per path wins.

A line is appended only after that file's outputs are on disk, so a killed run never leaves a `done`
entry without its files; a line cut short by a kill is ignored (and the file repaired) on the next load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..options import TranscribeOptions

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
DONE = "done"
FAILED = "failed"
_HASH_BLOCK = 1 << 20


@dataclass
class ManifestEntry:
    """What the manifest records about one input file."""

    path: str
    size: int
    sha256: str
    options: str
    status: str
    duration: float | None = None
    error: str | None = None
    language: str | None = None
    seconds: float | None = None
    worker: str | None = None
    node: str | None = None
    outputs: list[str] = field(default_factory=list)
    attempts: int = 1
    finished: float = field(default_factory=time.time)

    def to_json(self) -> str:
        """One manifest line (no newline)."""
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> ManifestEntry:
        """Parse one manifest line (unknown keys are ignored, so older manifests still load)."""
        data = json.loads(line)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def options_digest(options: TranscribeOptions, model: str, formats: Iterable[str]) -> str:
    """sha256 over every option (the declared ones and the decoder's tuning), the model name and the
    formats (canonical JSON)."""
    payload = {"options": options.to_dict(), "decoding": dataclasses.asdict(options.decoding), "model": model,
               "formats": sorted(set(formats))}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class Manifest:
    """The manifest file of one output directory: read once, then appended to by the driver only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, ManifestEntry] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                entry = ManifestEntry.from_json(raw.decode("utf-8"))
            except (ValueError, TypeError, UnicodeDecodeError):
                log.warning("manifest %s line %d is unreadable (cut short by a kill?): ignored", self.path, number)
                continue
            self.entries[entry.path] = entry
        if data and not data.endswith(b"\n"):
            with open(self.path, "ab") as handle:  # close a torn last line so the next one starts clean
                handle.write(b"\n")

    def finished(self, path: str, size: int, sha256: str, digest: str, outdir: Path) -> ManifestEntry | None:
        """The `done` entry for this exact file and options, if its outputs are all still on disk."""
        entry = self.entries.get(path)
        if entry is None or entry.status != DONE:
            return None
        if (entry.size, entry.sha256, entry.options) != (size, sha256, digest):
            return None
        if not entry.outputs or not all((outdir / output).is_file() for output in entry.outputs):
            return None
        return entry

    def append(self, entry: ManifestEntry) -> None:
        """Write one line and make it durable before returning."""
        line = (entry.to_json() + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.entries[entry.path] = entry
