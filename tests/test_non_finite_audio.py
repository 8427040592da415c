"""Audio holding NaN or ±Inf samples is refused, naming the file: Whisper would otherwise make up text
("you") or return nothing, and say nothing was wrong."""

from __future__ import annotations

import struct
from pathlib import Path

import httpx
import numpy as np
import pytest

from amanuensis.audio import NonFiniteAudioError, decode_audio
from amanuensis.cli import main
from amanuensis.errors import AudioError

from .conftest import JFK
from .server_fixtures import run_server


def float_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    """A mono 32-bit float WAV (format 3) holding exactly `samples`."""
    data = samples.astype("<f4").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 3, 1, rate, rate * 4, 4, 32) + b"data" + struct.pack("<I", len(data))
    path.write_bytes(header + data)
    return path


def speech_with(bad: float) -> np.ndarray:
    samples = decode_audio(JFK)[: 3 * 16000].copy()
    samples[16000 + 123 : 16000 + 133] = bad
    return samples


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_files_and_arrays_with_non_finite_samples_are_refused(tmp_path, bad):
    path = float_wav(tmp_path / "broken.wav", speech_with(bad))
    with pytest.raises(NonFiniteAudioError) as refused:
        decode_audio(path)
    assert isinstance(refused.value, AudioError)
    assert "10 non-finite samples" in str(refused.value) and "1.01 s" in str(refused.value)
    with pytest.raises(NonFiniteAudioError):
        decode_audio(speech_with(bad))


def test_finite_float_audio_still_decodes(tmp_path):
    samples = speech_with(0.25)
    assert np.array_equal(decode_audio(float_wav(tmp_path / "fine.wav", samples)), samples)


def test_the_command_line_names_the_file_and_exits_2(tmp_path, capsys):
    path = float_wav(tmp_path / "broken.wav", speech_with(np.inf))
    assert main(["transcribe", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and "non-finite" in err


@pytest.mark.slow
def test_the_server_answers_400_naming_the_file(tmp_path):
    path = float_wav(tmp_path / "broken.wav", speech_with(np.nan))
    with run_server(tmp_path) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        for route in ("/transcribe", "/v1/audio/transcriptions"):
            response = http.post(route, files={"file": ("broken.wav", path.read_bytes(), "audio/wav")})
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["param"] == "file" and error["code"] == "invalid_audio" and "non-finite" in error["message"]
        assert server.process.poll() is None and server.uploads_left() == []
