"""A server killed with SIGKILL mid-job and started again on the same data directory finishes every job."""

from __future__ import annotations

import json
import signal
import sqlite3
import time

import httpx
import pytest

from amanuensis.audio import SAMPLE_RATE, decode_audio

from .server_fixtures import JFK, run_server
from .test_jobs import JFK_WORDS, jfk_repeated, read_events, submit, wait_done, words

pytestmark = pytest.mark.slow

REPEATS = 12


def test_sigkill_mid_job_then_restart_completes_every_job(tmp_path):
    audio = jfk_repeated(tmp_path / f"jfk-x{REPEATS}.wav", REPEATS)
    duration = len(decode_audio(audio)) / SAMPLE_RATE
    data = tmp_path / "data"
    with run_server(tmp_path / "first", "--data-dir", str(data), "--batch-size", "1") as first, \
            httpx.Client(base_url=first.url, timeout=60) as http:
        long_job = submit(http, audio)
        short_job = submit(http, JFK)  # still queued behind the long one when the server dies
        seen = read_events(http, long_job["id"], stop=lambda name, d: name == "progress" and d["done_s"] > 0)
        first.process.kill()
        first.process.wait()
    assert seen[-1][2]["done_s"] < duration
    with sqlite3.connect(data / "jobs.sqlite3") as db:
        states = dict(db.execute("SELECT id, status FROM jobs").fetchall())
    assert states == {long_job["id"]: "running", short_job["id"]: "queued"}

    with run_server(tmp_path / "second", "--data-dir", str(data), "--batch-size", "1") as second, \
            httpx.Client(base_url=second.url, timeout=60) as http:
        finished = wait_done(http, long_job["id"])
        short = wait_done(http, short_job["id"])
        log = second.log()
    assert "jobs recovered: pending=2 rerun=1" in log
    assert finished["status"] == "done" and finished["attempts"] == 2, finished
    result = finished["result"]
    assert result["duration"] == pytest.approx(duration, abs=0.05)
    text = result["text"].lower()
    assert text.count("country") >= 2 * REPEATS - 2 and text.count("ask not") >= REPEATS - 1, text
    assert result["segments"][-1]["end"] > duration - 12  # covers the whole recording, not the tail only
    assert short["status"] == "done" and set(words(short["result"]["text"])) >= JFK_WORDS


def test_sigterm_while_a_client_follows_stops_promptly_and_queues_the_job_again(tmp_path):
    audio = jfk_repeated(tmp_path / f"jfk-x{REPEATS}.wav", REPEATS)
    data = tmp_path / "data"
    with run_server(tmp_path / "server", "--data-dir", str(data), "--batch-size", "1") as server, \
            httpx.Client(base_url=server.url, timeout=60) as http:
        job = submit(http, audio)
        with http.stream("GET", f"/v1/jobs/{job['id']}/events", timeout=120) as response:
            lines = response.iter_lines()
            for line in lines:
                if line.startswith("data:") and json.loads(line[5:]).get("done_s", 0) > 0:
                    break
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            rest = list(lines)  # the stream ends without waiting for the job
        server.process.wait(timeout=60)
        stopped_in = time.monotonic() - signalled
    assert "Application shutdown complete" in server.log()  # (uvicorn then re-raises SIGTERM: exit code -15)
    assert stopped_in < 15, stopped_in  # well under the 30 s graceful-shutdown timeout
    assert "event: done" not in rest
    with sqlite3.connect(data / "jobs.sqlite3") as db:
        row = db.execute("SELECT status, attempts FROM jobs WHERE id = ?", (job["id"],)).fetchone()
    assert row == ("queued", 0)  # interrupted between chunks, re-run on the next start
    assert "job interrupted by shutdown, queued again" in server.log()
