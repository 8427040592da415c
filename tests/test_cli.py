"""The console script: transcripts on stdout or in files, one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from amanuensis.cli import main
from amanuensis.evaluation import normalize

from .conftest import DATA, JFK, MULTILINGUAL


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "amanuensis.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_one_file_goes_to_stdout(references):
    result = run_cli("transcribe", str(JFK))
    assert result.returncode == 0, result.stderr
    assert normalize(result.stdout) == normalize(references["whisper/jfk.flac"])


def test_output_dir_and_formats(tmp_path, capsys):
    second = DATA / "faster-whisper" / "stereo_diarization_left.flac"
    code = main(["transcribe", str(JFK), str(second), "--format", "srt", "--output-dir", str(tmp_path),
                 "--beam-size", "1"])
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jfk.srt", "stereo_diarization_left.srt"]
    # the first cue starts with the first word's speech (about 0.3 s in), not at 0.0 before it
    assert (tmp_path / "jfk.srt").read_text().startswith("1\n00:00:00,")
    assert main(["transcribe", str(JFK), "--format", "verbose_json", "--word-timestamps"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["words"] and 0.0 < data["segments"][0]["start"] < 1.0
    assert data["segments"][0]["start"] == data["words"][0]["start"]


def _write(name: str, data: bytes):
    def make(directory):
        (directory / name).write_bytes(data)
        return directory / name

    return make


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (_write("empty.wav", b""), "empty"),
        (_write("junk.mp3", b"hello"), "not a readable audio"),
        (_write("cut.mp3", MULTILINGUAL.read_bytes()[:30000]), "truncated"),
        (lambda d: d / "missing.flac", "no such file"),
    ],
)
def test_bad_input_is_exit_2_and_one_line(tmp_path, setup, message):
    path = setup(tmp_path)
    result = run_cli("transcribe", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("amanuensis: error:")


@pytest.mark.parametrize(
    "args",
    [
        ["transcribe", str(JFK), "--format", "docx"],
        ["transcribe", str(JFK), "--beam-size", "0"],
        ["transcribe", str(JFK), "--model", "no-such-model"],
        ["transcribe", str(JFK), "--task", "translate"],
        ["transcribe"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_are_exit_2_and_one_line(args, capsys):
    with pytest.raises(SystemExit) as info:
        sys.exit(main(args))
    assert info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_models_lists_the_embedded_default(capsys):
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "tiny.en" and listed[0]["source"] == "embedded"


def write_wav(path, samples) -> None:
    """Write float samples as 16 kHz mono 16-bit PCM."""
    import wave

    import numpy as np

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def test_progress_bar_on_a_terminal_only(tmp_path):
    """A file over a minute shows a tqdm bar when stderr is a TTY, and nothing when it is not."""
    import os
    import pty

    import numpy as np

    from amanuensis.audio import decode_audio

    long_file = tmp_path / "long.wav"  # 71 s: over the one-minute threshold
    write_wav(long_file, np.concatenate([decode_audio(MULTILINGUAL), decode_audio(JFK)]))
    args = [sys.executable, "-m", "amanuensis.cli", "transcribe", str(long_file), "--beam-size", "1"]
    import fcntl
    import struct
    import termios

    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a real terminal's size
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=secondary) as proc:
        os.close(secondary)
        chunks = []
        while True:
            try:
                data = os.read(primary, 4096)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=300)
    os.close(primary)
    shown = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "long.wav" in shown and "%" in shown
    quiet = run_cli("transcribe", str(long_file), "--beam-size", "1")
    assert quiet.returncode == 0 and quiet.stderr.strip() == ""
