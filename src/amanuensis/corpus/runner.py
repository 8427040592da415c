"""The driver of a corpus run: plan against the manifest, run the rest, write outputs and manifest lines."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..formats import render
from ..pipeline import TranscribeOptions
from .inputs import CorpusFile, declared_seconds
from .manifest import DONE, FAILED, MANIFEST_NAME, Manifest, ManifestEntry, file_sha256
from .progress import CorpusProgress
from .work import FileResult

log = logging.getLogger(__name__)


class Backend(Protocol):
    """Runs files somewhere and reports each result in the caller's thread."""

    def describe(self) -> str: ...

    def run(self, paths: Sequence[str], options: TranscribeOptions, on_result) -> None: ...

    def close(self) -> None: ...


@dataclass
class PlannedFile:
    """An input with what identifies its bytes."""

    file: CorpusFile
    size: int
    sha256: str
    declared_seconds: float


@dataclass
class RunSummary:
    """How a run went."""

    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: list[str] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    manifest: Path | None = None

    @property
    def ok(self) -> bool:
        """True when every file has its transcript."""
        return not self.failed

    def line(self) -> str:
        """The one-line summary printed at the end of a run."""
        rate = self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0
        text = (f"{self.total} files: {self.done} transcribed, {self.skipped} already done, "
                f"{len(self.failed)} failed; {self.audio_seconds / 3600:.3f} h audio in {self.wall_seconds:.1f} s "
                f"({rate:.1f} audio hours per hour)")
        if self.failed:
            text += f"; the failures are the 'failed' lines of {self.manifest}"
        return text


def write_atomically(target: Path, text: str) -> None:
    """Write `text` to `target` through a temporary file in the same folder and a rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class CorpusRun:
    """One `amanuensis batch` run into `outdir`."""

    def __init__(self, files: Sequence[CorpusFile], outdir: Path, options: TranscribeOptions,
                 formats: Sequence[str], digest: str, progress: bool | None = None) -> None:
        self.files = list(files)
        self.outdir = outdir
        self.options = options
        self.formats = list(formats)
        self.digest = digest
        self.show_progress = progress
        outdir.mkdir(parents=True, exist_ok=True)
        self.manifest = Manifest(outdir / MANIFEST_NAME)
        self.summary = RunSummary(total=len(self.files), manifest=self.manifest.path)
        self._planned: dict[str, PlannedFile] = {}
        self._attempts: dict[str, int] = {}

    def plan(self) -> list[PlannedFile]:
        """The files still to do: not done before with the same bytes and options (missing ones fail now)."""
        todo = []
        for file in self.files:
            key = str(file.path)
            try:
                size, sha256 = file.path.stat().st_size, file_sha256(file.path)
            except OSError as exc:
                self._record_failure(key, 0, "", f"cannot read {file.path}: {exc.strerror or exc}")
                continue
            previous = self.manifest.entries.get(key)
            if self.manifest.finished(key, size, sha256, self.digest, self.outdir):
                self.summary.skipped += 1
                continue
            same = previous is not None and (previous.sha256, previous.options) == (sha256, self.digest)
            self._attempts[key] = previous.attempts + 1 if same else 1
            planned = PlannedFile(file, size, sha256, declared_seconds(file.path))
            self._planned[key] = planned
            todo.append(planned)
        return todo

    def execute(self, backend: Backend) -> RunSummary:
        """Plan, run what is left on `backend`, and return the summary."""
        started = time.perf_counter()
        todo = self.plan()
        log.info("batch: %d files, %d to do, on %s", len(self.files), len(todo), backend.describe())
        self._progress = CorpusProgress(sum(p.declared_seconds for p in todo), len(todo), self.show_progress)
        try:
            if todo:
                backend.run([str(p.file.path) for p in todo], self.options, self._on_result)
        finally:
            self._progress.close()
            self.summary.wall_seconds = time.perf_counter() - started
        return self.summary

    def _on_result(self, result: FileResult) -> None:
        planned = self._planned[result.path]
        if result.transcript is not None:
            outputs = planned.file.outputs(self.formats)
            try:
                style = self.options.subtitle_style()
                for fmt, output in zip(self.formats, outputs):
                    text = render(result.transcript, fmt, style, name=planned.file.stem.name)
                    write_atomically(self.outdir / output, text)
            except OSError as exc:
                result.transcript, result.error = None, f"cannot write the outputs: {exc}"
            else:
                self.manifest.append(self._entry(planned, result, DONE, [str(o) for o in outputs]))
                self.summary.done += 1
                self.summary.audio_seconds += result.duration or 0.0
                self._progress.advance(planned.declared_seconds, failed=False)
                return
        self.manifest.append(self._entry(planned, result, FAILED, []))
        self.summary.failed.append(result.path)
        log.warning("failed: %s: %s", result.path, result.error)
        self._progress.advance(planned.declared_seconds, failed=True)

    def _entry(self, planned: PlannedFile, result: FileResult, status: str, outputs: list[str]) -> ManifestEntry:
        transcript = result.transcript
        return ManifestEntry(
            path=result.path, size=planned.size, sha256=planned.sha256, options=self.digest, status=status,
            duration=round(result.duration, 3) if result.duration is not None else None,
            error=result.error, language=transcript.language if transcript else None,
            seconds=round(result.seconds, 3), worker=result.worker, node=result.node, outputs=outputs,
            attempts=self._attempts.get(result.path, 1),
        )

    def _record_failure(self, path: str, size: int, sha256: str, error: str) -> None:
        self.manifest.append(ManifestEntry(path=path, size=size, sha256=sha256, options=self.digest,
                                           status=FAILED, error=error))
        self.summary.failed.append(path)
