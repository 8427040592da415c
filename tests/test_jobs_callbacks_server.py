"""Job webhooks on the real server: a loopback receiver gets each job's signed callback exactly once, also
when the server is killed (SIGKILL) while a callback is still owed and started again."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
import time

import httpx
import pytest

from .server_fixtures import JFK, run_server
from .test_jobs import JFK_WORDS, submit, wait_done, words
from .test_jobs_callbacks import Receiver

pytestmark = pytest.mark.slow


def _callback_when(http: httpx.Client, job_id: str, ready, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        callback = http.get(f"/v1/jobs/{job_id}").json()["callback"]
        if ready(callback):
            return callback
        time.sleep(0.2)
    raise AssertionError(f"callback of {job_id} not as expected after {timeout} s: {callback}")


def test_signed_callback_once_per_job_across_a_sigkill_and_restart(tmp_path):
    receiver = Receiver()
    data = tmp_path / "data"
    flags = ("--data-dir", str(data), "--allow-private-callbacks")
    try:
        with run_server(tmp_path / "first", *flags) as first, httpx.Client(base_url=first.url, timeout=60) as http:
            delivered = submit(http, JFK, callback_url=receiver.url)
            assert delivered["callback"] == {"url": receiver.url, "status": "waiting", "attempts": 0}
            assert wait_done(http, delivered["id"])["status"] == "done"
            state = _callback_when(http, delivered["id"], lambda c: c["status"] == "delivered")
            assert state["attempts"] == 1 and state["last_status_code"] == 200

            receiver.answers = [503] * 1000  # the receiver is down: the next callback stays owed
            submitted = subprocess.run(
                [sys.executable, "-m", "amanuensis.cli", "jobs", "--server", first.url, "submit", str(JFK),
                 "--callback", receiver.url], capture_output=True, text=True, timeout=120)
            assert submitted.returncode == 0, submitted.stderr
            owed = submitted.stdout.strip()
            assert wait_done(http, owed)["status"] == "done"
            state = _callback_when(http, owed, lambda c: c["attempts"] >= 1)
            assert state["status"] == "pending" and state["last_status_code"] == 503 and state["next_attempt_at"]
            first.process.kill()
            first.process.wait()

        receiver.answers = []
        with run_server(tmp_path / "second", *flags) as second, \
                httpx.Client(base_url=second.url, timeout=60) as http:
            state = _callback_when(http, owed, lambda c: c["status"] == "delivered")
            assert state["attempts"] >= 2 and state["last_status_code"] == 200
            time.sleep(1.0)  # a wrong second delivery (of either job) would arrive by now
            assert http.get(f"/v1/jobs/{delivered['id']}").json()["callback"]["attempts"] == 1
    finally:
        receiver.close()

    secret = (data / "callback-secret").read_text().strip().encode()
    accepted = [(headers, body) for status, headers, body in receiver.got if status == 200]
    assert sorted(headers["X-Amanuensis-Delivery"] for headers, _ in accepted) == sorted([delivered["id"], owed])
    for headers, body in accepted:
        assert headers["X-Amanuensis-Signature"] == "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    for body in receiver.accepted():
        assert body["status"] == "done" and set(words(body["result"]["text"])) >= JFK_WORDS
