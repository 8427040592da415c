"""Constants every layer shares: Whisper's audio rate, mel hop and window length."""

SAMPLE_RATE = 16000
"""Samples per second of every waveform inside Amanuensis (16 kHz mono float32)."""
HOP_LENGTH = 160
"""Samples per log-mel frame (10 ms)."""
N_FFT = 400
"""STFT window length in samples (25 ms)."""
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH
"""Log-mel frames per second of audio."""
CHUNK_SECONDS = 30
"""Length of one Whisper window in seconds."""
CHUNK_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE
"""Samples in one Whisper window."""
N_FRAMES = CHUNK_SAMPLES // HOP_LENGTH
"""Log-mel frames in one Whisper window (3000)."""
