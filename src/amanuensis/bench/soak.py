"""A soak test: a server under steady mixed traffic for minutes, with misbehaving clients mixed in.

    amanuensis bench soak [--minutes 30] [--streams 4] [--server URL] [--json]

For `--minutes`: `--streams` realtime sessions of real speech (the dev clips, looped, 1 s apart) at 1x
with server VAD; a file request (POST /v1/audio/transcriptions of a dev clip of at most 15 s) every
`--file-every` seconds; a job (POST /v1/jobs, followed until done, then deleted) every `--job-every`
seconds; and, every `--misbehave-every` seconds, three misbehaving realtime clients: one silent (sends
nothing until the server closes it), one that never reads while sending events the server answers
with errors, one that drops its connection in the middle of a turn. Streams and jobs get 120 s past
the end to finish; what is still open then counts as an error.

It reports errors (those seen by well-behaved clients apart from those of misbehaving ones, which are
expected to be cut off), and per minute: delta latency p50/p95 (a word's delta arrival minus the end
of its audio), file request latency p50/p95, realtime sessions open, and the server's RSS (from
/metrics), with RSS and sessions also at the start and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import re
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np

from ..constants import SAMPLE_RATE
from ..evaluation import read_references
from .load import LOOPBACK, default_data_dir, find_clips, local_server, percentile
from .machine import describe, summary
from .realtime import StreamRun, delta_timings, stream_audio, stream_session, to_pcm24

RSS_LINE = re.compile(r"^process_resident_memory_bytes ([0-9.eE+-]+)$", re.M)
SESSIONS_LINE = re.compile(r"^amanuensis_realtime_sessions_open ([0-9.eE+-]+)$", re.M)
SAMPLE_EVERY_S = 5.0
FILE_CLIP_MAX_S = 15.0
DRAIN_S = 120.0
UNREAD_EVENTS = 300
MID_TURN_S = 3.0
SILENT_WAIT_S = 120.0
KEEP_ERRORS = 20


@dataclass
class Sample:
    """The server's state at one moment (seconds since the soak began)."""

    at_s: float
    rss_mb: float | None
    sessions_open: int | None


@dataclass
class Minute:
    """One minute of the soak."""

    minute: int
    delta_words: int
    delta_p50_s: float | None
    delta_p95_s: float | None
    files: int
    file_p50_s: float | None
    file_p95_s: float | None
    jobs_done: int
    sessions_open_max: int | None
    rss_mb: float | None
    errors_well_behaved: int
    errors_misbehaving: int


@dataclass
class Traffic:
    """Everything the clients saw, as it happened (times in seconds since the soak began)."""

    t0: float = field(default_factory=time.monotonic)
    files: list[tuple[float, float]] = field(default_factory=list)
    jobs: list[tuple[float, float]] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    misbehaving_errors: list[tuple[float, str]] = field(default_factory=list)
    misbehaving: dict[str, list[str]] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def error(self, message: str, misbehaving: bool = False) -> None:
        (self.misbehaving_errors if misbehaving else self.errors).append((self.now(), message[:300]))


async def _sample(client: httpx.AsyncClient, traffic: Traffic) -> Sample:
    try:
        text = (await client.get("/metrics", timeout=10)).text
    except httpx.HTTPError as exc:
        traffic.error(f"GET /metrics: {exc!r}")
        return Sample(round(traffic.now(), 1), None, None)
    rss, sessions = RSS_LINE.search(text), SESSIONS_LINE.search(text)
    return Sample(round(traffic.now(), 1), round(float(rss.group(1)) / 2**20, 1) if rss else None,
                  int(float(sessions.group(1))) if sessions else None)


async def _sampler(client: httpx.AsyncClient, traffic: Traffic, until: float) -> None:
    while traffic.now() < until:
        await asyncio.sleep(SAMPLE_EVERY_S)
        traffic.samples.append(await _sample(client, traffic))


async def _files(client: httpx.AsyncClient, clips: list[Path], every_s: float, traffic: Traffic, until: float) -> None:
    async def one(clip: Path) -> None:
        started = traffic.now()
        try:
            response = await client.post("/v1/audio/transcriptions", data={"model": "whisper-1"},
                                         files={"file": (clip.name, clip.read_bytes())}, timeout=300)
        except httpx.HTTPError as exc:
            traffic.error(f"file {clip.name}: {exc!r}")
            return
        if response.status_code != 200:
            traffic.error(f"file {clip.name}: {response.status_code} {response.text[:200]}")
            return
        traffic.files.append((started, traffic.now() - started))

    await _every(every_s, traffic, until, lambda k: one(clips[k % len(clips)]))


