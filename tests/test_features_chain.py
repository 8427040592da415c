"""The fallback chain: start-up skips, per-call fallback, health, re-probing, fault injection, status."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from amanuensis.errors import BackendError
from amanuensis.features.backends import BackendSpec, auto_specs, parse_specs
from amanuensis.features.backends.base import BaseBackend
from amanuensis.features.backends.reference import ReferenceBackend
from amanuensis.features.chain import FrontendChain, parse_faults

AUDIO = (0.2 * np.random.default_rng(7).standard_normal(16000 * 2 + 77)).astype(np.float32)


class Broken(BaseBackend):
    """Fails every call after `ok_calls` good ones (the probe counts as one)."""

    name = "broken"

    def __init__(self, ok_calls: int = 1, result_shape_bug: bool = False) -> None:
        self.ok_calls = ok_calls
        self.result_shape_bug = result_shape_bug

    def log10_mel(self, audio, n_mels):
        if self.ok_calls <= 0:
            raise RuntimeError("device lost")
        self.ok_calls -= 1
        out = ReferenceBackend().log10_mel(audio, n_mels).astype(np.float32)
        return out[:, :-1] if self.result_shape_bug and self.ok_calls <= 0 else out


def by_name(status: dict) -> dict:
    return {b["name"]: b for b in status["backends"]}


def test_spec_parsing():
    assert parse_specs("torch:cuda, cpu@100,reference") == [
        BackendSpec("torch", "cuda"),
        BackendSpec("cpu", None, 100),
        BackendSpec("reference"),
    ]
    assert str(BackendSpec.parse("onnx:cuda@1")) == "onnx:cuda@1"
    for bad in ["gpu", "cpu@0", "cpu@x", ""]:
        with pytest.raises(ValueError):
            parse_specs(bad)


def test_fault_parsing():
    assert parse_faults("cpu") == {"cpu": None}
    assert parse_faults("cpu:3, torch:cuda:2,onnx:cuda") == {"cpu": 3, "torch:cuda": 2, "onnx:cuda": None}


def test_auto_chain_ends_with_cpu_then_reference():
    specs = auto_specs()
    assert specs[-2:] == [BackendSpec("cpu"), BackendSpec("reference")]


def test_injected_fault_falls_back_without_losing_or_changing_the_result():
    chain = FrontendChain(["cpu", "reference"])
    clean = chain.compute(AUDIO)
    chain.inject_fault("cpu", times=2)
    first, second, third = (chain.compute(AUDIO) for _ in range(3))
    expected = ReferenceBackend().compute([AUDIO])[0]
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(second, expected)
    np.testing.assert_array_equal(third, clean)
    assert np.abs(first - clean).max() <= 1e-4
    stats = by_name(chain.status())
    assert stats["cpu"]["failures"] == 2 and stats["cpu"]["calls"] == 2 and stats["cpu"]["healthy"]
    assert stats["reference"]["calls"] == 2 and stats["reference"]["fallbacks"] == 2
    assert "injected" in stats["cpu"]["last_error"]


def test_backend_marked_unhealthy_after_n_failures_and_reprobed():
    chain = FrontendChain(["cpu", "reference"], max_failures=2, reprobe_after_s=3600)
    chain.inject_fault("cpu")
    for _ in range(4):
        assert chain.compute(AUDIO).shape == (80, len(AUDIO) // 160)
    stats = by_name(chain.status())
    assert stats["cpu"]["failures"] == 2, "an unhealthy backend is not called again until re-probed"
    assert not stats["cpu"]["healthy"] and chain.status()["active"] == "reference"
    chain.clear_faults()
    chain.compute(AUDIO)
    assert chain.status()["active"] == "reference", "not re-probed before reprobe_after_s"
    chain.reprobe_after_s = 0.0
    chain.compute(AUDIO)
    stats = by_name(chain.status())
    assert stats["cpu"]["healthy"] and stats["cpu"]["calls"] == 1 and chain.status()["active"] == "cpu"


def test_permanent_fault_also_fails_the_reprobe():
    chain = FrontendChain(["cpu", "reference"], max_failures=1, reprobe_after_s=0.0)
    chain.inject_fault("cpu")
    for _ in range(3):
        chain.compute(AUDIO)
    stats = by_name(chain.status())
    assert stats["cpu"]["calls"] == 0 and stats["cpu"]["failures"] == 1 and not stats["cpu"]["healthy"]


def test_real_exception_and_wrong_shape_count_as_failures():
    chain = FrontendChain([Broken(ok_calls=2), Broken(ok_calls=2, result_shape_bug=True), "reference"])
    expected = ReferenceBackend().compute([AUDIO])[0]
    np.testing.assert_allclose(chain.compute(AUDIO), expected, atol=1e-6)  # served by the first
    np.testing.assert_array_equal(chain.compute(AUDIO), expected)  # first fails, second's shape is wrong
    statuses = chain.status()["backends"]
    assert [s["failures"] for s in statuses] == [1, 1, 0]
    assert "device lost" in statuses[0]["last_error"] and "wanted" in statuses[1]["last_error"]
    assert statuses[2]["fallbacks"] == 1


def test_backend_failing_at_startup_is_skipped():
    chain = FrontendChain(["torch:no-such-device", Broken(ok_calls=0), "cpu"])
    statuses = chain.status()["backends"]
    assert [s["available"] for s in statuses] == [False, False, True]
    assert chain.status()["active"] == "cpu"
    assert chain.compute(AUDIO).shape == (80, len(AUDIO) // 160)


def test_every_backend_failing_raises_backend_error():
    chain = FrontendChain(["cpu", "reference"])
    chain.inject_fault("cpu")
    chain.inject_fault("reference")
    with pytest.raises(BackendError, match="every front-end backend failed"):
        chain.compute(AUDIO)
    with pytest.raises(BackendError, match="no front-end backend could start"):
        FrontendChain([Broken(ok_calls=0)])


def test_bad_input_is_a_value_error_not_a_backend_failure():
    chain = FrontendChain(["cpu"])
    with pytest.raises(ValueError):
        chain.compute(np.zeros((2, 16000), dtype=np.float32))
    with pytest.raises(ValueError):
        chain.compute(AUDIO, n_mels=64)
    assert chain.status()["backends"][0]["failures"] == 0


def test_permanent_fault_from_the_environment_fails_calls_not_start_up():
    chain = FrontendChain.from_env({"AMANUENSIS_FRONTEND": "cpu,reference", "AMANUENSIS_FRONTEND_FAULTS": "cpu"})
    assert by_name(chain.status())["cpu"]["available"]
    for _ in range(4):
        chain.compute(AUDIO)
    stats = by_name(chain.status())
    assert stats["cpu"]["failures"] == 3 and not stats["cpu"]["healthy"]
    assert stats["reference"]["calls"] == 4 and stats["reference"]["fallbacks"] == 3
    assert chain.status()["faults"] == {"cpu": None}


def test_environment_configures_chain_and_faults():
    env = {"AMANUENSIS_FRONTEND": "cpu@256,reference", "AMANUENSIS_FRONTEND_FAULTS": "cpu:1"}
    chain = FrontendChain.from_env(env)
    assert [b["name"] for b in chain.status()["backends"]] == ["cpu@256", "reference"]
    chain.compute(AUDIO)
    chain.compute(AUDIO)
    stats = by_name(chain.status())
    assert stats["cpu@256"]["failures"] == 1 and stats["cpu@256"]["calls"] == 1
    assert stats["reference"]["calls"] == 1


def test_status_is_json_and_counts_concurrent_calls():
    chain = FrontendChain(["cpu", "reference"])
    threads = [threading.Thread(target=chain.compute, args=(AUDIO,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    status = json.loads(json.dumps(chain.status()))
    assert status["active"] == "cpu"
    assert by_name(status)["cpu"]["calls"] == 8 and by_name(status)["cpu"]["seconds"] > 0


def test_batch_of_windows_is_normalised_per_item():
    chain = FrontendChain(["cpu"])
    quiet = AUDIO * 1e-3
    batch = chain.compute_batch([AUDIO, quiet, AUDIO[:16000]])
    np.testing.assert_array_equal(batch[0], chain.compute(AUDIO))
    np.testing.assert_allclose(batch[1], chain.compute(quiet), atol=1e-6)
    assert batch[2].shape == (80, 100)
