"""The header-read deadline (`--header-timeout`) on a real server: headers sent slowly are cut with 408,
a silent connection is closed, and nothing that sent its headers in time is touched (slow bodies,
kept-alive connections, WebSockets)."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from websockets.sync.client import connect

from .server_fixtures import SHORT_CLIP, RunningServer, run_server, upload

pytestmark = pytest.mark.slow

DEADLINE_S = 2.0
SLACK_S = 1.5


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> RunningServer:
    with run_server(tmp_path_factory.mktemp("header-deadline"), "--header-timeout", str(DEADLINE_S)) as running:
        yield running


def _open(server: RunningServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.settimeout(0.05)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    sock.settimeout(30)
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _trickle(sock: socket.socket, data: bytes, bytes_per_s: float, limit_s: float) -> tuple[bytes, float]:
    """Send `data` at `bytes_per_s` until the server closes; (what it answered, seconds until it closed)."""
    started = time.monotonic()
    received = b""
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        pause_until = time.monotonic() + 1 / bytes_per_s
        closed = False
        while time.monotonic() < pause_until:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            received += chunk
        if closed or time.monotonic() - started > limit_s:
            break
    return received, time.monotonic() - started


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_headers_sent_at_one_byte_a_second_are_cut_with_408(server):
    request = (f"POST /transcribe HTTP/1.1\r\nHost: {server.url[7:]}\r\nContent-Type: audio/wav\r\n"
               "Content-Length: 10\r\n\r\n").encode()
    with _open(server) as sock:
        response, seconds = _trickle(sock, request, 1.0, DEADLINE_S + 10)
    assert seconds <= DEADLINE_S + SLACK_S, seconds
    assert _status(response) == 408, response
    head, _, body = response.partition(b"\r\n\r\n")
    assert json.loads(body)["error"]["code"] == "header_timeout"
    assert "request headers not complete" in server.log()


def test_a_connection_that_sends_nothing_is_closed(server):
    with _open(server) as sock:
        started = time.monotonic()
        assert _read_until_closed(sock) == b""
        assert time.monotonic() - started <= DEADLINE_S + SLACK_S


def test_a_slow_body_after_prompt_headers_is_not_cut(server):
    form = httpx.Request("POST", f"{server.url}/transcribe", files=upload(SHORT_CLIP))
    audio = form.read()
    head = (f"POST /transcribe HTTP/1.1\r\nHost: {server.url[7:]}\r\n"
            f"Content-Type: {form.headers['content-type']}\r\n"
            f"Content-Length: {len(audio)}\r\nConnection: close\r\n\r\n").encode()
    with _open(server) as sock:
        sock.sendall(head)
        pieces = 6
        step = len(audio) // pieces + 1
        for start in range(0, len(audio), step):  # the body takes 3 s: past the header deadline
            sock.sendall(audio[start:start + step])
            time.sleep(0.5)
        response = _read_until_closed(sock)
    assert _status(response) == 200, response[:300]
    assert b"comparatively" in response


def test_kept_alive_connection_gets_the_deadline_for_each_request(server):
    host = server.url[7:]
    with _open(server) as sock:
        sock.settimeout(30)
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        first = b""
        while b'"ok"' not in first:
            first += sock.recv(65536)
        assert _status(first) == 200
        sock.settimeout(0.05)
        response, seconds = _trickle(sock, f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(), 1.0,
                                     DEADLINE_S + 10)
    assert _status(response) == 408 and seconds <= DEADLINE_S + SLACK_S, (response, seconds)


def test_a_websocket_outlives_the_header_deadline(server):
    url = server.url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
    with connect(url, open_timeout=30) as websocket:
        assert json.loads(websocket.recv(timeout=30))["type"] == "session.created"
        time.sleep(DEADLINE_S + 1)
        websocket.send(json.dumps({"type": "no.such.event"}))
        assert json.loads(websocket.recv(timeout=30))["type"] == "error"