async def _jobs(client: httpx.AsyncClient, clips: list[Path], every_s: float, traffic: Traffic, until: float) -> None:
    async def one(clip: Path) -> None:
        started = traffic.now()
        try:
            created = await client.post("/v1/jobs", files={"file": (clip.name, clip.read_bytes())}, timeout=60)
            if created.status_code not in (200, 201, 202):
                traffic.error(f"job {clip.name}: {created.status_code} {created.text[:200]}")
                return
            job_id = created.json()["id"]
            while traffic.now() < until + DRAIN_S:
                job = (await client.get(f"/v1/jobs/{job_id}", timeout=60)).json()
                if job.get("status") in ("done", "failed", "cancelled"):
                    break
                await asyncio.sleep(1.0)
            if job.get("status") != "done":
                traffic.error(f"job {job_id}: {job.get('status')} {json.dumps(job.get('error'))[:200]}")
                return
            traffic.jobs.append((started, traffic.now() - started))
            deleted = await client.delete(f"/v1/jobs/{job_id}", timeout=60)
            if deleted.status_code != 200:
                traffic.error(f"delete {job_id}: {deleted.status_code} {deleted.text[:200]}")
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            traffic.error(f"job {clip.name}: {exc!r}")

    await _every(every_s, traffic, until, lambda k: one(clips[(k * 7) % len(clips)]))


async def _every(every_s: float, traffic: Traffic, until: float, start: Callable[[int], Awaitable[None]]) -> None:
    """Start `start(k)` every `every_s` seconds until `until` (not waiting for the last one), then wait
    for all of them."""
    running, k = [], 0
    while traffic.now() < until:
        running.append(asyncio.create_task(start(k)))
        k += 1
        await asyncio.sleep(max(0.0, k * every_s - traffic.now()))
    await asyncio.gather(*running)


def _ws_url(url: str) -> str:
    return url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"


def _append(pcm: bytes) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()})


async def _silent(url: str, headers: dict) -> str:
    """Open a session and send nothing: the server should close it after its idle timeout."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    started = time.monotonic()
    async with connect(_ws_url(url), additional_headers=headers, max_size=None) as ws:
        try:
            while time.monotonic() - started < SILENT_WAIT_S:
                await asyncio.wait_for(ws.recv(), SILENT_WAIT_S)
        except (ConnectionClosed, TimeoutError):
            pass
        code = ws.close_code
    return f"closed {code} after {time.monotonic() - started:.1f} s" if code else "still open: left"


async def _non_reading(url: str, headers: dict) -> str:
    """Send events the server answers with errors, never reading the answers; wait; leave."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    started = time.monotonic()
    async with connect(_ws_url(url), additional_headers=headers, max_queue=1, max_size=None) as ws:
        try:
            for k in range(UNREAD_EVENTS):
                await asyncio.wait_for(ws.send(json.dumps({"type": "soak.unknown", "n": k})), 10)
            await asyncio.sleep(10)
        except (ConnectionClosed, TimeoutError):
            pass
        code = ws.close_code
    return f"closed {code} after {time.monotonic() - started:.1f} s" if code else "left after sending"


async def _mid_turn(url: str, headers: dict, pcm24: bytes) -> str:
    """Speak for a few seconds at 1x and drop the connection without a close, in the middle of a turn."""
    from websockets.asyncio.client import connect

    async with connect(_ws_url(url), additional_headers=headers, max_size=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": {"model": "whisper-1"},
                      "turn_detection": {"type": "server_vad"}}}}}))
        step = 4800  # 100 ms of pcm16 at 24 kHz
        for k in range(int(MID_TURN_S * 10)):
            await ws.send(_append(pcm24[k * step:(k + 1) * step]))
            await asyncio.sleep(0.1)
        ws.transport.abort()
    return "dropped mid-turn"


async def _misbehave(url: str, headers: dict, pcm24: bytes, every_s: float, traffic: Traffic, until: float) -> None:
    kinds = {"silent": lambda: _silent(url, headers), "non_reading": lambda: _non_reading(url, headers),
             "mid_turn": lambda: _mid_turn(url, headers, pcm24)}

    async def one(name: str) -> None:
        try:
            outcome = await kinds[name]()
        except Exception as exc:  # noqa: BLE001 - any failure of a misbehaving client is reported, not raised
            traffic.error(f"{name}: {exc!r}", misbehaving=True)
            outcome = f"error {type(exc).__name__}"
        traffic.misbehaving.setdefault(name, []).append(outcome)

    async def round_of_all(k: int) -> None:
        await asyncio.gather(*(one(name) for name in kinds))

    await _every(every_s, traffic, until, round_of_all)


