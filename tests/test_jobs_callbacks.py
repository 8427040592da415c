"""Job webhooks without a model: which URLs are refused, the secret, signing, delivery with retries, and the
store's callback columns (also on a database made before they existed)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import socket
import sqlite3
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from amanuensis.errors import OptionsError
from amanuensis.jobs import JobManager, JobStore
from amanuensis.jobs import callbacks as callbacks_module
from amanuensis.jobs.callbacks import CallbackSender, check_callback_url, load_secret, sign
from amanuensis.jobs.manager import callback_body
from amanuensis.pipeline import TranscribeOptions
from amanuensis.transcript import Segment, Transcript


class Receiver:
    """A loopback HTTP receiver: answers each POST with the next status of `answers` (then 200), keeps every
    request it got as (status answered, headers, body)."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.got: list[tuple[int, dict[str, str], bytes]] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.answers.pop(0) if receiver.answers else 200
                receiver.got.append((status, dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.arrived.set()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accepted(self) -> list[dict]:
        """The bodies answered with 2xx, decoded."""
        return [json.loads(body) for status, _, body in self.got if 200 <= status < 300]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.close()


@pytest.mark.parametrize("url", [
    "ftp://example.com/hook", "file:///etc/passwd", "javascript:alert(1)", "http:///nohost", "http://[::1",
    "http://127.0.0.1/", "http://localhost:8080/", "http://10.1.2.3/", "http://172.16.0.1/", "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://[fe80::1]/", "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0/", "http://100.64.0.1/", "http://224.0.0.1/", "http://no-such-host.invalid/",
])
def test_unsafe_callback_urls_are_refused_naming_callback_url(url):
    with pytest.raises(OptionsError) as caught:
        check_callback_url(url)
    assert caught.value.param == "callback_url"


def test_public_addresses_pass_and_private_ones_only_when_allowed():
    assert check_callback_url("https://93.184.216.34/hook?x=1") == "https://93.184.216.34/hook?x=1"
    assert check_callback_url("http://127.0.0.1:8000/hook", allow_private=True) == "http://127.0.0.1:8000/hook"
    with pytest.raises(OptionsError):
        check_callback_url("ftp://127.0.0.1/", allow_private=True)  # the scheme is checked even then


def test_every_resolved_address_is_checked(monkeypatch):
    def resolves_to_both(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in ("93.184.216.34",
                                                                                            "192.168.0.10")]

    monkeypatch.setattr(socket, "getaddrinfo", resolves_to_both)
    with pytest.raises(OptionsError, match="192.168.0.10") as caught:
        check_callback_url("https://hooks.example.com/x")
    assert caught.value.param == "callback_url"


def test_the_secret_is_generated_once_owner_only_and_a_given_one_wins(tmp_path):
    first = load_secret(None, tmp_path)
    assert len(first) == 64 and load_secret(None, tmp_path) == first
    assert stat.S_IMODE(os.stat(tmp_path / "callback-secret").st_mode) == 0o600
    assert load_secret("given", tmp_path) == b"given"


def _add(store: JobStore, callback_url: str | None) -> str:
    upload = store.upload_dir / "amanuensis-upload-a.wav"
    upload.write_bytes(b"RIFF....")
    job = store.add(upload, filename="a.wav", model="tiny.en", response_format="json",
                    options=TranscribeOptions().to_dict(), callback_url=callback_url)
    return job.id


class InstantRunner:
    """Finishes every job at once with a one-segment transcript (or fails it when its filename says so)."""

    async def __call__(self, job, audio, options, progress, on_segment):
        progress(0.0, 1.0)
        if job.filename == "fail.wav":
            raise OptionsError("this one fails", "language")
        return Transcript(text=" hi", language="en", duration=1.0, segments=[Segment(0, 0.0, 1.0, " hi")])


async def _run_jobs(data_dir: Path, receiver: Receiver, filenames: list[str], until) -> tuple[list[dict], list]:
    store = JobStore(data_dir)
    sender = CallbackSender(store, b"k3y", callback_body, allow_private=True)
    manager = JobManager(store, InstantRunner(), callbacks=sender)
    await manager.start()
    ids = []
    for name in filenames:
        upload = store.upload_dir / f"amanuensis-upload-{name}"
        upload.write_bytes(b"RIFF....")
        job = await manager.submit(upload, filename=name, model=None, response_format="json",
                                   options=TranscribeOptions(), callback_url=receiver.url)
        ids.append(job.id)
    for _ in range(400):
        views = [manager.view(store.get(job_id)) for job_id in ids]
        if until(views):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # room for a wrong second delivery to show up
    views = [manager.view(store.get(job_id)) for job_id in ids]
    await manager.stop()
    return views, ids


def test_each_finished_job_is_posted_once_signed_with_its_result_or_error(tmp_path, receiver):
    def delivered(views):
        return all(view["callback"]["status"] == "delivered" for view in views)

    views, ids = asyncio.run(_run_jobs(tmp_path, receiver, ["ok.wav", "fail.wav"], delivered))
    assert delivered(views), views
    assert len(receiver.got) == 2
    for status, headers, body in receiver.got:
        assert status == 200
        assert headers["X-Amanuensis-Signature"] == "sha256=" + hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
        assert headers["X-Amanuensis-Signature"] == sign(body, b"k3y")
        assert headers["Content-Type"] == "application/json"
    by_id = {body["id"]: body for body in receiver.accepted()}
    assert set(by_id) == set(ids)
    done, failed = by_id[ids[0]], by_id[ids[1]]
    assert done["status"] == "done" and done["result"]["text"].strip() == "hi" and "callback" not in done
    assert failed["status"] == "failed" and failed["error"]["message"] == "this one fails"
    assert receiver.got[0][1]["X-Amanuensis-Delivery"] in ids
    assert views[0]["callback"]["attempts"] == 1 and views[0]["callback"]["last_status_code"] == 200


def test_a_failing_receiver_is_retried_with_back_off_and_a_refusal_is_final(tmp_path, receiver, monkeypatch):
    monkeypatch.setattr(callbacks_module, "FIRST_RETRY_S", 0.2)
    receiver.answers = [503, 500, 200]

    def settled(views):
        return views[0]["callback"]["status"] == "delivered"

    views, _ = asyncio.run(_run_jobs(tmp_path / "a", receiver, ["ok.wav"], settled))
    assert [status for status, _, _ in receiver.got] == [503, 500, 200]
    assert views[0]["callback"]["status"] == "delivered" and views[0]["callback"]["attempts"] == 3
    receiver.got.clear()
    receiver.answers = [404]
    views, _ = asyncio.run(_run_jobs(tmp_path / "b", receiver, ["ok.wav"],
                                     lambda v: v[0]["callback"]["status"] == "failed"))
    state = views[0]["callback"]
    assert state["status"] == "failed" and state["attempts"] == 1 and state["last_status_code"] == 404
    assert "404" in state["last_error"] and len(receiver.got) == 1


def test_store_owes_callbacks_of_finished_jobs_only_and_records_attempts(tmp_path):
    store = JobStore(tmp_path)
    with_callback, without = _add(store, "https://93.184.216.34/h"), _add(store, None)
    assert store.callbacks_due(1e12) == [] and store.next_callback_at() is None  # still queued
    for job_id in (with_callback, without):
        store.finish(job_id, "done", result={})
    assert [job.id for job in store.callbacks_due(1e12)] == [with_callback] and store.next_callback_at() == 0
    store.record_callback(with_callback, {"status": "pending", "attempts": 1, "next_attempt_at": 5000.0})
    assert store.callbacks_due(4999.0) == [] and store.next_callback_at() == 5000.0
    store.record_callback(with_callback, {"status": "delivered", "attempts": 2})
    assert store.callbacks_due(1e12) == [] and store.get(with_callback).callback["attempts"] == 2
    store.close()


def test_a_database_from_before_callbacks_gains_the_columns(tmp_path):
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL, created_at REAL NOT NULL,"
                   " started_at REAL, finished_at REAL, filename TEXT, audio TEXT NOT NULL, model TEXT,"
                   " response_format TEXT NOT NULL DEFAULT 'json', options TEXT NOT NULL, client TEXT NOT NULL"
                   " DEFAULT '', done_s REAL NOT NULL DEFAULT 0, total_s REAL, attempts INTEGER NOT NULL DEFAULT 0,"
                   " error TEXT, result TEXT)")
        db.execute("INSERT INTO jobs (id, status, created_at, audio, options) VALUES ('job_old', 'done', 1, 'a', '{}')")
    store = JobStore(tmp_path)
    assert store.get("job_old").callback_url is None
    assert store.get(_add(store, "https://93.184.216.34/h")).callback_status == "waiting"
    store.close()
