"""Job webhooks: when a job ends, POST its JSON (result or error) to the job's `callback_url`, signed.

The body is signed with HMAC-SHA256 under the server's callback secret (header `X-Amanuensis-Signature:
sha256=<hex>`). Delivery state lives on the job's row, so a callback still owed when the process dies is
sent after the next start; a delivery is marked done only after the receiver answered 2xx, so a receiver
may (rarely: a crash between its answer and our commit) see one twice and can tell by
`X-Amanuensis-Delivery`. Only http(s) URLs whose host resolves to public addresses are accepted (every
resolved address is checked, at submission and again before each attempt), unless private callbacks
are allowed: a job submitter must not make the server call into its own network.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..errors import OptionsError
from .store import JobRecord, JobStore

log = logging.getLogger(__name__)

PARAM = "callback_url"
SIGNATURE_HEADER = "X-Amanuensis-Signature"
SECRET_FILE = "callback-secret"
MAX_URL_LENGTH = 2048
TIMEOUT_S = 10.0
MAX_ATTEMPTS = 12
FIRST_RETRY_S = 2.0
MAX_RETRY_S = 600.0
"""Retries wait 2, 4, 8 … seconds, at most 10 minutes: twelve attempts span about 47 minutes."""
CONCURRENT = 4

JobView = Callable[[JobRecord], dict[str, Any]]


def retry_delay(attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed attempt."""
    return min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** max(0, attempts - 1))


def _refused_address(address: str) -> str | None:
    """Why `address` may not be called back (None: it is a public address)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{kind}"):
            return f"{kind.replace('_', '-')} address {ip}"
    if not ip.is_global:
        return f"non-public address {ip}"
    return None


def check_callback_url(url: str, allow_private: bool = False) -> str:
    """Return `url` when the server may POST to it; raise OptionsError naming `callback_url` otherwise.

    Blocking (resolves the host): call it from a thread."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise OptionsError(f"{PARAM} is longer than {MAX_URL_LENGTH} characters", PARAM)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OptionsError(f"{PARAM} is not a valid URL: {exc}", PARAM) from None
    if parts.scheme not in ("http", "https"):
        raise OptionsError(f"{PARAM} must be an http or https URL, not {parts.scheme or 'no'} scheme", PARAM)
    if not parts.hostname:
        raise OptionsError(f"{PARAM} has no host", PARAM)
    if allow_private:
        return url
    try:
        found = socket.getaddrinfo(parts.hostname, port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise OptionsError(f"{PARAM} host {parts.hostname!r} does not resolve: {exc}", PARAM) from None
    for address in sorted({entry[4][0] for entry in found}):
        reason = _refused_address(address)
        if reason:
            raise OptionsError(f"{PARAM} host {parts.hostname!r} resolves to a {reason}; this server calls back "
                               "only public addresses (--allow-private-callbacks lifts this)", PARAM)
    return url


def load_secret(given: str | None, data_dir: Path) -> bytes:
    """The signing secret: `given` (the callback_secret setting), else `<data_dir>/callback-secret`,
    created with 32 random bytes (owner-only) on first use."""
    if given:
        return given.encode()
    path = Path(data_dir) / SECRET_FILE
    with contextlib.suppress(FileNotFoundError):
        return path.read_text(encoding="utf-8").strip().encode()
    secret = secrets.token_hex(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    log.info("callback secret generated: path=%s", path)
    return secret.encode()


def sign(body: bytes, secret: bytes) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class CallbackSender:
    """Delivers the callbacks of finished jobs: wakes when a job ends, sends what is due, retries with
    back-off, records every attempt on the job."""

    def __init__(self, store: JobStore, secret: bytes, view: JobView, *, allow_private: bool = False,
                 timeout: float = TIMEOUT_S, max_attempts: int = MAX_ATTEMPTS) -> None:
        self.store = store
        self.secret = secret
        self.view = view
        self.allow_private = allow_private
        self.timeout = timeout
        self.max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._sending: dict[str, asyncio.Task] = {}

    def start(self) -> None:
        """Start the delivery loop (owed callbacks of a previous process go out at once)."""
        self._task = asyncio.create_task(self._loop(), name="job-callbacks")

    def wake(self) -> None:
        """A job ended: look for due callbacks now."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop delivering (what is still owed stays recorded for the next start)."""
        for task in [*self._sending.values(), self._task]:  # deliveries first: they use the loop's client
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = None

    async def _loop(self) -> None:
        limit = asyncio.Semaphore(CONCURRENT)
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False, trust_env=False) as client:
            while True:
                self._wake.clear()
                try:
                    due = await asyncio.to_thread(self.store.callbacks_due, time.time())
                    for job in due:
                        if job.id not in self._sending:
                            self._sending[job.id] = asyncio.create_task(self._deliver(client, limit, job),
                                                                        name=f"callback-{job.id}")
                    upcoming = await asyncio.to_thread(self.store.next_callback_at)
                except Exception:  # noqa: BLE001 - a database hiccup must not end deliveries for good
                    log.exception("callback scan failed")
                    upcoming = time.time() + FIRST_RETRY_S
                wait = None if upcoming is None else max(0.05, upcoming - time.time())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)

    async def _deliver(self, client: httpx.AsyncClient, limit: asyncio.Semaphore, job: JobRecord) -> None:
        try:
            async with limit:
                state = await self._attempt(client, job)
            await asyncio.to_thread(self.store.record_callback, job.id, state)
        except Exception:  # noqa: BLE001 - recorded attempts go on; this one is retried by the next scan
            log.exception("callback delivery failed: job_id=%s", job.id)
        finally:
            self._sending.pop(job.id, None)
            self.wake()

    async def _attempt(self, client: httpx.AsyncClient, job: JobRecord) -> dict[str, Any]:
        """POST once; the callback state to record after it."""
        state = dict(job.callback or {})
        attempts = int(state.get("attempts", 0)) + 1
        state.update(attempts=attempts, last_attempt_at=time.time())
        body = json.dumps(self.view(job), separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, self.secret),
                   "X-Amanuensis-Delivery": job.id, "X-Amanuensis-Event": f"job.{job.status}",
                   "User-Agent": "amanuensis-callback"}
        retry, error, code = True, None, None
        try:
            assert job.callback_url is not None
            await asyncio.to_thread(check_callback_url, job.callback_url, self.allow_private)
            response = await client.post(job.callback_url, content=body, headers=headers)
            code = response.status_code
            if 200 <= code < 300:
                state.update(status="delivered", delivered_at=time.time(), last_status_code=code, last_error=None,
                             next_attempt_at=None)
                log.info("callback delivered: job_id=%s attempts=%d status=%d", job.id, attempts, code)
                return state
            error = f"the receiver answered HTTP {code}"
            retry = code >= 500 or code in (408, 425, 429)
        except OptionsError as exc:
            error, retry = str(exc), False
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        state.update(last_status_code=code, last_error=error)
        if retry and attempts < self.max_attempts:
            state.update(status="pending", next_attempt_at=time.time() + retry_delay(attempts))
            log.info("callback failed, will retry: job_id=%s attempts=%d error=%s", job.id, attempts, error)
        else:
            state.update(status="failed", next_attempt_at=None)
            log.warning("callback given up: job_id=%s attempts=%d error=%s", job.id, attempts, error)
        return state
