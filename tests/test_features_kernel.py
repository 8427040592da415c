"""The compiled kernel: every instruction-set variant and precision agrees; bad arguments are refused."""

from __future__ import annotations

import numpy as np
import pytest

from amanuensis.features import signals, spec
from amanuensis.features.backends.cpu import CpuBackend, SparseMel, kernel_available

pytestmark = pytest.mark.skipif(not kernel_available(), reason="the compiled kernel is not built")


@pytest.fixture()
def kernel():
    from amanuensis.features import _melkernel

    chosen = _melkernel.variant()
    yield _melkernel
    _melkernel.variant(chosen)


def _variants(kernel) -> list[str]:
    found = []
    for name in ("baseline", "avx2", "avx512"):
        try:
            kernel.variant(name)
            found.append(name)
        except ValueError:
            pass
    return found


@pytest.mark.parametrize("n_mels", [80, 128])
def test_every_variant_and_precision_matches_the_reference(kernel, n_mels):
    audio = signals.mixed_signal(20, seed=11)
    reference = spec.reference_log_mel(audio, n_mels)
    variants = _variants(kernel)
    assert "baseline" in variants
    for variant in variants:
        kernel.variant(variant)
        for double in (False, True):
            features = CpuBackend(double_fft=double).compute([audio], n_mels)[0]
            error = float(np.abs(features - reference).max())
            assert error <= (1e-6 if double else 1e-4), (variant, double, error)


def test_max_is_returned_and_output_rows_are_written_in_place(kernel):
    audio = (0.1 * np.random.default_rng(2).standard_normal(16000)).astype(np.float32)
    mel = SparseMel(80)
    total = len(audio) // 160
    out = np.full((80, total), np.nan, dtype=np.float32)
    top = kernel.log10_mel(audio, out, total, 10, 37, mel.weights, mel.lo, mel.hi, mel.offsets, True)
    written = out[:, 10:37]
    assert np.all(np.isfinite(written)) and np.isnan(out[:, :10]).all() and np.isnan(out[:, 37:]).all()
    assert top == pytest.approx(float(written.max()))
    np.testing.assert_allclose(written, spec.reference_log10_mel(audio)[:, 10:37], atol=1e-5)


def test_bad_ranges_and_buffers_raise_value_error(kernel):
    audio = np.zeros(16000, dtype=np.float32)
    mel = SparseMel(80)
    out = np.zeros((80, 100), dtype=np.float32)
    args = (mel.weights, mel.lo, mel.hi, mel.offsets, False)
    with pytest.raises(ValueError):
        kernel.log10_mel(audio, out, 100, 0, 101, *args)
    with pytest.raises(ValueError):
        kernel.log10_mel(audio, out, 101, 0, 10, *args)
    with pytest.raises(ValueError):
        kernel.log10_mel(audio, np.zeros((80, 50), np.float32), 100, 0, 10, *args)
    with pytest.raises(ValueError):
        kernel.log10_mel(audio, out, 100, 0, 10, mel.weights, mel.lo, mel.hi[:-1], mel.offsets, False)
    with pytest.raises(ValueError):
        kernel.variant("no-such-isa")


def test_normalise_pass(kernel):
    data = np.array([-12.0, -3.0, 1.0, 0.0], dtype=np.float32)
    kernel.normalise(data, 0, 4, -7.0)
    np.testing.assert_allclose(data, (np.maximum([-12.0, -3.0, 1.0, 0.0], -7.0) + 4) / 4)


def test_threads_share_the_work_without_changing_results():
    audio = signals.mixed_signal(30, seed=4)
    one = CpuBackend(threads=1).compute([audio])[0]
    two = CpuBackend(threads=2, batch_frames=100).compute([audio])[0]
    np.testing.assert_array_equal(one, two)