async def _stream(url: str, key: str | None, samples: np.ndarray, run: StreamRun, traffic: Traffic,
                  until: float) -> None:
    try:
        await asyncio.wait_for(stream_session(url, key, samples, 1.0, run), until + DRAIN_S - traffic.now())
    except TimeoutError:
        traffic.error(f"stream {run.session}: turns still open {DRAIN_S:g} s after the soak's end")
    except Exception as exc:  # noqa: BLE001 - a broken stream is the soak's finding, reported with the rest
        traffic.error(f"stream {run.session or '?'}: {exc!r}")
    for at, event in run.events:
        if event["type"] == "error":
            traffic.errors.append((at - traffic.t0, f"stream {run.session}: {json.dumps(event['error'])[:250]}"))


def _looped(clips: Sequence[Path], start: int, seconds: float) -> np.ndarray:
    """The clips from `start` on, 1 s apart, repeated to `seconds`, then 2 s of silence so that the server's
    VAD closes the last turn."""
    once, _ = stream_audio(clips, start, None, 1.0)
    looped = np.tile(once, int(np.ceil(seconds * SAMPLE_RATE / len(once))))[: int(seconds * SAMPLE_RATE)]
    return np.concatenate([looped, np.zeros(2 * SAMPLE_RATE, dtype=np.float32)])


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return round(percentile(values, 50), 3), round(percentile(values, 95), 3)


def _minutes(traffic: Traffic, deltas: list[tuple[float, float]], minutes: float) -> list[Minute]:
    rows = []
    for m in range(int(np.ceil(minutes))):
        def within(at: float, m: int = m) -> bool:
            return m * 60 <= at < (m + 1) * 60

        words = [latency for at, latency in deltas if within(at)]
        files = [latency for at, latency in traffic.files if within(at)]
        samples = [s for s in traffic.samples if within(s.at_s)]
        rss = [s.rss_mb for s in samples if s.rss_mb is not None]
        sessions = [s.sessions_open for s in samples if s.sessions_open is not None]
        rows.append(Minute(
            minute=m + 1, delta_words=len(words), **dict(zip(("delta_p50_s", "delta_p95_s"), _stats(words))),
            files=len(files), **dict(zip(("file_p50_s", "file_p95_s"), _stats(files))),
            jobs_done=sum(within(at) for at, _ in traffic.jobs), sessions_open_max=max(sessions, default=None),
            rss_mb=rss[-1] if rss else None, errors_well_behaved=sum(within(at) for at, _ in traffic.errors),
            errors_misbehaving=sum(within(at) for at, _ in traffic.misbehaving_errors)))
    return rows


def _window(deltas: list[tuple[float, float]], first: float, last: float) -> float | None:
    return _stats([latency for at, latency in deltas if first <= at < last])[1]


