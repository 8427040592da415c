"""`amanuensis jobs submit|status|wait|fetch`: talk to a running server's /v1/jobs (standard library only)."""

from __future__ import annotations

import argparse
import json
import logging
import mimetypes
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:9004"
TERMINAL = ("done", "failed", "cancelled")
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
RETRY_S = 2.0
CHUNK = 1 << 16
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}]"


class ClientError(Exception):
    """A request failed: `status` is the HTTP status (0 when the server could not be reached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class JobsClient:
    """A small blocking client for /v1/jobs."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def _request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                 timeout: float | None = None):
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)  # noqa: S310 - user's URL
        except urllib.error.HTTPError as exc:
            raise ClientError(_error_message(exc), exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(f"cannot reach the server at {self.url}: {reason}") from None

    def json(self, method: str, path: str) -> dict:
        """A JSON answer."""
        with self._request(method, path) as response:
            return json.loads(response.read())

    def submit(self, path: Path, fields: dict[str, str]) -> dict:
        """Upload `path` with form `fields`; returns the queued job."""
        boundary = uuid.uuid4().hex
        head = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in fields.items()
        )
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        filename = path.name.replace('"', "_")
        head += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                 f"Content-Type: {kind}\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = len(head) + path.stat().st_size + len(tail)

        def body() -> Iterator[bytes]:
            yield head
            with open(path, "rb") as handle:
                while chunk := handle.read(CHUNK):
                    yield chunk
            yield tail

        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(size)}
        with self._request("POST", "/v1/jobs", body(), headers, timeout=max(self.timeout, 600)) as response:
            return json.loads(response.read())

    def status(self, job_id: str) -> dict:
        """The job as JSON."""
        return self.json("GET", f"/v1/jobs/{urllib.parse.quote(job_id)}")

    def fetch(self, job_id: str, fmt: str) -> str:
        """The finished transcript rendered in `fmt`."""
        query = urllib.parse.urlencode({"format": fmt})
        with self._request("GET", f"/v1/jobs/{urllib.parse.quote(job_id)}?{query}") as response:
            return response.read().decode("utf-8")

    def events(self, job_id: str) -> Iterator[tuple[str, dict]]:
        """(event name, data) from the job's event stream until it ends."""
        with self._request("GET", f"/v1/jobs/{urllib.parse.quote(job_id)}/events", timeout=3600) as response:
            name, data = "message", []
            for raw in response:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if data:
                        yield name, json.loads("\n".join(data))
                    name, data = "message", []
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))

    def wait(self, job_id: str, on_progress=None, deadline: float | None = None) -> dict:
        """Follow the job until it finishes (surviving dropped connections and server restarts)."""
        while True:
            try:
                for name, data in self.events(job_id):
                    if name in ("progress", "status") and on_progress:
                        on_progress(data.get("progress", data))
                    if name in TERMINAL:
                        return data
            except ClientError as exc:
                if exc.status:
                    raise
                log.info("connection lost, retrying: %s", exc)
            except (OSError, ValueError) as exc:
                log.info("event stream broke, retrying: %r", exc)
            if deadline is not None and time.monotonic() > deadline:
                raise ClientError(f"job {job_id} did not finish in time")
            time.sleep(RETRY_S)


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {exc.code} {exc.reason}"


