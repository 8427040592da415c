"""/status, /metrics and the answers reflect a forced failure in the log-mel front end."""

from __future__ import annotations

import httpx
import pytest

from .server_fixtures import JFK, RunningServer, run_server, upload, words

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def broken_for_good(tmp_path_factory) -> RunningServer:
    """Every call to the first backend fails (AMANUENSIS_FRONTEND_FAULTS=cpu)."""
    with run_server(tmp_path_factory.mktemp("permanent"), env={"AMANUENSIS_FRONTEND_FAULTS": "cpu"}) as running:
        yield running


@pytest.fixture(scope="module")
def broken_once(tmp_path_factory) -> RunningServer:
    """The first backend fails its first call; that call falls back to the next backend."""
    with run_server(tmp_path_factory.mktemp("transient"), env={"AMANUENSIS_FRONTEND_FAULTS": "cpu:1"}) as running:
        yield running


def _backends(status: dict) -> dict[str, dict]:
    return {backend["name"]: backend for backend in status["frontend"]["backends"]}


def test_permanent_fault_moves_work_to_the_fallback(broken_for_good):
    url = broken_for_good.url
    for _ in range(3):  # each request makes at least one failing call; three mark the backend unhealthy
        answer = httpx.post(f"{url}/transcribe", files=upload(JFK), timeout=120).json()
        assert "fellow" in words(answer["text"]) and answer["frontend"] != "cpu"
    status = httpx.get(f"{url}/status").json()
    backends = _backends(status)
    assert status["frontend"]["active"] == answer["frontend"]
    assert backends["cpu"]["healthy"] is False and "injected fault" in backends["cpu"]["last_error"]
    assert backends["cpu"]["calls"] == 0 and backends[answer["frontend"]]["calls"] >= 3
    metrics = httpx.get(f"{url}/metrics").text
    assert 'amanuensis_frontend_healthy{backend="cpu"} 0.0' in metrics
    assert f'amanuensis_frontend_active{{backend="{answer["frontend"]}"}} 1.0' in metrics


def test_call_fault_is_counted_as_a_fallback(broken_once):
    url = broken_once.url
    first = httpx.post(f"{url}/transcribe", files=upload(JFK), timeout=120).json()
    assert "fellow" in words(first["text"]) and first["frontend"] != "cpu"
    backends = _backends(httpx.get(f"{url}/status").json())
    assert backends["cpu"]["failures"] == 1 and "injected fault" in backends["cpu"]["last_error"]
    fallback = backends[first["frontend"]]
    assert fallback["fallbacks"] == 1
    metrics = httpx.get(f"{url}/metrics").text
    assert 'amanuensis_frontend_failures_total{backend="cpu"} 1.0' in metrics
    assert f'amanuensis_frontend_fallbacks_total{{backend="{fallback["name"]}"}} 1.0' in metrics
    second = httpx.post(f"{url}/transcribe", files=upload(JFK), timeout=120).json()
    assert second["frontend"] == "cpu" and _backends(httpx.get(f"{url}/status").json())["cpu"]["calls"] >= 1
