"""A lean graphql-transport-ws client process for benchmarks/ws_fanout.py (`--client lean`).

The default client runs one websockets asyncio connection per socket: each message wakes
that socket's task, is decoded as JSON and counted under a process-shared lock, ~50-100 µs
of the client's CPU per message. With 10,000 sockets and the clients on the server's two
cores, the clients' own time then sets the measured tail. This client keeps each socket as
a bare asyncio Protocol over websockets' sans-I/O ClientProtocol: a frame is stamped the
moment its bytes arrive (in `data_received`, before any parsing), the clip id is found in
the text without decoding the JSON, and counts reach the parent in batches. What it sends
is what the default client sends: the same handshake, `connection_init` with the token, one
`subscribe`, `pong` to each `ping`.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.uri import parse_uri

PROTOCOL = "graphql-transport-ws"
_ID_MARK = b'"feedUpdates":{"id":"'


class _Socket(asyncio.Protocol):
    def __init__(self, client: _Client, n: int, token: str) -> None:
        self.client, self.n, self.token = client, n, token
        self.conn = ClientProtocol(parse_uri(client.url), subprotocols=[PROTOCOL])
        self.transport: Any = None
        self.acked = False
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.conn.send_request(self.conn.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.conn.receive_data(data)
        for event in self.conn.events_received():
            if getattr(event, "opcode", None) is Opcode.TEXT:
                self._text(event.data, now)
            elif hasattr(event, "status_code"):  # the handshake's response
                self._send(
                    {
                        "type": "connection_init",
                        "payload": {"authorization": f"Bearer {self.token}"},
                    }
                )
        self._flush()

    def _text(self, data: bytes, now: float) -> None:
        at = data.find(_ID_MARK)
        if at >= 0:
            start = at + len(_ID_MARK)
            self.client.seen(self.n, data[start : data.index(b'"', start)].decode(), now)
        elif b'"connection_ack"' in data and not self.acked:
            self.acked = True
            self._send({"id": "f", "type": "subscribe", "payload": {"query": self.client.query}})
            self.client.opened_one(self.n)
        elif b'"ping"' in data:
            self.conn.send_text(b'{"type":"pong"}')

    def _send(self, message: dict) -> None:
        self.conn.send_text(json.dumps(message).encode())

    def _flush(self) -> None:
        for chunk in self.conn.data_to_send():
            if chunk:
                self.transport.write(chunk)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


class _Client:
    def __init__(self, url: str, query: str, clip_ids: list[str], index: dict, count: int) -> None:
        self.url, self.query, self.index = url, query, index
        self.times: list[list[float | None]] = [[None] * len(clip_ids) for _ in range(count)]
        self.pending_counts = [0] * len(clip_ids)
        self.pending_opened = 0
        self.counted: set[int] = set()

    def seen(self, n: int, clip: str, now: float) -> None:
        i = self.index.get(clip)
        if i is not None and self.times[n][i] is None:
            self.times[n][i] = now
            self.pending_counts[i] += 1

    def opened_one(self, n: int) -> None:
        if n not in self.counted:  # a socket opened again is not counted twice
            self.counted.add(n)
            self.pending_opened += 1


def lean_client_process(
    url: str,
    tokens: list[str],
    count: int,
    clip_ids: list[str],
    received: Any,
    opened: Any,
    stop: Any,
    results: Any,
    query: str,
) -> None:
    """ws_fanout's client_process, lean: the same arguments, the same results."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    from resolvers.ids import encode_id

    index = {encode_id("Clip", c): i for i, c in enumerate(clip_ids)}
    index.update({c: i for i, c in enumerate(clip_ids)})
    client = _Client(url, query, clip_ids, index, count)
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")

    async def connect(n: int) -> None:
        """One socket, opened again (with backoff) whenever it is refused or dropped, as
        the default client's reconnecting loop does."""
        loop = asyncio.get_running_loop()
        for attempt in range(8):
            try:
                _transport, socket = await loop.create_connection(
                    lambda: _Socket(client, n, tokens[n % len(tokens)]), host, int(port)
                )
            except OSError:
                await asyncio.sleep(0.5 * 2**attempt)
                continue
            await socket.closed  # held until the run ends, or the server drops it
            await asyncio.sleep(0.5 * 2**attempt)

    async def report() -> None:
        """Counts to the parent every few milliseconds, not one lock per message."""
        while True:
            await asyncio.sleep(0.005)
            if client.pending_opened:
                with opened.get_lock():
                    opened.value += client.pending_opened
                client.pending_opened = 0
            if any(client.pending_counts):
                with received.get_lock():
                    for i, k in enumerate(client.pending_counts):
                        if k:
                            received[i] += k
                client.pending_counts = [0] * len(clip_ids)

    async def main() -> None:
        reporter = asyncio.create_task(report())
        connecting = []
        for n in range(count):
            connecting.append(asyncio.create_task(connect(n)))
            if n % 50 == 49:
                await asyncio.sleep(0.1)  # the default client's connect rate
        await asyncio.to_thread(stop.wait)
        reporter.cancel()
        for task in connecting:
            task.cancel()
        await asyncio.gather(*connecting, return_exceptions=True)

    asyncio.run(main())
    results.put(client.times)
