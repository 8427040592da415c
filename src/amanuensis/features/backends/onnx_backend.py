"""The onnx backend: the front end as an ONNX graph run by ONNX Runtime on the host's execution providers.

The graph takes samples (B, 1, L) (framing-ready: no padding inside) and computes the windowed 400-point
DFT as two 20-point stages built from convolutions (dilated and strided, then grouped 1x1: kernels every
provider supports), then power, mel and log10: (B, n_mels, frames).
"""

from __future__ import annotations

import logging

import numpy as np

from .. import framing, spec
from .base import BaseBackend

log = logging.getLogger(__name__)

ACCELERATOR_PROVIDERS = {
    "cuda": "CUDAExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "vitisai": "VitisAIExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
}
PROVIDERS = {"cpu": "CPUExecutionProvider", **ACCELERATOR_PROVIDERS}
PROVIDER_OPTIONS = {"CUDAExecutionProvider": {"use_tf32": "0"}}  # TF32 would cost ~1e-3 of accuracy
DEFAULT_BATCH_FRAMES = 8192
OPSET = 17


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers."""
    import onnxruntime

    return list(onnxruntime.get_available_providers())


RADIX = 20  # 400 = 20 x 20: the DFT as two 20-point stages (Cooley-Tukey) instead of 400-term sums
HALF_BINS = (spec.N_BINS + RADIX - 1) // RADIX + 1  # k2 in 0..10 covers every bin k = k1 + 20 k2 <= 200


def _stage_weights(n_mels: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Stage 1 kernels per n2, stage 2 re/im kernels (grouped by k1) and the mel matrix in stage-2 order.

    X[k] = sum_n2 exp(-2 pi i n2 k / 400) A(n2, k mod 20), A(n2, k1) = sum_n1 w x[20 n1 + n2] exp(-2 pi i n1 k1 / 20).
    Each output sums 20 + 40 terms rather than 400, which keeps float32 rounding at about half.
    """
    window = spec.hann_window()
    n1 = np.arange(RADIX)
    angle1 = 2.0 * np.pi * np.outer(np.arange(RADIX), n1) / RADIX  # [k1, n1]
    stage1 = []
    for n2 in range(RADIX):
        kernel = np.empty((2 * RADIX, 1, RADIX))
        kernel[0::2, 0, :] = np.cos(angle1) * window[RADIX * n1 + n2]
        kernel[1::2, 0, :] = -np.sin(angle1) * window[RADIX * n1 + n2]
        stage1.append(kernel.astype(np.float32))
    real = np.zeros((RADIX * HALF_BINS, 2 * RADIX, 1))
    imag = np.zeros_like(real)
    mel = np.zeros((n_mels, RADIX * HALF_BINS))
    filters = spec.mel_filters(n_mels)
    for k1 in range(RADIX):
        for k2 in range(HALF_BINS):
            k, row = k1 + RADIX * k2, k1 * HALF_BINS + k2
            theta = 2.0 * np.pi * np.arange(RADIX) * k / spec.N_FFT
            c, d = np.cos(theta), -np.sin(theta)
            real[row, 0::2, 0], real[row, 1::2, 0] = c, -d
            imag[row, 0::2, 0], imag[row, 1::2, 0] = d, c
            if k < spec.N_BINS:
                mel[:, row] = filters[:, k]
    return stage1, real.astype(np.float32), imag.astype(np.float32), mel.astype(np.float32)


