"""Local speaker activity from pyannote's segmentation-3.0 network (PyanNet), built to load its weights.

Over a 10 s chunk of audio the network says, every 16.875 ms, which of up to three local speakers are
talking (at most two at once): a "powerset" of 7 classes. Learnable sinc band-pass filters, two
convolutions, four bidirectional LSTM layers and two linear layers. Module names follow the checkpoint's
keys. torch is passed in, so that importing this module does not import it.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import numpy as np

CHUNK_SAMPLES = 160_000  # the 10 s the network was trained on
LOCAL_SPEAKERS = 3
FRAME_STEP_S = 0.016875  # receptive-field step: 270 samples
FRAME_DURATION_S = 0.0619375  # receptive field of one output frame: 991 samples
N_FILTERS = 80
KERNEL = 251
MIN_LOW_HZ = 50.0
MIN_BAND_HZ = 50.0


def powerset_classes(speakers: int = LOCAL_SPEAKERS, at_once: int = 2) -> np.ndarray:
    """(classes, speakers) 0/1: class c means exactly these speakers talk; class 0 is silence."""
    groups = [group for size in range(at_once + 1) for group in combinations(range(speakers), size)]
    rows = [np.isin(np.arange(speakers), group) for group in groups]
    return np.array(rows, dtype=np.float32)


def chunk_frames(samples: int = CHUNK_SAMPLES) -> int:
    """Output frames of a chunk: the sinc convolution (stride 10) then three max-pools of 3 and two 5-tap convs."""
    frames = (samples - KERNEL) // 10 + 1
    for kernel, stride in ((3, 3), (5, 1), (3, 3), (5, 1), (3, 3)):
        frames = (frames - kernel) // stride + 1
    return frames


def build_pyannet(torch: Any) -> Any:
    """An untrained PyanNet (eval mode) whose `state_dict` keys match segmentation-3.0's."""
    nn = torch.nn
    functional = torch.nn.functional

    class SincFilters(nn.Module):
        """Band-pass filters from learnt low cut-offs and bandwidths: 40 cosine and 40 sine (quadrature)."""

        def __init__(self) -> None:
            super().__init__()
            self.low_hz_ = nn.Parameter(torch.zeros(N_FILTERS // 2, 1))
            self.band_hz_ = nn.Parameter(torch.zeros(N_FILTERS // 2, 1))
            half = KERNEL // 2
            steps = torch.linspace(0, half - 1, half)
            self.register_buffer("window_", 0.54 - 0.46 * torch.cos(2 * math.pi * steps / KERNEL))
            self.register_buffer("n_", 2 * math.pi * torch.arange(-(KERNEL - 1) / 2, 0).view(1, -1) / 16_000)

        def filters(self) -> Any:
            low = MIN_LOW_HZ + self.low_hz_.abs()
            high = torch.clamp(low + MIN_BAND_HZ + self.band_hz_.abs(), MIN_LOW_HZ, 8_000.0)
            band = (high - low)[:, 0]
            phase_low, phase_high = low @ self.n_, high @ self.n_
            cosine_left = (torch.sin(phase_high) - torch.sin(phase_low)) / (self.n_ / 2) * self.window_
            sine_left = (torch.cos(phase_low) - torch.cos(phase_high)) / (self.n_ / 2) * self.window_
            centre = (2 * band).view(-1, 1)
            cosine = torch.cat([cosine_left, centre, cosine_left.flip(1)], dim=1)
            sine = torch.cat([sine_left, torch.zeros_like(centre), -sine_left.flip(1)], dim=1)
            return (torch.cat([cosine, sine]) / (2 * band.repeat(2))[:, None]).unsqueeze(1)

    class SincConv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.filterbank = SincFilters()

        def forward(self, x: Any) -> Any:
            return functional.conv1d(x, self.filterbank.filters(), stride=10)

    class SincNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wav_norm1d = nn.InstanceNorm1d(1, affine=True)
            self.conv1d = nn.ModuleList([SincConv(), nn.Conv1d(N_FILTERS, 60, 5), nn.Conv1d(60, 60, 5)])
            self.norm1d = nn.ModuleList([nn.InstanceNorm1d(c, affine=True) for c in (N_FILTERS, 60, 60)])

        def forward(self, waveforms: Any) -> Any:
            out = self.wav_norm1d(waveforms)
            for index, (conv, norm) in enumerate(zip(self.conv1d, self.norm1d)):
                out = conv(out)
                if index == 0:
                    out = out.abs()
                out = functional.leaky_relu(norm(functional.max_pool1d(out, 3, 3)))
            return out

    class PyanNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sincnet = SincNet()
            self.lstm = nn.LSTM(60, 128, num_layers=4, bidirectional=True, batch_first=True)
            self.linear = nn.ModuleList([nn.Linear(256, 128), nn.Linear(128, 128)])
            self.classifier = nn.Linear(128, len(powerset_classes()))

        def forward(self, waveforms: Any) -> Any:
            """(batch, 1, samples) → log-probabilities of the powerset classes (batch, frames, 7)."""
            out, _ = self.lstm(self.sincnet(waveforms).transpose(1, 2))
            for linear in self.linear:
                out = functional.leaky_relu(linear(out))
            return functional.log_softmax(self.classifier(out), dim=-1)

    return PyanNet().eval()
