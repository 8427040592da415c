"""Shared fixtures: the test audio in ../shared/data and one loaded tiny.en Transcriber."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("AMANUENSIS_TEST_DATA", ROOT.parent / "shared" / "data")) / "speech"
JFK = DATA / "whisper" / "jfk.flac"
MULTILINGUAL = DATA / "faster-whisper" / "multilingual.mp3"
STEREO = DATA / "faster-whisper" / "stereo_diarization.wav"


def load_references() -> dict[str, str]:
    """relative path -> reference transcript, from transcripts.tsv."""
    refs = {}
    with open(DATA / "transcripts.tsv", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                path, text = line.rstrip("\n").split("\t", 1)
                refs[path] = text
    return refs


@pytest.fixture(scope="session")
def references() -> dict[str, str]:
    if not (DATA / "transcripts.tsv").is_file():
        pytest.fail(f"test audio not found at {DATA}: put ../shared beside the checkout")
    return load_references()


@pytest.fixture(scope="session")
def transcriber():
    from amanuensis.pipeline import Transcriber

    return Transcriber("tiny.en")


@pytest.fixture()
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """A private AMANUENSIS_CACHE_DIR for tests that assemble or list models."""
    monkeypatch.setenv("AMANUENSIS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"
