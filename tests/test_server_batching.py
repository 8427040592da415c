"""Cross-request batching on the real server: 8 concurrent requests of real clips share engine batches,
every transcript is right, and transcripts served together match those served one at a time."""

from __future__ import annotations

import asyncio
import logging
import re

import httpx
import pytest

from amanuensis.bench.load import Clip, find_clips
from amanuensis.evaluation import normalize, read_references, word_error_rate
from amanuensis.server.settings import ServerSettings

from .server_fixtures import DATA, RunningServer, run_server

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)

CONCURRENT = 8
MAX_CLIP_SECONDS = 12.0


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> RunningServer:
    with run_server(tmp_path_factory.mktemp("batching")) as running:
        yield running


@pytest.fixture(scope="module")
def clips() -> list[Clip]:
    """Eight clips spread over the corpus (sources, speakers, lengths)."""
    every = find_clips(DATA, MAX_CLIP_SECONDS)
    assert len(every) >= CONCURRENT
    step = len(every) / CONCURRENT
    return [every[int(i * step)] for i in range(CONCURRENT)]


async def _transcribe_all(url: str, clips: list[Clip]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:

        async def one(clip: Clip) -> httpx.Response:
            with open(clip.path, "rb") as audio:
                return await client.post("/transcribe", files={"file": (clip.path.name, audio.read())})

        return await asyncio.gather(*(one(clip) for clip in clips))


def _texts(responses: list[httpx.Response]) -> list[str]:
    assert [r.status_code for r in responses] == [200] * len(responses), [r.text[:200] for r in responses]
    return [r.json()["text"] for r in responses]


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


def test_concurrent_requests_share_engine_batches(server, clips):
    references = read_references(DATA / "transcripts.tsv")
    refs = [references[str(clip.path.resolve())] for clip in clips]
    alone = [_texts(asyncio.run(_transcribe_all(server.url, [clip])))[0] for clip in clips]
    before = httpx.get(f"{server.url}/status").json()["batching"]
    assert before["enabled"] and before["max_concurrent"] == CONCURRENT

    together = _texts(asyncio.run(_transcribe_all(server.url, clips)))

    after = httpx.get(f"{server.url}/status").json()
    batching = after["batching"]
    assert batching["shared_batches"] > before["shared_batches"], batching
    assert batching["largest_batch"] >= 2, batching
    assert batching["chunks"] - before["chunks"] >= CONCURRENT
    assert after["requests"]["failed"] == 0 and after["jobs"]["failed"] == 0
    assert after["queue"]["slots"] == CONCURRENT and after["queue"]["running"] == 0
    wer_alone, wer_together = word_error_rate(refs, alone), word_error_rate(refs, together)
    assert wer_alone <= 0.3 and wer_together <= 0.3, (wer_alone, list(zip(refs, together)))
    assert abs(wer_together - wer_alone) <= 0.01, (wer_alone, wer_together)
    log.info("WER alone %.4f, together %.4f; batching %s", wer_alone, wer_together, batching)
    same = sum(normalize(a) == normalize(b) for a, b in zip(alone, together))
    assert same >= CONCURRENT - 1, list(zip(alone, together))
    metrics = httpx.get(f"{server.url}/metrics").text
    assert _metric(metrics, "amanuensis_engine_shared_batches_total") == batching["shared_batches"]
    assert _metric(metrics, "amanuensis_engine_batches_total") == batching["batches"]
    assert server.uploads_left() == []


def test_batch_wait_zero_turns_cross_request_batching_off(tmp_path, clips):
    with run_server(tmp_path, "--batch-wait-ms", "0") as running:
        texts = _texts(asyncio.run(_transcribe_all(running.url, clips[:3])))
        status = httpx.get(f"{running.url}/status").json()
    assert all(texts)
    assert status["batching"]["enabled"] is False and status["batching"]["batches"] == 0
    assert status["queue"]["slots"] == 1


def test_slots_follow_the_settings(monkeypatch):
    assert ServerSettings().slots() == 8
    assert ServerSettings(workers=2, max_concurrent=3).slots() == 6
    assert ServerSettings(workers=2, max_concurrent=3, batch_wait_ms=0).slots() == 2
    monkeypatch.setenv("AMANUENSIS_BATCH_WAIT_MS", "0")
    monkeypatch.setenv("AMANUENSIS_MAX_CONCURRENT", "4")
    settings = ServerSettings()
    assert not settings.cross_request_batching and settings.max_concurrent == 4


def test_a_closed_scheduler_runs_late_callers_inline():
    """A request still decoding on a model that was unloaded finishes unbatched instead of failing."""
    from types import SimpleNamespace

    from amanuensis.asr.scheduler import BatchScheduler, SchedulerClosed

    scheduler = BatchScheduler(lambda jobs: [len(jobs)] * len(jobs), max_batch=4, wait_s=0.01)
    jobs = [SimpleNamespace(settings=None) for _ in range(3)]
    assert scheduler.run(jobs[:2]) == [2, 2]
    scheduler.close()
    assert scheduler.run(jobs) == [3, 3, 3]
    with pytest.raises(SchedulerClosed):
        scheduler.submit(jobs)
    assert scheduler.stats.batches == 1 and scheduler.stats.chunks == 2 and scheduler.stats.shared == 0


def test_a_batch_stops_waiting_once_every_active_caller_is_in():
    """With callers marked, a lone caller's batch goes at once and two callers' jobs share one batch,
    long before the (deliberately huge) wait window ends."""
    import threading
    import time
    from types import SimpleNamespace

    from amanuensis.asr.scheduler import BatchScheduler

    job = SimpleNamespace(settings=None)
    with BatchScheduler(lambda jobs: [len(jobs)] * len(jobs), max_batch=8, wait_s=30.0) as scheduler:
        started = time.monotonic()
        with scheduler.caller():
            assert scheduler.run([job]) == [1]
        gate, results = threading.Barrier(2), []

        def call() -> None:
            with scheduler.caller():
                gate.wait()
                results.append(scheduler.run([job, job]))

        threads = [threading.Thread(target=call) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        assert time.monotonic() - started < 20
    assert results == [[4, 4], [4, 4]] and scheduler.stats.shared == 1