class _Bar:
    """A tqdm bar of audio seconds on stderr (only when stderr is a terminal, or when forced)."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled
        self.bar = None

    def __call__(self, progress: dict) -> None:
        total = progress.get("total_s")
        if not self.enabled or not total:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=round(total, 1), desc=self.label, unit="s", file=sys.stderr, leave=False,
                            bar_format=BAR_FORMAT)
        self.bar.n = round(min(progress.get("done_s", 0.0), total), 1)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def add_jobs_arguments(commands: argparse._SubParsersAction) -> None:
    """Add `jobs submit|status|wait|fetch` to the `amanuensis` sub-command parser."""
    from ..formats import FORMATS
    from ..options import JOBS
    from .flags import add_option_flags

    jobs = commands.add_parser("jobs", help="submit and follow transcription jobs on a running server")
    jobs.add_argument("--server", default=os.environ.get("AMANUENSIS_URL", DEFAULT_URL),
                      help=f"server URL (default $AMANUENSIS_URL or {DEFAULT_URL})")
    jobs.add_argument("--api-key", default=os.environ.get("AMANUENSIS_API_KEY"),
                      help="Bearer key (default $AMANUENSIS_API_KEY)")
    actions = jobs.add_subparsers(dest="jobs_command", required=True)

    submit = actions.add_parser("submit", help="upload a file as a job and print its id")
    submit.add_argument("file", type=Path, metavar="FILE")
    submit.add_argument("--model", help="model name (default: the server's)")
    submit.add_argument("--callback", metavar="URL", help="the server POSTs the finished job here (signed)")
    submit.add_argument("--wait", action="store_true", help="wait for the transcript and print it")
    submit.add_argument("--format", choices=FORMATS, default="text", help="with --wait: output format")
    submit.add_argument("--progress", action="store_true", help="with --wait: show the bar even when not a TTY")
    add_option_flags(submit, JOBS)

    status = actions.add_parser("status", help="print a job (or recent jobs) as JSON")
    status.add_argument("job_id", nargs="?", metavar="JOB_ID", help="omit to list recent jobs")

    wait = actions.add_parser("wait", help="follow a job with a progress bar, then print the transcript")
    wait.add_argument("job_id", metavar="JOB_ID")
    wait.add_argument("--format", choices=FORMATS, default="text")
    wait.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    wait.add_argument("--progress", action="store_true", help="show the bar even when stderr is not a TTY")

    fetch = actions.add_parser("fetch", help="print (or save) a finished job's transcript")
    fetch.add_argument("job_id", metavar="JOB_ID")
    fetch.add_argument("--format", choices=FORMATS, default="text")
    fetch.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")

    jobs.set_defaults(handler=jobs_from_args)


def _write(text: str, output: Path | None = None) -> None:
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()


def _wait_and_print(client: JobsClient, job_id: str, fmt: str, show_bar: bool, timeout: float | None) -> int:
    bar = _Bar(job_id[:12], show_bar or sys.stderr.isatty())
    try:
        job = client.wait(job_id, bar, time.monotonic() + timeout if timeout else None)
    finally:
        bar.close()
    if job["status"] != "done":
        error = (job.get("error") or {}).get("message", "")
        sys.stderr.write(f"amanuensis: job {job_id} {job['status']}{': ' + error if error else ''}\n")
        return EXIT_FAILED
    _write(client.fetch(job_id, fmt))
    return 0


def jobs_from_args(args: argparse.Namespace) -> int:
    """Run one `amanuensis jobs …` command; 0 done, 1 job failed/cancelled or server unreachable, 2 bad input."""
    from .flags import form_fields

    client = JobsClient(args.server, args.api_key)
    try:
        if args.jobs_command == "submit":
            if not args.file.is_file():
                sys.stderr.write(f"amanuensis: error: {args.file}: no such file\n")
                return EXIT_BAD_INPUT
            fields = form_fields(args)
            if args.model:
                fields["model"] = args.model
            if args.callback:
                fields["callback_url"] = args.callback
            job = client.submit(args.file, fields)
            if not args.wait:
                _write(job["id"])
                return 0
            sys.stderr.write(f"{job['id']}\n")
            return _wait_and_print(client, job["id"], args.format, args.progress, None)
        if args.jobs_command == "status":
            data = client.status(args.job_id) if args.job_id else client.json("GET", "/v1/jobs")
            _write(json.dumps(data, indent=2, ensure_ascii=False))
            return 0
        if args.jobs_command == "wait":
            return _wait_and_print(client, args.job_id, args.format, args.progress, args.timeout)
        if args.jobs_command == "fetch":
            _write(client.fetch(args.job_id, args.format), args.output)
            return 0
    except ClientError as exc:
        sys.stderr.write(f"amanuensis: error: {exc}\n")
        return EXIT_BAD_INPUT if 400 <= exc.status < 500 else EXIT_FAILED
    raise AssertionError(f"unknown jobs command {args.jobs_command}")
