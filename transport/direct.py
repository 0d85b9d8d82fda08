"""Shared feed frames written straight to each socket's transport by the fan-out (issue 16).

A shared `feedUpdates` subscription (schema/notifications.py's SharedFeed) gets one encoded
payload for every socket of its group. Handing it to each socket's queue costs a task
wake-up and Litestar's and uvicorn's send layers per socket, ~25 us of one core before the
write itself (benchmarks/RESULTS.md): at 10k sockets, more than the whole latency budget.
Under uvicorn's websockets-sansio protocol the fan-out instead frames and writes each
socket's `next` message itself, in one synchronous pass over the group (nothing awaited
between two sockets, so two events cannot interleave). The frame is websockets' own
(`send_text`) when an extension was negotiated (`serve` turns compression off), else
framed here, which is the same bytes in less time.

What uvicorn's `send` does that this does not: wait while the transport's buffer is above
its high-water mark. Instead, a socket whose write buffer already holds more than
REELGRAPH_SUBSCRIPTION_QUEUE_SIZE frames' worth of bytes has a client that is not reading:
it gets nothing more and is closed as slow (1013, transport/sockets.py).
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from websockets.exceptions import InvalidState
from websockets.protocol import State

__all__ = ["DirectSink", "objects_behind_send", "sansio_protocol", "text_frame"]

try:  # the ASGI server the app runs under; under any other the queue path is used
    from uvicorn.protocols.utils import ClientDisconnected
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # pragma: no cover - uvicorn is a dependency
    ClientDisconnected = OSError  # type: ignore[misc, assignment]
    WebSocketsSansIOProtocol = None  # type: ignore[misc, assignment]


def objects_behind_send(websocket: Any) -> Iterator[Any]:
    """What an ASGI websocket's `send` is made of: the framework wraps the server's bound
    method (uvicorn's `protocol.send`) in closures; this walks them, a few levels deep."""
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(getattr(websocket, "send", None), 0)]
    while stack:
        obj, depth = stack.pop()
        if obj is None or id(obj) in seen or depth > 8:
            continue
        seen.add(id(obj))
        yield obj
        stack.append((getattr(obj, "__self__", None), depth + 1))
        stack.append((getattr(obj, "__wrapped__", None), depth + 1))
        for cell in getattr(obj, "__closure__", None) or ():
            with contextlib.suppress(ValueError):  # an empty cell
                stack.append((cell.cell_contents, depth + 1))


def sansio_protocol(websocket: Any) -> Any | None:
    """uvicorn's websockets-sansio connection under this ASGI websocket, once its handshake
    is done; None under any other server or protocol (the in-process test client, wsproto)."""
    if WebSocketsSansIOProtocol is None or websocket is None:
        return None
    for obj in objects_behind_send(websocket):
        if isinstance(obj, WebSocketsSansIOProtocol):
            if obj.handshake_complete and obj.initial_response is None and obj.transport:
                return obj
            return None
    return None


class DirectSink:
    """One shared operation's frames, written by the fan-out without awaiting anything.

    `stopped()` says when nothing more may go out for the operation (the client completed
    it, the socket is closing); `on_slow()` closes a client that does not read;
    `on_fault(error)` answers an unexpected error (logged, then the socket closed)."""

    __slots__ = ("_head", "_on_fault", "_on_slow", "_protocol", "_queue_size", "ended", "stopped")

    frames_written: ClassVar[int] = 0  # by every sink of the process: tests see the path taken

    def __init__(
        self,
        protocol: Any,
        head: str,
        *,
        queue_size: int,
        stopped: Callable[[], bool],
        on_slow: Callable[[], None],
        on_fault: Callable[[BaseException], None],
    ) -> None:
        self._protocol, self._head = protocol, head
        self._queue_size = max(1, queue_size)
        self.stopped, self._on_slow, self._on_fault = stopped, on_slow, on_fault
        self.ended = False  # the operation's task left, or the socket is gone or dropped

    def write(self, payload: str) -> bool:
        """The `next` message carrying payload, framed and handed to the transport; False
        when nothing was written (see the class). Raises nothing: the fan-out goes on to the
        next socket whatever happens to this one."""
        if self.ended:
            return False
        try:
            return self._write(payload)
        except (InvalidState, ClientDisconnected, OSError):  # the client left meanwhile
            self.ended = True
            return False
        except Exception as error:
            self.ended = True  # one log line for this socket, and no more writes to it
            self._on_fault(error)
            return False

    def _write(self, payload: str) -> bool:
        if self.stopped():
            return False
        protocol = self._protocol
        transport = protocol.transport
        if protocol.close_sent or protocol.disconnected or transport.is_closing():
            self.ended = True
            return False
        data = (self._head + payload + "}").encode()
        if transport.get_write_buffer_size() > self._queue_size * len(data):
            self.ended = True
            self._on_slow()
            return False
        conn = protocol.conn
        if conn.extensions or conn.state is not State.OPEN:
            conn.send_text(data)  # InvalidState when the connection is not open
            transport.write(b"".join(conn.data_to_send()))
        else:
            transport.write(text_frame(data))
        DirectSink.frames_written += 1
        return True


def text_frame(data: bytes) -> bytes:
    """One final, unmasked text frame (RFC 6455 section 5.2), as a server sends it when no
    extension was negotiated: the bytes websockets' `send_text` makes, in a fifth of its
    time (measured ~0.4 against ~2 us a frame, out of ~9 us for a whole direct write)."""
    size = len(data)
    if size < 126:
        return bytes((0x81, size)) + data
    if size < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, size) + data
    return struct.pack("!BBQ", 0x81, 127, size) + data
