"""A deadline on reading a request's headers, which uvicorn does not bound (its keep-alive timer is reset
by every byte, so a client sending one byte a second holds a connection and a task forever).

The deadline starts when a connection opens, or when the first byte of a later request on a kept-alive
connection arrives, and ends when the request's headers are parsed (a new request cycle begins) or the
connection becomes a WebSocket. A client that has not sent its headers by then gets `408` and a close
(or only a close when it sent nothing). The body is bounded separately, by the request timeout."""

from __future__ import annotations

import asyncio
import json
import logging

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from ..errors import error_json

log = logging.getLogger(__name__)



def _timeout_response(seconds: float) -> bytes:
    """A whole `408` response with the JSON error body, written straight to the socket."""
    message = f"the request headers did not arrive within {seconds:g} s"
    body = json.dumps({"error": error_json(408, message, "header_timeout", None)}).encode()
    head = (f"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


class HeaderDeadlineProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol (httptools, else h11) with a header-read deadline of `header_timeout_s`."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._bytes_waiting = False
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self._between_requests():
            self._arm()
        self._bytes_waiting = True
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle or self.transport.get_protocol() is not self:
            self._disarm()  # the headers are in: a request started, or the socket became a WebSocket

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._bytes_waiting = False
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self or not self._between_requests():
            return
        if self._bytes_waiting:
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown"
            log.warning("request headers not complete after %g s: connection closed", self.header_timeout_s,
                        extra={"client": client})
            self.transport.write(_timeout_response(self.header_timeout_s))
        self.transport.close()


def header_deadline_protocol(timeout_s: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class to give uvicorn (`Config(http=...)`) for a header deadline of `timeout_s`."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": timeout_s})