def build_model(n_mels: int) -> bytes:
    """Serialised ONNX model: samples (B, 1, L) -> log10 mel (B, n_mels, (L - 400) // 160 + 1)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    stage1, real, imag, mel = _stage_weights(n_mels)
    inits = [numpy_helper.from_array(k, f"stage1_{n2}") for n2, k in enumerate(stage1)]
    inits += [
        numpy_helper.from_array(real, "stage2_real"),
        numpy_helper.from_array(imag, "stage2_imag"),
        numpy_helper.from_array(mel, "mel_filters"),
        numpy_helper.from_array(np.array(spec.LOG_FLOOR, dtype=np.float32), "floor"),
        numpy_helper.from_array(np.array(1.0 / np.log(10.0), dtype=np.float32), "inv_ln10"),
        numpy_helper.from_array(np.array([0, RADIX, RADIX, 2, -1], dtype=np.int64), "split_shape"),
        numpy_helper.from_array(np.array([0, 2 * RADIX * RADIX, -1], dtype=np.int64), "merged_shape"),
        numpy_helper.from_array(np.array([2**62], dtype=np.int64), "end"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "time_axis"),
    ]
    nodes = []
    for n2 in range(RADIX):  # stage 1: a dilated, strided conv per phase n2 of the frame
        inits.append(numpy_helper.from_array(np.array([n2], dtype=np.int64), f"start_{n2}"))
        nodes.append(helper.make_node("Slice", ["samples", f"start_{n2}", "end", "time_axis"], [f"phase_{n2}"]))
        nodes.append(
            helper.make_node(
                "Conv",
                [f"phase_{n2}", f"stage1_{n2}"],
                [f"a_{n2}"],
                kernel_shape=[RADIX],
                dilations=[RADIX],
                strides=[spec.HOP_LENGTH],
            )
        )
    group = {"kernel_shape": [1], "group": RADIX}
    nodes += [
        helper.make_node("Concat", [f"a_{n2}" for n2 in range(RADIX)], ["a_n2_k1"], axis=1),
        helper.make_node("Reshape", ["a_n2_k1", "split_shape"], ["a_split"]),
        helper.make_node("Transpose", ["a_split"], ["a_k1_n2"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["a_k1_n2", "merged_shape"], ["a_grouped"]),
        helper.make_node("Conv", ["a_grouped", "stage2_real"], ["re"], **group),  # stage 2: 1x1, one group per k1
        helper.make_node("Conv", ["a_grouped", "stage2_imag"], ["im"], **group),
        helper.make_node("Mul", ["re", "re"], ["re2"]),
        helper.make_node("Mul", ["im", "im"], ["im2"]),
        helper.make_node("Add", ["re2", "im2"], ["power"]),
        helper.make_node("MatMul", ["mel_filters", "power"], ["mel"]),
        helper.make_node("Max", ["mel", "floor"], ["mel_floor"]),
        helper.make_node("Log", ["mel_floor"], ["ln_mel"]),
        helper.make_node("Mul", ["ln_mel", "inv_ln10"], ["log10_mel"]),
    ]
    graph = helper.make_graph(
        nodes,
        f"whisper_log_mel_{n_mels}",
        [helper.make_tensor_value_info("samples", TensorProto.FLOAT, ["batch", 1, "samples"])],
        [helper.make_tensor_value_info("log10_mel", TensorProto.FLOAT, ["batch", n_mels, "frames"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="amanuensis")
    model.ir_version = min(model.ir_version, 8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


class OnnxBackend(BaseBackend):
    """ONNX Runtime on one execution provider (`device`: cpu, cuda, rocm, openvino, vitisai, coreml, dml)."""

    name = "onnx"

    def __init__(self, device: str = "cpu", batch_frames: int | None = None) -> None:
        import onnxruntime

        provider = PROVIDERS.get(device.lower())
        if provider is None:
            raise ValueError(f"unknown onnx device {device!r} (known: {', '.join(PROVIDERS)})")
        if provider not in available_providers():
            raise RuntimeError(f"onnxruntime has no {provider} on this host")
        self.device = device.lower()
        self.batch_frames = batch_frames
        self._ort = onnxruntime
        self._provider = provider
        self._sessions: dict[int, object] = {}
        self._session(80)

    def _session(self, n_mels: int):
        if n_mels not in self._sessions:
            options = self._ort.SessionOptions()
            options.log_severity_level = 3
            providers = [(self._provider, PROVIDER_OPTIONS.get(self._provider, {}))]
            self._sessions[n_mels] = self._ort.InferenceSession(build_model(n_mels), options, providers=providers)
        return self._sessions[n_mels]

    def _run(self, segments: np.ndarray, n_mels: int) -> np.ndarray:
        return self._session(n_mels).run(["log10_mel"], {"samples": segments[:, None, :]})[0]

    def log10_mel(self, audio: np.ndarray, n_mels: int) -> np.ndarray:
        """Un-normalised float32 log10 mel, `batch_frames` frames per session run."""
        total = spec.n_frames(len(audio))
        out = np.empty((n_mels, total), dtype=np.float32)
        for start, stop in framing.ranges(total, self.batch_frames or DEFAULT_BATCH_FRAMES):
            segment = np.ascontiguousarray(framing.segment(audio, start, stop))[None, :]
            out[:, start:stop] = self._run(segment, n_mels)[0]
        return out

    def log10_mel_batch(self, audio_batch: list[np.ndarray], n_mels: int) -> list[np.ndarray]:
        """Equal-length arrays (whole 30 s windows) run as one batch."""
        lengths = {len(a) for a in audio_batch}
        total = spec.n_frames(len(audio_batch[0])) if audio_batch else 0
        limit = self.batch_frames or DEFAULT_BATCH_FRAMES
        if len(audio_batch) < 2 or len(lengths) != 1 or total == 0 or total > limit:
            return super().log10_mel_batch(audio_batch, n_mels)
        segments = np.stack([framing.segment(a, 0, total) for a in audio_batch])
        return list(self._run(segments, n_mels))
