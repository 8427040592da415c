"""Non-speech test signals made with numpy: silence, room tone, coloured noise, synthesized music.

Every signal is 16 kHz mono float32 and reproducible from its seed. Levels are RMS in dBFS. The music
is additive synthesis (harmonics under an envelope), so it has the pitch, onsets and rhythm that make a
speech model hear words in music without being speech.
"""

from __future__ import annotations

import numpy as np

from ..constants import SAMPLE_RATE

COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
"""Noise colour -> exponent of the power spectrum's 1/f slope."""


def at_level(signal: np.ndarray, dbfs: float) -> np.ndarray:
    """`signal` scaled to an RMS of `dbfs` (clipped to [-1, 1])."""
    rms = float(np.sqrt(np.mean(signal.astype(np.float64) ** 2))) or 1.0
    return np.clip(signal * (10 ** (dbfs / 20) / rms), -1.0, 1.0).astype(np.float32)


def noise(colour: str, seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    """Gaussian noise with a 1/f^k power spectrum (white k=0, pink 1, brown 2)."""
    count = int(seconds * SAMPLE_RATE)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(count))
    freqs = np.fft.rfftfreq(count, 1 / SAMPLE_RATE)
    freqs[0] = freqs[1]
    spectrum *= freqs ** (-COLOURS[colour] / 2)
    spectrum[0] = 0.0
    return at_level(np.fft.irfft(spectrum, count), dbfs)


def room_tone(seconds: float, dbfs: float = -55.0, seed: int = 0) -> np.ndarray:
    """A quiet room: brown rumble, a mains hum at 50 Hz with harmonics, faint hiss."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    hum = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in (1, 2, 3))
    mix = noise("brown", seconds, -60, seed) + at_level(hum, -66) + noise("white", seconds, -70, seed + 1)
    return at_level(mix, dbfs)


def _tone(freq: float, seconds: float, harmonics: int = 6, decay: float = 3.0) -> np.ndarray:
    """A plucked note: harmonics falling off as 1/k under an attack-decay envelope."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, harmonics + 1))
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-decay * t)
    return wave * envelope


def _midi(note: int) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def chords(seconds: float, dbfs: float = -20.0, tempo: float = 90.0) -> np.ndarray:
    """A I-vi-IV-V progression in C major, one chord a bar, looped to `seconds`."""
    bar = 4 * 60 / tempo
    progression = ([60, 64, 67], [57, 60, 64], [53, 57, 60], [55, 59, 62])
    out = np.zeros(int(seconds * SAMPLE_RATE))
    step = int(bar * SAMPLE_RATE)
    for k, start in enumerate(range(0, len(out), step)):
        chord = sum(_tone(_midi(n), bar, decay=1.0) for n in progression[k % 4])
        out[start : start + step] += chord[: len(out) - start]
    return at_level(out, dbfs)


def melody_with_drums(seconds: float, dbfs: float = -20.0, tempo: float = 120.0, seed: int = 0) -> np.ndarray:
    """A pentatonic melody in eighth notes over kick, snare and hi-hat (a random walk from `seed`)."""
    rng = np.random.default_rng(seed)
    beat = 60 / tempo
    count = int(seconds * SAMPLE_RATE)
    out = np.zeros(count)
    scale = [60, 62, 64, 67, 69, 72, 74, 76]
    position = 3
    eighth = int(beat / 2 * SAMPLE_RATE)
    for k, start in enumerate(range(0, count, eighth)):
        position = int(np.clip(position + rng.integers(-2, 3), 0, len(scale) - 1))
        note = _tone(_midi(scale[position]), beat, harmonics=4, decay=5.0)
        out[start : start + len(note)] += 0.6 * note[: count - start]
        t = np.arange(eighth) / SAMPLE_RATE
        if k % 4 == 0:  # kick on beats 1 and 3: a falling sine
            drum = np.sin(2 * np.pi * (120 * t - 60 * t**2 / 0.15)) * np.exp(-t / 0.08)
        elif k % 4 == 2:  # snare on 2 and 4: a noise burst over a tone
            drum = (rng.standard_normal(eighth) * 0.7 + np.sin(2 * np.pi * 190 * t)) * np.exp(-t / 0.05)
        else:  # hi-hat: a short burst of high noise
            drum = np.diff(rng.standard_normal(eighth + 1)) * 0.3 * np.exp(-t / 0.015)
        out[start : start + eighth] += drum[: count - start]
    return at_level(out, dbfs)


def catalogue(seconds: float = 20.0) -> list[tuple[str, str, np.ndarray]]:
    """(kind, name, samples) of every generated non-speech signal."""
    signals = [("silence", "digital silence", np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)),
               ("room tone", "room tone -55 dBFS", room_tone(seconds))]
    for colour in COLOURS:
        for level in (-50, -35, -20):
            signals.append(("noise", f"{colour} noise {level} dBFS", noise(colour, seconds, level, seed=-level)))
    signals += [("music", "chords -20 dBFS", chords(seconds)),
                ("music", "melody and drums -20 dBFS", melody_with_drums(seconds)),
                ("music", "melody and drums -30 dBFS", melody_with_drums(seconds, -30.0, tempo=100.0, seed=1))]
    return signals
