"""Input audio of a realtime session → 16 kHz mono float32: pcm16 (24 or 16 kHz), G.711 µ-law and A-law (8 kHz).

Resampling is scipy's polyphase filter (resample_poly), run on a stream: each piece is filtered with
enough of the previous piece before it and held back enough at its end that the output equals one
resample_poly call over the whole stream (up to rounding), whatever the append sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import resample_poly

from ...constants import SAMPLE_RATE


class AudioFormatError(ValueError):
    """Bytes that cannot be audio of the session's format."""


def _ulaw_table() -> np.ndarray:
    """ITU-T G.711 µ-law: byte → 16-bit sample."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    magnitude = (((u & 0x0F) << 3) + 0x84) << exponent
    return np.where(u & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


def _alaw_table() -> np.ndarray:
    """ITU-T G.711 A-law: byte → 16-bit sample."""
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = (a & 0x0F) << 4
    magnitude = np.where(exponent == 0, mantissa + 8, (mantissa + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


ULAW = _ulaw_table()
ALAW = _alaw_table()


@dataclass(frozen=True)
class InputFormat:
    """A session's input format: OpenAI's type name and its sample rate."""

    type: str = "audio/pcm"
    rate: int = 24000

    @property
    def bytes_per_sample(self) -> int:
        """2 for pcm16, 1 for G.711."""
        return 2 if self.type == "audio/pcm" else 1

    def samples(self, data: bytes) -> np.ndarray:
        """Decode raw bytes into int16 samples at `rate` (raises AudioFormatError)."""
        if self.type == "audio/pcm":
            if len(data) % 2:
                raise AudioFormatError(f"pcm16 audio needs an even number of bytes, not {len(data)}")
            return np.frombuffer(data, dtype="<i2")
        table = ULAW if self.type == "audio/pcmu" else ALAW
        return table[np.frombuffer(data, dtype=np.uint8)]


class StreamResampler:
    """resample_poly(x, up, down) over a stream given in pieces (rates with an integer ratio)."""

    def __init__(self, rate: int, target: int = SAMPLE_RATE) -> None:
        from math import gcd

        divisor = gcd(rate, target)
        self.up, self.down = target // divisor, rate // divisor
        half = 10 * max(self.up, self.down) // self.up + 1  # resample_poly's filter half-length, input samples
        self.margin = -(-half // self.down) * self.down
        self._held = np.zeros(self.margin, dtype=np.float32)  # the stream starts after silence, as resample_poly pads

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """Resampled output for `samples`, less the last few held back until more input comes."""
        if self.up == self.down:
            return np.asarray(samples, dtype=np.float32)
        held = np.concatenate([self._held, np.asarray(samples, dtype=np.float32)])
        usable = (len(held) - self.margin) // self.down * self.down
        if usable <= self.margin:
            self._held = held
            return np.zeros(0, dtype=np.float32)
        out = resample_poly(held[: usable + self.margin], self.up, self.down)
        self._held = held[usable - self.margin :]
        return out[self.margin * self.up // self.down : usable * self.up // self.down].astype(np.float32)

    def flush(self) -> np.ndarray:
        """The held-back output, as if the stream ended here."""
        if self.up == self.down or len(self._held) <= self.margin:
            return np.zeros(0, dtype=np.float32)
        out = resample_poly(self._held, self.up, self.down)
        rest = len(self._held) - self.margin
        self._held = np.zeros(self.margin, dtype=np.float32)
        start = self.margin * self.up // self.down
        return out[start : start + -(-rest * self.up // self.down)].astype(np.float32)


class InputDecoder:
    """Bytes of one format → 16 kHz float32 samples, carrying the resampler's state between appends."""

    def __init__(self, fmt: InputFormat) -> None:
        self.format = fmt
        self.resampler = StreamResampler(fmt.rate)

    def decode(self, data: bytes) -> np.ndarray:
        """16 kHz float32 samples for `data` (some held back until the next call or flush)."""
        return self.resampler.feed(self.format.samples(data).astype(np.float32) / 32768.0)

    def flush(self) -> np.ndarray:
        """Everything held back."""
        return self.resampler.flush()
