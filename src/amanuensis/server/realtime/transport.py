"""The WebSocket connection under uvicorn, with the two limits a realtime client must not get past.

- Message size: a message over `MAX_MESSAGE_BYTES` is not read (the server would have to hold it
  whole); the client gets the `error` event for an oversized append (`append_too_large` on `audio`),
  then the close code 1009 (message too big). Under that size an oversized append is answered by the
  session (protocol.py) and the session goes on.
- A peer that takes no bytes: when the server has more bytes for a client than the socket takes
  (uvicorn's write buffer over its high-water mark) for `send_timeout_s` seconds, the connection is
  dropped (TCP reset), so its buffers are freed even if the client never reads again. The session
  itself finds out the same way (outbox.py) and has by then released its slot.

`websocket_protocol(send_timeout_s)` is the protocol class handed to uvicorn (`ws=`), with
`ws_max_size=MAX_MESSAGE_BYTES`.
"""

from __future__ import annotations

import asyncio
import json
import logging

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import CloseCode
from websockets.protocol import State
from websockets.server import ServerProtocol

from .protocol import MAX_MESSAGE_BYTES, ProtocolError, error_event

log = logging.getLogger(__name__)


class _Connection(ServerProtocol):
    """websockets' server side, but a message over the size limit is answered with the realtime `error`
    event just before the close (1009) that ends the connection."""

    def fail(self, code: int, reason: str = "") -> None:
        if code == CloseCode.MESSAGE_TOO_BIG and self.state is State.OPEN:
            error = ProtocolError(f"the message is larger than {MAX_MESSAGE_BYTES} bytes, the most this server "
                                  "reads; the connection is closed (1009)", "audio", "append_too_large")
            self.send_text(json.dumps(error_event(error)).encode())
        super().fail(code, reason)


class RealtimeWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol with the oversized-message `error` and the stalled-peer deadline."""

    send_timeout_s = 10.0

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _Connection(extensions=self.conn.available_extensions, max_size=self.conn.max_size,
                                logger=self.conn.logger)
        self._stall_timer: asyncio.TimerHandle | None = None

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_later(self.send_timeout_s, self._drop_stalled)

    def resume_writing(self) -> None:
        self._cancel_stall_timer()
        super().resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_stall_timer()
        super().connection_lost(exc)

    def _cancel_stall_timer(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _drop_stalled(self) -> None:
        self._stall_timer = None
        if not self.transport.is_closing() or self.transport.get_write_buffer_size():
            log.warning("WebSocket client %s took no bytes for %g s: connection dropped", self.client,
                        self.send_timeout_s)
            self.transport.abort()


def websocket_protocol(send_timeout_s: float) -> type[RealtimeWebSocketProtocol]:
    """The protocol class for uvicorn's `ws=`, dropping peers that take no bytes for `send_timeout_s`."""
    return type("RealtimeWebSocketProtocol", (RealtimeWebSocketProtocol,), {"send_timeout_s": send_timeout_s})