async def soak(url: str, key: str | None, clips: Sequence[Path], file_clips: list[Path], minutes: float, streams: int,
               file_every_s: float, job_every_s: float, misbehave_every_s: float) -> dict:
    """Run the soak against `url`; the report as a dict."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    until = minutes * 60
    audios = [_looped(clips, i * len(clips) // streams, until) for i in range(streams)]
    pcm24 = to_pcm24(audios[0][: int(SAMPLE_RATE * (MID_TURN_S + 1))])
    runs = [StreamRun() for _ in range(streams)]
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        traffic = Traffic()
        start = await _sample(client, traffic)
        await asyncio.gather(
            _sampler(client, traffic, until),
            *(_stream(url, key, audio, run, traffic, until) for audio, run in zip(audios, runs)),
            _files(client, file_clips, file_every_s, traffic, until),
            _jobs(client, file_clips, job_every_s, traffic, until),
            _misbehave(url, headers, pcm24, misbehave_every_s, traffic, until),
        )
        end = await _sample(client, traffic)
    deltas = [(at - traffic.t0, latency) for run in runs for at, latency in delta_timings(run, 1.0)[0]]
    rows = _minutes(traffic, deltas, minutes)
    rss_at = {row.minute: row.rss_mb for row in rows}
    return {
        "minutes": minutes, "streams": streams, "url": url, "machine": describe(),
        "start": asdict(start), "end": asdict(end), "per_minute": [asdict(row) for row in rows],
        "errors": {"well_behaved": len(traffic.errors), "misbehaving": len(traffic.misbehaving_errors),
                   "well_behaved_first": [m for _, m in traffic.errors[:KEEP_ERRORS]],
                   "misbehaving_first": [m for _, m in traffic.misbehaving_errors[:KEEP_ERRORS]]},
        "misbehaving": traffic.misbehaving,
        "totals": {"delta_words": len(deltas), "files": len(traffic.files), "jobs_done": len(traffic.jobs),
                   "turns": sum(delta_timings(run, 1.0)[2] for run in runs)},
        "summary": {"delta_p95_first5_s": _window(deltas, 0, 300),
                    "delta_p95_last5_s": _window(deltas, max(0.0, until - 300), until + 60),
                    "rss_minute5_mb": rss_at.get(5), "rss_end_mb": end.rss_mb},
    }


def format_report(report: dict) -> str:
    """The report as text: the header, one row per minute, the errors."""
    def cell(value: object, width: int) -> str:
        return f"{'-' if value is None else value:>{width}}"

    start, end, errors = report["start"], report["end"], report["errors"]
    lines = [f"soak: {report['minutes']:g} min, {report['streams']} streams, {report['url']}",
             f"start: rss {start['rss_mb']} MB, sessions open {start['sessions_open']}",
             f"{'minute':>6} {'words':>6} {'delta p50':>9} {'p95':>6} {'files':>5} {'file p50':>8} {'p95':>6} "
             f"{'jobs':>4} {'sessions':>8} {'rss MB':>7} {'errors':>6} {'misbehaving errors':>18}"]
    for row in report["per_minute"]:
        lines.append(" ".join((cell(row["minute"], 6), cell(row["delta_words"], 6), cell(row["delta_p50_s"], 9),
                               cell(row["delta_p95_s"], 6), cell(row["files"], 5), cell(row["file_p50_s"], 8),
                               cell(row["file_p95_s"], 6), cell(row["jobs_done"], 4),
                               cell(row["sessions_open_max"], 8), cell(row["rss_mb"], 7),
                               cell(row["errors_well_behaved"], 6), cell(row["errors_misbehaving"], 18))))
    lines.append(f"end: rss {end['rss_mb']} MB, sessions open {end['sessions_open']}")
    lines.append(f"summary: {json.dumps(report['summary'])}; totals: {json.dumps(report['totals'])}")
    lines.append(f"errors: well-behaved {errors['well_behaved']}, misbehaving {errors['misbehaving']}")
    lines += [f"    well-behaved: {m}" for m in errors["well_behaved_first"]]
    lines += [f"    misbehaving: {m}" for m in errors["misbehaving_first"]]
    lines += [f"misbehaving {name}: {len(outcomes)} runs, e.g. {outcomes[:3]}"
              for name, outcomes in report["misbehaving"].items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`amanuensis bench soak`."""
    parser = argparse.ArgumentParser(prog="amanuensis bench soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long (default 30)")
    parser.add_argument("--streams", type=int, default=4, help="well-behaved realtime streams (default 4)")
    parser.add_argument("--server", help="a running server (loopback); default: start one")
    parser.add_argument("--api-key", help="the server's API key")
    parser.add_argument("--server-args", default="", help="flags for the started server")
    parser.add_argument("--file-every", type=float, default=15.0, help="seconds between file requests (15)")
    parser.add_argument("--job-every", type=float, default=60.0, help="seconds between job submissions (60)")
    parser.add_argument("--misbehave-every", type=float, default=60.0,
                        help="seconds between rounds of misbehaving clients (60)")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.streams < 1 or min(args.file_every, args.job_every, args.misbehave_every) <= 0:
        parser.error("--minutes and the intervals must be positive, --streams at least 1")
    if args.server and urlparse(args.server).hostname not in LOOPBACK:
        parser.error("--server must be a loopback address")
    data = default_data_dir()
    clips = sorted(Path(p) for p in read_references(data / "transcripts.tsv"))
    file_clips = [clip.path for clip in find_clips(data, FILE_CLIP_MAX_S)]
    with contextlib.ExitStack() as stack:
        url = args.server
        if url is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="amanuensis-bench-soak-")))
            flags = args.server_args.split() + ["--max-realtime-sessions", str(args.streams + 4),
                                                "--realtime-idle-timeout", "15"]
            url = stack.enter_context(local_server(flags, workdir / "server.log"))
        if not args.json:
            print(summary(describe()), flush=True)
        report = asyncio.run(soak(url, args.api_key, clips, file_clips, args.minutes, args.streams,
                                  args.file_every, args.job_every, args.misbehave_every))
    print(json.dumps(report) if args.json else format_report(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
