"""Backend registry: parse `name[:device][@batch_frames]` specs, build backends, detect the host's."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass

from ...errors import BackendError
from .base import Backend, BaseBackend

log = logging.getLogger(__name__)

_MODULES = {
    "cpu": ("amanuensis.features.backends.cpu", "CpuBackend"),
    "torch": ("amanuensis.features.backends.torch_backend", "TorchBackend"),
    "onnx": ("amanuensis.features.backends.onnx_backend", "OnnxBackend"),
    "reference": ("amanuensis.features.backends.reference", "ReferenceBackend"),
}
NAMES = tuple(_MODULES)

__all__ = ["NAMES", "Backend", "BackendSpec", "BaseBackend", "auto_specs", "create", "parse_specs"]


@dataclass(frozen=True)
class BackendSpec:
    """One entry of a chain: backend name, device (None: the backend's default), frames per batch."""

    name: str
    device: str | None = None
    batch_frames: int | None = None

    @classmethod
    def parse(cls, text: str) -> BackendSpec:
        """Parse `name[:device][@batch_frames]`, e.g. `torch:cuda@1`; ValueError if malformed."""
        text = text.strip()
        body, _, frames = text.partition("@")
        name, _, device = body.partition(":")
        name = name.strip().lower()
        if name not in _MODULES:
            raise ValueError(f"unknown front-end backend {name!r} (known: {', '.join(NAMES)})")
        batch = None
        if frames:
            try:
                batch = int(frames)
            except ValueError:
                raise ValueError(f"batch_frames must be an integer in {text!r}") from None
            if batch < 1:
                raise ValueError(f"batch_frames must be at least 1 in {text!r}")
        return cls(name, device.strip() or None, batch)

    def __str__(self) -> str:
        return (
            self.name
            + (f":{self.device}" if self.device else "")
            + (f"@{self.batch_frames}" if self.batch_frames else "")
        )


def parse_specs(text: str) -> list[BackendSpec]:
    """Parse a comma-separated chain such as `torch:cuda,cpu,reference`."""
    specs = [BackendSpec.parse(part) for part in text.split(",") if part.strip()]
    if not specs:
        raise ValueError("the front-end chain is empty")
    return specs


def create(spec: BackendSpec) -> Backend:
    """Build the backend `spec` names; BackendError if its library or device is not usable."""
    module_name, class_name = _MODULES[spec.name]
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
        kwargs = {"batch_frames": spec.batch_frames}
        if spec.device:
            kwargs["device"] = spec.device
        return cls(**kwargs)
    except BackendError:
        raise
    except Exception as exc:  # ImportError, a missing device, a bad option: all mean "not here"
        raise BackendError(f"front-end backend {spec} is not available: {exc}") from exc


def _may_have_accelerator() -> bool:
    """Cheap check before importing torch: a GPU device node, or macOS (Metal)."""
    if sys.platform == "darwin":
        return True
    return any(os.path.exists(node) for node in ("/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd", "/dev/dri"))


def _torch_devices() -> list[str]:
    if importlib.util.find_spec("torch") is None or not _may_have_accelerator():
        return []
    try:
        import torch
    except Exception:  # a broken torch install must not stop the server
        return []
    devices = []
    if torch.cuda.is_available():  # CUDA and ROCm builds both answer here
        devices.append("cuda")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        devices.append("xpu")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def _onnx_accelerators() -> list[str]:
    from .onnx_backend import ACCELERATOR_PROVIDERS, available_providers

    present = available_providers()
    return [short for short, provider in ACCELERATOR_PROVIDERS.items() if provider in present]


def auto_specs() -> list[BackendSpec]:
    """The chain for this host: batched accelerator, single-frame accelerator, then cpu, then reference."""
    batched: list[BackendSpec] = []
    single: list[BackendSpec] = []
    for device in _torch_devices():
        batched.append(BackendSpec("torch", device))
        single.append(BackendSpec("torch", device, 1))
    try:
        accelerators = _onnx_accelerators()
    except Exception as exc:  # onnxruntime missing or broken: no ONNX accelerators
        log.debug("onnx providers not detected: %s", exc)
        accelerators = []
    for provider in accelerators:
        batched.append(BackendSpec("onnx", provider))
        single.append(BackendSpec("onnx", provider, 1))
    return batched + single + [BackendSpec("cpu"), BackendSpec("reference")]
