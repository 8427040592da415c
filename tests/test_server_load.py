"""A bounded load test on the real server: 50 requests of real clips, 8 at a time, over loopback.
Nothing fails, nothing is lost, and the server is still ready afterwards."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from amanuensis.bench.load import find_clips, format_report, run_load

from .server_fixtures import DATA, RunningServer, run_server

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)

REQUESTS = 50
CONCURRENCY = 8
MAX_CLIP_SECONDS = 5.0  # short clips keep the whole test to well under a minute on 2 cores


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> RunningServer:
    with run_server(tmp_path_factory.mktemp("load")) as running:
        yield running


def test_fifty_requests_eight_at_a_time(server, record_property):
    clips = find_clips(DATA, MAX_CLIP_SECONDS)
    assert len(clips) >= 20
    report = asyncio.run(run_load(server.url, clips, REQUESTS, CONCURRENCY, time_limit_s=240))
    log.info("load test:\n%s", format_report(report))
    record_property("load_report", format_report(report))
    assert report.failed == 0 and report.lost == 0, report.errors
    assert report.ok == REQUESTS
    assert 0 < report.p50_s <= report.p95_s <= report.max_s
    assert report.throughput_audio_s_per_s > 0
    assert report.health_probes >= 10 and report.health_p50_s < 0.1, format_report(report)
    status = httpx.get(f"{server.url}/status").json()
    assert status["requests"]["served"] == REQUESTS and status["requests"]["failed"] == 0
    assert status["queue"]["waiting"] == 0 and status["queue"]["running"] == 0
    assert httpx.get(f"{server.url}/ready").status_code == 200
    assert server.uploads_left() == []


def test_load_tool_refuses_remote_targets():
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(run_load("http://example.com:9004", [], 1, 1))
