"""Realtime transcription under load: N WebSocket sessions replaying speech at 1x, side by side with
offline transcription of the same audio.

    amanuensis bench realtime [FILES…] [--streams 1 2 4] [--seconds 120] [--json]

Each stream joins the clips (dev clips by default, each stream starting at a different clip) with
`--gap` seconds of silence between them, and sends the audio as pcm16 24 kHz in 100 ms appends on a
1x clock, with server VAD. Per stream and overall it reports: delta latency (arrival of the delta
carrying a word minus the moment that word's audio ended, by the final word timestamps), completion
latency (`.completed` arrival minus the end of the turn's last word, and minus `speech_stopped`),
lag (from the last audio sent to the last `.completed`, and the largest lag sampled from /metrics
each second; with `--seconds` ≥ 300 also its mean over the first and the last minute), and the WER
of the final texts and of offline transcription (POST /v1/audio/transcriptions of the very audio
streamed) against the references.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import difflib
import io
import json
import re
import statistics
import tempfile
import time
import wave
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
from scipy.signal import resample_poly

from ..asr.live.streaming import normal, split_words
from ..audio import decode_audio
from ..constants import SAMPLE_RATE
from ..evaluation import read_references, word_error_rate
from .load import LOOPBACK, default_data_dir, local_server, percentile
from .machine import describe, summary

APPEND_S = 0.1
LAG_LINE = re.compile(r'^amanuensis_realtime_session_lag_seconds\{session="([^"]+)"\} ([0-9.eE+-]+)$', re.M)


@dataclass
class StreamReport:
    """One stream's figures (seconds)."""

    stream: int
    audio_s: float
    turns: int
    words: int
    words_with_delta: int
    delta_p50_s: float
    delta_p95_s: float
    completed_p50_s: float
    completed_p95_s: float
    completed_max_s: float
    after_stop_p50_s: float
    after_stop_p95_s: float
    lag_end_s: float
    """From the stream's last audio to its last `.completed`: how far behind the transcript ended."""
    lag_max_s: float
    lag_first_minute_s: float | None
    lag_last_minute_s: float | None
    deltas_equal_final: float
    """Share of turns whose concatenated deltas read exactly like the final text (normalised words)."""
    wer_final: float
    wer_offline: float
    errors: list[str] = field(default_factory=list)
    reference: str = ""
    final_text: str = ""
    offline_text: str = ""


@dataclass
class StreamRun:
    """What one stream saw: the server's events with their arrival times, and when its audio ran."""

    events: list[tuple[float, dict]] = field(default_factory=list)
    lags: list[tuple[float, float]] = field(default_factory=list)
    t0: float = 0.0
    audio_end: float = 0.0
    session: str = ""
    latencies: list[float] = field(default_factory=list)
    after_words: list[float] = field(default_factory=list)
    reference: str = ""
    finals: str = ""
    offline: str = ""


def stream_audio(clips: Sequence[Path], start: int, seconds: float | None,
                 gap_s: float) -> tuple[np.ndarray, list[Path]]:
    """Clips from index `start` on (wrapping), each followed by `gap_s` of silence, up to `seconds`."""
    pieces, used, total = [], [], 0.0
    gap = np.zeros(int(gap_s * SAMPLE_RATE), dtype=np.float32)
    for k in range(len(clips)):
        clip = clips[(start + k) % len(clips)]
        audio = decode_audio(clip)
        if seconds is not None and used and total + len(audio) / SAMPLE_RATE > seconds:
            continue  # too long for what is left: a shorter clip may still fit
        pieces += [audio, gap]
        used.append(clip)
        total += (len(audio) + len(gap)) / SAMPLE_RATE
    return np.concatenate(pieces), used


def to_pcm24(samples: np.ndarray) -> bytes:
    """16 kHz float samples as the pcm16 at 24 kHz that realtime sessions are sent."""
    return (np.clip(resample_poly(samples, 3, 2), -1, 1) * 32767).astype("<i2").tobytes()


