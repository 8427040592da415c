"""A bounded load test of a running server: N requests of real clips, C at a time, over loopback.

    amanuensis bench load --requests 50 --concurrency 8            # starts its own server
    amanuensis bench load --url http://127.0.0.1:9004 --requests 50
    amanuensis bench load --compare --requests 8 --concurrency 8    # one at a time vs at once

Reports failures, lost requests (sent but never answered), p50/p95 latency and throughput in audio
seconds per wall-clock second. Refuses non-loopback URLs: it is a test tool, not a traffic generator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx

from .machine import describe, summary

log = logging.getLogger(__name__)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAX_REQUESTS = 1000
MAX_CONCURRENCY = 64


@dataclass
class Clip:
    """A test recording and its length."""

    path: Path
    seconds: float


@dataclass
class Outcome:
    """One request's fate."""

    clip: str
    status: int | None
    latency: float
    audio_seconds: float = 0.0
    error: str | None = None


@dataclass
class Report:
    """The load test's summary."""

    requests: int
    concurrency: int
    ok: int
    failed: int
    lost: int
    wall_s: float
    p50_s: float
    p95_s: float
    max_s: float
    audio_s: float
    throughput_audio_s_per_s: float
    requests_per_s: float
    health_p50_s: float = 0.0
    health_p95_s: float = 0.0
    health_probes: int = 0
    errors: list[str] = field(default_factory=list)


def shared_data_dir() -> Path:
    """../shared/data beside the checkout, or AMANUENSIS_TEST_DATA."""
    root = os.environ.get("AMANUENSIS_TEST_DATA")
    if root:
        return Path(root)
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def default_data_dir() -> Path:
    """../shared/data/speech beside the checkout, or AMANUENSIS_TEST_DATA/speech."""
    return shared_data_dir() / "speech"


def find_clips(data_dir: Path, max_seconds: float) -> list[Clip]:
    """Clips listed in transcripts.tsv no longer than `max_seconds` (lengths from inventory.tsv)."""
    lengths: dict[str, float] = {}
    inventory = data_dir / "inventory.tsv"
    if inventory.is_file():
        for row in inventory.read_text(encoding="utf-8").splitlines()[1:]:
            parts = row.split("\t")
            with contextlib.suppress(IndexError, ValueError):
                lengths[parts[0]] = float(parts[1])
    clips = []
    for row in (data_dir / "transcripts.tsv").read_text(encoding="utf-8").splitlines():
        name = row.split("\t", 1)[0].strip()
        seconds = lengths.get(name, 0.0)
        if name and 0 < seconds <= max_seconds and (data_dir / name).is_file():
            clips.append(Clip(data_dir / name, seconds))
    if not clips:
        raise SystemExit(f"no clips of at most {max_seconds:g} s under {data_dir}")
    return sorted(clips, key=lambda c: str(c.path))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def _one(client: httpx.AsyncClient, route: str, clip: Clip, gate: asyncio.Semaphore) -> Outcome:
    async with gate:
        started = time.perf_counter()
        try:
            response = await client.post(
                route, files={"file": (clip.path.name, clip.path.read_bytes())}, data={"response_format": "json"}
            )
        except httpx.HTTPError as exc:
            return Outcome(clip.path.name, None, time.perf_counter() - started, error=repr(exc))
        latency = time.perf_counter() - started
    if response.status_code != 200:
        return Outcome(clip.path.name, response.status_code, latency, error=response.text[:200])
    body = response.json()
    if not isinstance(body.get("text"), str):
        return Outcome(clip.path.name, 200, latency, error="answer without text")
    return Outcome(clip.path.name, 200, latency, float(body.get("duration") or clip.seconds))


