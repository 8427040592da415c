"""WS /v1/realtime against slow, careless and hostile clients on the real server (one session allowed
at a time): a closed session's slot is free at once, a message over the size limit gets an `error`
before the close, and a client that floods events without reading is dropped within the send timeout,
its slot and memory released."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import time

import httpx
import pytest

from .server_fixtures import RunningServer, run_server

SEND_TIMEOUT_S = 2.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> RunningServer:
    workdir = tmp_path_factory.mktemp("realtime-limits")
    with run_server(workdir, "--max-realtime-sessions", "1", "--realtime-send-timeout", str(SEND_TIMEOUT_S),
                    "--realtime-idle-timeout", "30") as running:
        asyncio.run(first_event(running))  # the realtime model copies load at the first session
        yield running


def ws_url(server: RunningServer) -> str:
    return server.url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"


async def first_event(server: RunningServer) -> dict:
    """Open a session, take its first event, close."""
    from websockets.asyncio.client import connect

    async with connect(ws_url(server)) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), 30))


def rejected(server: RunningServer) -> float:
    """/metrics: realtime sessions refused at the limit so far."""
    text = httpx.get(server.url + "/metrics").text
    return float(re.search(r"^amanuensis_realtime_sessions_rejected_total (\S+)$", text, re.M).group(1))


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def test_connect_close_cycles_with_the_limit_at_one_are_never_refused(server):
    before = rejected(server)

    async def cycles() -> list[str]:
        return [(await first_event(server))["type"] for _ in range(30)]

    kinds = asyncio.run(cycles())
    assert kinds == ["session.created"] * 30, kinds
    assert rejected(server) == before


def test_a_message_over_the_size_limit_gets_an_error_then_1009(server):
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from amanuensis.server.realtime.protocol import MAX_MESSAGE_BYTES

    async def scenario() -> tuple[list[dict], object]:
        events: list[dict] = []
        async with connect(ws_url(server)) as ws:
            events.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
            audio = "A" * (MAX_MESSAGE_BYTES + 1024)
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
            try:
                while True:
                    events.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
            except ConnectionClosed as closed:
                return events, closed
        return events, None

    events, closed = asyncio.run(scenario())
    assert [e["type"] for e in events] == ["session.created", "error"], events
    assert (events[1]["error"]["param"], events[1]["error"]["code"]) == ("audio", "append_too_large"), events[1]
    assert closed is not None and closed.rcvd is not None and closed.rcvd.code == 1009, closed
    assert asyncio.run(first_event(server))["type"] == "session.created"  # the slot is free again


def _raw_session(server: RunningServer) -> socket.socket:
    """A WebSocket opened by hand on a socket with a small receive buffer (the client never reads)."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /v1/realtime?intent=transcription HTTP/1.1\r\nHost: {host}:{port}\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def test_a_client_that_floods_without_reading_is_dropped_and_its_slot_and_memory_freed(server):
    from websockets.frames import Frame, Opcode

    asyncio.run(first_event(server))
    before = rss_bytes(server.process.pid)
    sock = _raw_session(server)
    # each event owes the client an `error` of about 250 bytes that names its type (100,000 of them:
    # 25 MB, more than the socket buffers between server and client hold); the client never reads one
    frame = Frame(Opcode.TEXT, json.dumps({"type": "x" * 60}).encode()).serialize(mask=True)
    sock.settimeout(0.5)
    sent = 0
    try:
        for _ in range(100):
            sock.sendall(frame * 1000)
            sent += 1000
    except (TimeoutError, OSError):
        pass  # the server stopped reading (or dropped the connection)
    flooded = time.monotonic()
    assert sent > 20_000, sent

    async def admitted() -> float:
        while True:
            event = await first_event(server)
            if event["type"] == "session.created":
                return time.monotonic()
            assert event["error"]["code"] == "session_limit", event
            await asyncio.sleep(0.2)

    waited = asyncio.run(asyncio.wait_for(admitted(), 30)) - flooded
    assert waited <= SEND_TIMEOUT_S + 3.0, (waited, sent, server.log()[-3000:])
    # the server dropped the connection: reading what reached the socket ends in a reset or EOF
    sock.settimeout(10)
    with pytest.raises((ConnectionResetError, EOFError)):
        while sock.recv(65536):
            pass
        raise EOFError
    sock.close()
    after = rss_bytes(server.process.pid)
    assert after - before <= 20 * 1024 * 1024, (before, after)
    assert "takes no events" in server.log() or "took no bytes" in server.log()