def _wav(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(SAMPLE_RATE)
        handle.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


async def stream_session(url: str, key: str | None, samples: np.ndarray, speed: float, run: StreamRun) -> None:
    """Stream `samples` as one realtime session on a `speed`x clock (server VAD), recording every event
    in `run`, until the audio is sent and every started turn has its `.completed`."""
    from websockets.asyncio.client import connect

    ws_url = url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = to_pcm24(samples)
    step = int(24000 * APPEND_S) * 2
    async with connect(ws_url, additional_headers=headers, max_size=None) as ws:
        created = json.loads(await ws.recv())
        run.session = created.get("session", {}).get("id", "")
        await ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": {"model": "whisper-1"},
                      "turn_detection": {"type": "server_vad"}}}}}))

        async def send() -> None:
            run.t0 = time.monotonic()
            for k, offset in enumerate(range(0, len(data), step)):
                delay = run.t0 + k * APPEND_S / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                          "audio": base64.b64encode(data[offset : offset + step]).decode()}))
            run.audio_end = time.monotonic()

        sender = asyncio.create_task(send())
        while True:
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                run.events.append((time.monotonic(), message))
            except asyncio.TimeoutError:
                pass
            kinds = [e["type"] for _, e in run.events]
            started = kinds.count("input_audio_buffer.speech_started")
            finished = kinds.count("conversation.item.input_audio_transcription.completed") >= started
            if sender.done() and finished and (started or time.monotonic() - run.audio_end > 5):
                break
        await sender


async def _sample_lags(url: str, key: str | None, runs: list[StreamRun], every_s: float = 1.0) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                text = (await client.get("/metrics")).text
                now = time.monotonic()
                lags = dict(LAG_LINE.findall(text))
                for run in runs:
                    if run.session in lags and run.t0 and not run.audio_end:
                        run.lags.append((now - run.t0, float(lags[run.session])))
            await asyncio.sleep(every_s)


def delta_timings(run: StreamRun, speed: float) -> tuple[list[tuple[float, float]], int, int, int]:
    """Per final word with a delta: (the delta's arrival, its arrival minus the end of the word's audio);
    words; turns; turns whose deltas equal the final text."""
    deltas: dict[str, list[tuple[float, str]]] = {}
    for at, event in run.events:
        if event["type"] == "conversation.item.input_audio_transcription.delta":
            deltas.setdefault(event["item_id"], []).extend((at, w) for w in split_words(event.get("delta") or ""))
    latencies, words, equal = [], 0, 0
    completed = [e for _, e in run.events if e["type"] == "conversation.item.input_audio_transcription.completed"]
    for event in completed:
        final = [w for w in (event.get("amanuensis") or {}).get("words", []) if normal(w["word"])]
        shown = deltas.get(event["item_id"], [])
        words += len(final)
        a, b = [normal(w) for _, w in shown], [normal(w["word"]) for w in final]
        equal += [x for x in a if x] == [normal(w) for w in split_words(event["transcript"]) if normal(w)]
        for block in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
            for k in range(block.size):
                arrived = shown[block.a + k][0]
                latencies.append((arrived, arrived - (run.t0 + final[block.b + k]["end"] / speed)))
    return latencies, words, len(completed), equal


def _completion(run: StreamRun, speed: float) -> tuple[list[float], list[float]]:
    stops = {e["item_id"]: at for at, e in run.events if e["type"] == "input_audio_buffer.speech_stopped"}
    after_words, after_stop = [], []
    for at, event in run.events:
        if event["type"] != "conversation.item.input_audio_transcription.completed":
            continue
        words = (event.get("amanuensis") or {}).get("words") or []
        if words:
            after_words.append(at - (run.t0 + words[-1]["end"] / speed))
        if event["item_id"] in stops:
            after_stop.append(at - stops[event["item_id"]])
    return after_words, after_stop


def _minute(lags: list[tuple[float, float]], first: bool) -> float | None:
    if not lags or lags[-1][0] < 300:
        return None
    edge = lags[-1][0] - 60
    chosen = [lag for t, lag in lags if (t <= 60 if first else t >= edge)]
    return round(statistics.fmean(chosen), 3) if chosen else None


