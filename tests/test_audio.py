"""Audio decoding: every dev clip, every container, and clear errors on junk."""

from __future__ import annotations

import io
import tracemalloc
import wave

import av
import numpy as np
import pytest

from amanuensis.audio import SAMPLE_RATE, _SampleBuffer, decode_audio
from amanuensis.errors import AudioError

from .conftest import DATA, JFK, MULTILINGUAL, STEREO


def test_every_dev_clip_decodes(references):
    for relative in references:
        samples = decode_audio(DATA / relative)
        assert samples.dtype == np.float32 and samples.ndim == 1
        assert 0.5 < len(samples) / SAMPLE_RATE < 120, relative
        assert np.isfinite(samples).all() and np.abs(samples).max() <= 1.5


def test_resamples_44k_stereo_to_16k_mono():
    samples = decode_audio(JFK)
    assert abs(len(samples) / SAMPLE_RATE - 11.0) < 0.05


def test_split_channels_keeps_them_apart():
    both = decode_audio(STEREO, split_channels=True)
    assert both.shape[0] == 2 and both.shape[1] == len(decode_audio(STEREO))
    # the two channels carry different speakers, so they must differ
    assert np.abs(both[0] - both[1]).mean() > 1e-3


def test_bytes_and_file_objects_decode_like_paths():
    data = JFK.read_bytes()
    from_path = decode_audio(JFK)
    assert np.array_equal(decode_audio(data), from_path)
    assert np.array_equal(decode_audio(io.BytesIO(data)), from_path)


def _encode(samples: np.ndarray, container: str, codec: str, rate: int, video: bool = False) -> bytes:
    """Encode mono float samples with PyAV into an in-memory container (optionally with a video track)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as out:
        if video:
            vstream = out.add_stream("mpeg4" if container == "mp4" else "libvpx", rate=10)
            vstream.width, vstream.height, vstream.pix_fmt = 64, 48, "yuv420p"
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate)
        source = av.AudioFrame.from_ndarray(samples[None, :].astype(np.float32), format="fltp", layout="mono")
        source.sample_rate = SAMPLE_RATE
        if video:
            for index in range(int(len(samples) / SAMPLE_RATE * 10)):
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index % 255, np.uint8), format="rgb24")
                for packet in vstream.encode(frame):
                    out.mux(packet)
        for frame in resampler.resample(source) + resampler.resample(None):
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
        if video:
            for packet in vstream.encode(None):
                out.mux(packet)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("container", "codec", "rate", "video"),
    [
        ("ogg", "libopus", 48000, False),
        ("ipod", "aac", 44100, False),  # .m4a
        ("mp3", "libmp3lame", 22050, False),
        ("flac", "flac", 8000, False),
        ("mp4", "aac", 32000, True),  # a video container
        ("webm", "libopus", 48000, False),
    ],
)
def test_containers_and_codecs(container, codec, rate, video):
    reference = decode_audio(JFK)[: 3 * SAMPLE_RATE]
    encoded = _encode(reference, container, codec, rate, video)
    decoded = decode_audio(encoded)
    assert abs(len(decoded) - len(reference)) < 0.1 * SAMPLE_RATE
    # same signal after a lossy round trip: high correlation of the envelopes
    n = min(len(decoded), len(reference))
    env_a = np.abs(reference[:n]).reshape(-1, 160)[: n // 160].mean(axis=1) if n % 160 == 0 else None
    if env_a is None:
        n -= n % 160
        env_a = np.abs(reference[:n]).reshape(-1, 160).mean(axis=1)
    env_b = np.abs(decoded[:n]).reshape(-1, 160).mean(axis=1)
    best = max(np.corrcoef(env_a[: len(env_a) - s], env_b[s:])[0, 1] for s in range(0, 40))
    assert best > 0.8


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "empty"),
        (b"this is plainly not audio, it is text " * 20, "not a readable audio"),
        (b"\x00" * 4096, "not a readable audio"),
    ],
)
def test_junk_raises_audio_error(blob, message):
    with pytest.raises(AudioError, match=message):
        decode_audio(blob)


def test_truncated_mp3_is_reported():
    data = MULTILINGUAL.read_bytes()
    with pytest.raises(AudioError, match="truncated"):
        decode_audio(data[: len(data) // 3])


def test_header_only_wav_is_zero_length():
    header = (DATA / "TTS" / "LJ001-0001.wav").read_bytes()[:44]
    with pytest.raises(AudioError):
        decode_audio(header)


def test_missing_empty_and_directory_paths(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        decode_audio(tmp_path / "missing.wav")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        decode_audio(empty)
    with pytest.raises(AudioError, match="directory"):
        decode_audio(tmp_path)


def test_arrays_pass_through_and_empty_arrays_fail():
    samples = np.zeros(16000, np.float32)
    assert decode_audio(samples) is not None
    with pytest.raises(AudioError):
        decode_audio(np.zeros(0, np.float32))


def test_a_long_file_is_held_once_while_decoding(tmp_path):
    minutes = 20
    samples = minutes * 60 * SAMPLE_RATE
    path = tmp_path / "long.wav"
    tone = (np.sin(np.arange(SAMPLE_RATE) * 2 * np.pi * 220 / SAMPLE_RATE) * 8000).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        for _ in range(minutes * 60):
            out.writeframes(tone)
    tracemalloc.start()
    try:
        decoded = decode_audio(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded.shape == (samples,) and decoded.dtype == np.float32
    assert abs(float(decoded[SAMPLE_RATE // 4]) - float(np.sin(2 * np.pi * 220 / 4)) * 8000 / 32768) < 1e-3
    one_copy = samples * 4
    assert peak < 1.15 * one_copy, f"peak {peak / 1e6:.0f} MB for {one_copy / 1e6:.0f} MB of samples"


def test_sample_buffer_grows_when_the_header_says_too_little():
    buffer = _SampleBuffer(expected=10)
    pieces = [np.full((2, n), n, dtype=np.float32) for n in (7, 13, 1, 40, 3)]
    for piece in pieces:
        buffer.append(piece)
    assert np.array_equal(buffer.samples(), np.concatenate(pieces, axis=1))