async def _probe_health(url: str, latencies: list[float], every_s: float = 0.2) -> None:
    """GET /health on its own connection while the load runs: the event loop must stay free."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while True:
            started = time.perf_counter()
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/health")).status_code == 200:
                    latencies.append(time.perf_counter() - started)
            await asyncio.sleep(every_s)


async def run_load(url: str, clips: Sequence[Clip], requests: int, concurrency: int, route: str = "/transcribe",
                   api_key: str | None = None, time_limit_s: float = 600.0, seed: int = 0) -> Report:
    """Send `requests` requests (clips in a seeded order), `concurrency` at a time; summarise."""
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"load tests target loopback only, not {host!r}")
    if not 1 <= requests <= MAX_REQUESTS or not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"requests must be 1-{MAX_REQUESTS} and concurrency 1-{MAX_CONCURRENCY}")
    order = random.Random(seed)
    chosen = [clips[order.randrange(len(clips))] for _ in range(requests)]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    started = time.perf_counter()
    health: list[float] = []
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=time_limit_s, limits=limits) as client:
        tasks = [asyncio.create_task(_one(client, route, clip, gate)) for clip in chosen]
        prober = asyncio.create_task(_probe_health(url, health))
        done, pending = await asyncio.wait(tasks, timeout=time_limit_s)
        prober.cancel()
        for task in pending:
            task.cancel()
    wall = time.perf_counter() - started
    outcomes = [task.result() for task in done]
    ok = [o for o in outcomes if o.error is None]
    latencies = [o.latency for o in ok]
    audio = sum(o.audio_seconds for o in ok)
    return Report(
        requests=requests,
        concurrency=concurrency,
        ok=len(ok),
        failed=len(outcomes) - len(ok),
        lost=len(pending),
        wall_s=round(wall, 3),
        p50_s=round(percentile(latencies, 50), 3),
        p95_s=round(percentile(latencies, 95), 3),
        max_s=round(max(latencies, default=0.0), 3),
        audio_s=round(audio, 2),
        throughput_audio_s_per_s=round(audio / wall, 2) if wall > 0 else 0.0,
        requests_per_s=round(len(ok) / wall, 2) if wall > 0 else 0.0,
        health_p50_s=round(percentile(health, 50), 4),
        health_p95_s=round(percentile(health, 95), 4),
        health_probes=len(health),
        errors=[f"{o.clip}: {o.status} {o.error}" for o in outcomes if o.error][:10],
    )


@dataclass
class Comparison:
    """The same requests served one at a time, then `concurrency` at a time."""

    alone: Report
    together: Report

    @property
    def ratio(self) -> float:
        """Throughput (audio s/s) served together over served one at a time."""
        base = self.alone.throughput_audio_s_per_s
        return round(self.together.throughput_audio_s_per_s / base, 3) if base > 0 else 0.0


async def compare_load(url: str, clips: Sequence[Clip], requests: int, concurrency: int, route: str = "/transcribe",
                       api_key: str | None = None, time_limit_s: float = 600.0) -> Comparison:
    """One warm-up request, then the same `requests` clips one at a time and `concurrency` at a time."""
    await run_load(url, clips, 1, 1, route, api_key, time_limit_s)
    alone = await run_load(url, clips, requests, 1, route, api_key, time_limit_s)
    together = await run_load(url, clips, requests, concurrency, route, api_key, time_limit_s)
    return Comparison(alone, together)


def format_comparison(comparison: Comparison) -> str:
    """Both reports and the throughput ratio."""
    return (
        "one at a time:\n" + format_report(comparison.alone)
        + f"{comparison.together.concurrency} at a time:\n" + format_report(comparison.together)
        + f"throughput ratio (concurrent / one at a time): {comparison.ratio:.2f}x\n"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def local_server(flags: Sequence[str], log_path: Path) -> Iterator[str]:
    """Start `python -m amanuensis.server` on a free loopback port; yield its URL; stop it after."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "amanuensis.server", "--host", "127.0.0.1", "--port", str(port), *flags]
    if "--data-dir" not in flags:  # keep the started server's job store out of the user's data
        command += ["--data-dir", str(log_path.parent / "data")]
    with open(log_path, "w", encoding="utf-8") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the server exited with {process.returncode}; see {log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"the server was not ready within 120 s; see {log_path}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def format_report(report: Report) -> str:
    """A few human-readable lines."""
    return (
        f"requests {report.requests} (concurrency {report.concurrency}): ok {report.ok}, failed {report.failed}, "
        f"lost {report.lost}\n"
        f"latency p50 {report.p50_s:.3f} s, p95 {report.p95_s:.3f} s, max {report.max_s:.3f} s\n"
        f"throughput {report.throughput_audio_s_per_s:.2f} audio s/s ({report.audio_s:.1f} s of audio in "
        f"{report.wall_s:.2f} s; {report.requests_per_s:.2f} requests/s)\n"
        f"/health while loaded: p50 {report.health_p50_s * 1000:.1f} ms, p95 {report.health_p95_s * 1000:.1f} ms "
        f"({report.health_probes} probes)\n"
        + "".join(f"error: {e}\n" for e in report.errors)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; exit 1 when any request failed or was lost."""
    parser = argparse.ArgumentParser(prog="amanuensis bench load", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running server (loopback); default: start one")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--route", default="/transcribe", choices=("/transcribe", "/v1/audio/transcriptions"))
    parser.add_argument("--data", type=Path, default=default_data_dir(), help="folder with transcripts.tsv")
    parser.add_argument("--max-clip-seconds", type=float, default=12.0)
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds for the whole run")
    parser.add_argument("--api-key", default=os.environ.get("AMANUENSIS_LOAD_API_KEY"))
    parser.add_argument("--server-flags", default="", help="flags for the started server, e.g. '--workers 2'")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--compare", action="store_true",
                        help="serve the requests one at a time, then --concurrency at a time; print the ratio")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    clips = find_clips(args.data, args.max_clip_seconds)

    def go(url: str) -> Report | Comparison:
        run = compare_load if args.compare else run_load
        return asyncio.run(run(url, clips, args.requests, args.concurrency, args.route, args.api_key,
                               args.time_limit))

    if args.url:
        report = go(args.url)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="amanuensis-load-"))
        log.info("starting a server (log: %s)", workdir / "server.log")
        with local_server(args.server_flags.split(), workdir / "server.log") as url:
            report = go(url)
    if isinstance(report, Comparison):
        data = {**asdict(report), "ratio": report.ratio}
        text = format_comparison(report)
        reports = [report.alone, report.together]
    else:
        data, text, reports = asdict(report), format_report(report), [report]
    machine = describe()
    data["machine"] = machine
    text = summary(machine) + "\n" + text
    sys.stdout.write(json.dumps(data, indent=2) + "\n" if args.json else text)
    return 0 if all(r.failed == 0 and r.lost == 0 for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