async def run_streams(url: str, clips: Sequence[Path], refs: dict[str, str], streams: int, seconds: float | None,
                      gap_s: float = 1.0, speed: float = 1.0, key: str | None = None,
                      texts: bool = False) -> list[StreamReport]:
    """Run `streams` sessions at once; return one report per stream."""
    if urlparse(url).hostname not in LOOPBACK:
        raise ValueError("the realtime bench targets loopback servers only")
    audios = [stream_audio(clips, i * len(clips) // streams, seconds, gap_s) for i in range(streams)]
    runs = [StreamRun() for _ in range(streams)]
    sampler = asyncio.create_task(_sample_lags(url, key, runs))
    results = await asyncio.gather(*(stream_session(url, key, a, speed, r) for (a, _), r in zip(audios, runs)),
                                   return_exceptions=True)
    sampler.cancel()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    reports = []
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as client:
        for i, ((samples, used), run, result) in enumerate(zip(audios, runs, results)):
            offline = await client.post("/v1/audio/transcriptions", data={"model": "whisper-1"},
                                        files={"file": ("stream.wav", _wav(samples), "audio/wav")})
            reference = " ".join(refs.get(str(p.resolve()), "") for p in used)
            finals = [e["transcript"] for _, e in run.events
                      if e["type"] == "conversation.item.input_audio_transcription.completed"]
            timings, words, turns, equal = delta_timings(run, speed)
            latencies = [latency for _, latency in timings]
            after_words, after_stop = _completion(run, speed)
            lags = [lag for _, lag in run.lags]
            errors = [repr(result)] if isinstance(result, BaseException) else []
            errors += [json.dumps(e["error"]) for _, e in run.events if e["type"] == "error"][:5]
            reports.append(StreamReport(
                stream=i, audio_s=round(len(samples) / SAMPLE_RATE, 1), turns=turns, words=words,
                words_with_delta=len(latencies),
                delta_p50_s=round(percentile(latencies, 50), 3), delta_p95_s=round(percentile(latencies, 95), 3),
                completed_p50_s=round(percentile(after_words, 50), 3),
                completed_p95_s=round(percentile(after_words, 95), 3),
                completed_max_s=round(max(after_words, default=0.0), 3),
                after_stop_p50_s=round(percentile(after_stop, 50), 3),
                after_stop_p95_s=round(percentile(after_stop, 95), 3),
                lag_end_s=round(max((at for at, e in run.events if e["type"].endswith("completed")),
                                    default=run.audio_end) - run.audio_end, 3),
                lag_max_s=round(max(lags, default=0.0), 3),
                lag_first_minute_s=_minute(run.lags, True), lag_last_minute_s=_minute(run.lags, False),
                deltas_equal_final=round(equal / turns, 3) if turns else 0.0,
                wer_final=round(100 * word_error_rate([reference], [" ".join(finals)]), 2),
                wer_offline=round(100 * word_error_rate([reference], [offline.json().get("text", "")]), 2)
                if offline.status_code == 200 else float("nan"),
                errors=errors,
            ))
            run.latencies, run.after_words = latencies, after_words
            run.reference, run.finals = reference, " ".join(finals)
            run.offline = offline.json().get("text", "") if offline.status_code == 200 else ""
            if texts:
                reports[-1].reference, reports[-1].final_text, reports[-1].offline_text = (
                    run.reference, run.finals, run.offline)
    overall = _overall(runs, reports)
    return [*reports, overall]


def _overall(runs: list[StreamRun], reports: list[StreamReport]) -> StreamReport:
    latencies = [x for r in runs for x in r.latencies]
    after = [x for r in runs for x in r.after_words]
    refs = [r.reference for r in runs]
    turns = sum(r.turns for r in reports)
    return StreamReport(
        stream=-1, audio_s=round(sum(r.audio_s for r in reports), 1), turns=turns,
        words=sum(r.words for r in reports), words_with_delta=len(latencies),
        delta_p50_s=round(percentile(latencies, 50), 3), delta_p95_s=round(percentile(latencies, 95), 3),
        completed_p50_s=round(percentile(after, 50), 3), completed_p95_s=round(percentile(after, 95), 3),
        completed_max_s=round(max(after, default=0.0), 3),
        after_stop_p50_s=round(statistics.median([r.after_stop_p50_s for r in reports]), 3),
        after_stop_p95_s=round(max(r.after_stop_p95_s for r in reports), 3),
        lag_end_s=round(max(r.lag_end_s for r in reports), 3), lag_max_s=round(max(r.lag_max_s for r in reports), 3),
        lag_first_minute_s=None, lag_last_minute_s=None,
        deltas_equal_final=round(sum(r.deltas_equal_final * r.turns for r in reports) / turns, 3) if turns else 0.0,
        wer_final=round(100 * word_error_rate(refs, [r.finals for r in runs]), 2),
        wer_offline=round(100 * word_error_rate(refs, [r.offline for r in runs]), 2),
        errors=[e for r in reports for e in r.errors][:10],
    )


def format_reports(streams: int, reports: Sequence[StreamReport]) -> str:
    """A table: one row per stream and one for all of them."""
    head = (f"{'streams=' + str(streams):<10} {'audio s':>8} {'turns':>5} {'words':>5} {'delta p50':>9} "
            f"{'p95':>6} {'done p50':>8} {'p95':>6} {'max':>6} {'stop→done':>9} {'lag end':>7} {'lag max':>7} "
            f"{'1st min':>7} {'last min':>8} {'=final':>6} {'WER rt':>6} {'WER off':>7}")
    rows = [head]
    for r in reports:
        name = "all" if r.stream < 0 else f"#{r.stream}"
        minute = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        rows.append(f"{name:<10} {r.audio_s:>8.1f} {r.turns:>5} {r.words:>5} {r.delta_p50_s:>9.2f} "
                    f"{r.delta_p95_s:>6.2f} {r.completed_p50_s:>8.2f} {r.completed_p95_s:>6.2f} "
                    f"{r.completed_max_s:>6.2f} {r.after_stop_p50_s:>9.2f} {r.lag_end_s:>7.2f} {r.lag_max_s:>7.2f} "
                    f"{minute(r.lag_first_minute_s):>7} {minute(r.lag_last_minute_s):>8} "
                    f"{r.deltas_equal_final:>6.2f} {r.wer_final:>6.2f} {r.wer_offline:>7.2f}")
        rows += [f"    error: {e}" for e in r.errors]
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """`amanuensis bench realtime`."""
    parser = argparse.ArgumentParser(prog="amanuensis bench realtime", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="clips to stream (default: the dev clips)")
    parser.add_argument("--refs", type=Path, help="transcripts.tsv with references (default: the dev set's)")
    parser.add_argument("--streams", type=int, nargs="+", default=[1], help="concurrent streams; several: one run each")
    parser.add_argument("--seconds", type=float, help="audio per stream, at most (default: every clip)")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds of silence after each clip (default 1)")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed (default 1 = real time)")
    parser.add_argument("--url", help="a running server (loopback); default: start one")
    parser.add_argument("--api-key", help="the server's API key")
    parser.add_argument("--server-args", default="", help="flags for the started server, e.g. '--workers 2'")
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    parser.add_argument("--texts", action="store_true", help="with --json: the reference, final and offline texts")
    args = parser.parse_args(argv)
    data = default_data_dir()
    refs = read_references(args.refs or data / "transcripts.tsv")
    clips = [p.resolve() for p in args.files] or sorted(Path(p) for p in refs)
    if not clips:
        parser.error("no clips: name files or put the dev set in ../shared/data/speech")
    if args.url and urlparse(args.url).hostname not in LOOPBACK:
        parser.error("--url must be a loopback address")
    with contextlib.ExitStack() as stack:
        url = args.url
        if url is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="amanuensis-bench-rt-")))
            flags = args.server_args.split() + ["--max-realtime-sessions", str(max(args.streams) + 1)]
            url = stack.enter_context(local_server(flags, workdir / "server.log"))
        if not args.json:
            print(summary(describe()), flush=True)
        for streams in args.streams:
            reports = asyncio.run(run_streams(url, clips, refs, streams, args.seconds, args.gap, args.speed,
                                              args.api_key, args.texts))
            if args.json:
                print(json.dumps({"streams": streams, "reports": [asdict(r) for r in reports],
                                  "machine": describe()}))
            else:
                print(format_reports(streams, reports), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
