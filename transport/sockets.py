"""graphql-transport-ws policy: frames, authentication, expiry, per-operation context, caps.

Close codes a client can meet, beyond the protocol's own (4401, 4408, 4409):
- 4400: a frame that is not a graphql-transport-ws message (not an object, no string
  `type`, a subscribe without an object payload and a string query, ...), or a document
  that does not parse (one that parses but is refused, say for an unknown operationName,
  gets an `error` message with a contract code instead, and the socket stays open);
- 4403: a bad token at connection_init, or the access token expired while the socket was
  open (a timer per socket closes it at the token's `exp`; each operation is refused too),
  or the token's session (its refresh family) was revoked: checked at connection_init, at
  each operation, and with each renewal of the socket's lease (every third of
  REELGRAPH_SOCKET_LEASE_S), so a socket that only holds subscriptions is closed too
  (a deleted user is not checked: the schema has no deletion yet; when it comes, deleting
  the user's refresh families closes their sockets on this same path);
- 4429: a second connection_init, or too many open sockets for this user (or, without a
  token, for this client address);
- 1013 (try again later): the client does not read its events fast enough. Each
  subscription holds at most REELGRAPH_SUBSCRIPTION_QUEUE_SIZE undelivered events; one more
  and the socket is closed (when the close frame cannot be written within a few seconds,
  because the client reads nothing at all, the connection is dropped). For a shared
  feedUpdates subscription under uvicorn, whose events the fan-out writes straight to the
  socket (transport/direct.py), the undelivered events are the bytes waiting in the
  socket's write buffer: more than that many of its frames' worth, and it is closed the
  same way. The client reconnects and resumes with `notifications(after: <last cursor>)`
  (the feed with its feed query); no other socket waits on it;
- 4500: an unexpected server error, always logged with its traceback.

A subscribe payload may name a persisted document instead of sending its text
(`extensions.persistedQuery` or `documentId`, transport/persisted.py), as over HTTP; one
refused (unknown, a hash that does not match, not trusted under REELGRAPH_DOCUMENTS=trusted)
gets an `error` message with its code, and the socket stays open. Texts are not registered
as automatic persisted queries over the socket (only over HTTP, where the client falls back
to the text): a client that names a document here sends it over HTTP first, or trusts it.

Errors of the operations themselves follow the HTTP error policy (schema/extensions.py's
ErrorCodes and `classify`): a contract code on each, an unexpected one masked in production
as `Internal error` / INTERNAL with its request id, and a log line naming that id with the
traceback; in `next` payloads and in `error` messages alike. Each operation has its own
request id, `<the socket's>:<n>` (the socket's is its upgrade request's, named as over HTTP:
the client's X-Request-Id when it sent a sane one, else a new one; n counts the socket's
operations from 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
import uuid
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError
from litestar.exceptions import WebSocketDisconnect
from redis.asyncio import Redis
from redis.exceptions import RedisError
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
    _OperationStreamClosed,
)
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.utils.aio import aclosing

from auth.addresses import address_subject, client_address
from errors import ClientError, RateLimited, Unauthenticated
from events.bus import on_slow_consumer
from resolvers import notifications as notification_resolvers
from resolvers.context import Context
from schema.extensions import ErrorCodes
from schema.notifications import SharedFeed, shared_feed
from transport.direct import DirectSink, objects_behind_send, sansio_protocol

__all__ = ["SocketPolicy", "SocketSlot", "frame_problem", "socket_count_key"]

logger = logging.getLogger("reelgraph.sockets")

_MAX_REASON_BYTES = 123  # RFC 6455: a close frame's reason must fit in 123 bytes

_KNOWN_TYPES = frozenset({"connection_init", "ping", "pong", "subscribe", "complete"})

# KEYS[1]: a sorted set of one owner's open sockets, scored by when each entry lapses (ms).
# Lapsed entries are sockets of a process that died without saying goodbye: dropped first.
# ARGV: socket id, lease ms, cap. Returns 1 when the socket was counted, 0 at the cap.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# ARGV: socket id, lease ms. Re-adds the entry if it lapsed meanwhile: the socket is open.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


_CLOSE_GRACE_S = 3.0  # for a slow client's close frame to go out


def _transport_of(websocket: Any) -> Any:
    """The asyncio transport under an ASGI websocket, when the server is uvicorn: its
    `send` is a bound method of the connection's protocol, wrapped by the framework in
    closures. None when it cannot be found (another server, the in-process test client)."""
    for obj in objects_behind_send(websocket):
        transport = getattr(obj, "transport", None)
        if transport is not None and callable(getattr(transport, "abort", None)):
            return transport
    return None


def frame_problem(message: object) -> str | None:
    """Why a decoded frame is not a graphql-transport-ws message; None when it is one."""
    if not isinstance(message, dict):
        return "invalid message: not a JSON object"
    kind = message.get("type")
    if not isinstance(kind, str):
        return "invalid message: 'type' must be a string"
    if kind not in _KNOWN_TYPES:
        return f"invalid message: unknown type {kind[:40]!r}"
    payload = message.get("payload")
    if kind in ("subscribe", "complete"):
        op_id = message.get("id")
        if not isinstance(op_id, str) or not op_id:
            return f"invalid message: {kind} needs a string 'id'"
    if kind != "subscribe":
        if payload is not None and not isinstance(payload, dict):
            return f"invalid message: a {kind} payload must be an object"
        return None
    if not isinstance(payload, dict):
        return "invalid message: a subscribe payload must be an object"
    query = payload.get("query")
    if not isinstance(query, str) and not (query is None and _names_a_document(payload)):
        return "invalid message: a subscribe payload needs a string 'query'"
    for name, kinds in (
        ("variables", dict),
        ("extensions", dict),
        ("operationName", str),
        ("documentId", str),
    ):
        value = payload.get(name)
        if value is not None and not isinstance(value, kinds):
            return f"invalid message: '{name}' has the wrong type"
    return None


def _names_a_document(payload: dict) -> bool:
    """A subscribe payload without a query that names a persisted document instead."""
    extensions = payload.get("extensions")
    persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
    return persisted is not None or payload.get("documentId") is not None


def _as_error(error: Exception) -> GraphQLError:
    """An exception as the GraphQL error the error policy judges (as Schema.stream wraps)."""
    if isinstance(error, GraphQLError):
        return error
    return GraphQLError(str(error), original_error=error)


def _reason(text: str) -> str:
    # the text may quote the client (an operation id), lone surrogates included: those
    # become "?" rather than an error while closing
    encoded = text.encode(errors="replace")
    if len(encoded) > _MAX_REASON_BYTES:
        encoded = encoded[: _MAX_REASON_BYTES - 3]
        return encoded.decode(errors="ignore") + "..."
    return encoded.decode()


def socket_count_key(viewer_id: str | None, address: str | None) -> str:
    """The Redis key counting one owner's open sockets: a user, or an anonymous address."""
    if viewer_id is not None:
        return f"reelgraph:sockets:user:{viewer_id}"
    return f"reelgraph:sockets:address:{address or 'unknown'}"


class SocketSlot:
    """One socket's entry in its owner's count of open sockets, shared by every API process.

    The entry lapses unless renewed, so a process that crashes leaks nothing for long.
    """

    def __init__(self, redis: Redis, key: str, lease_s: int) -> None:
        self.redis, self.key = redis, key
        self.id = secrets.token_urlsafe(12)
        self.lease_ms = max(1, lease_s) * 1000
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)

    async def acquire(self, cap: int) -> bool:
        return bool(await self._acquire(keys=[self.key], args=[self.id, self.lease_ms, cap]))

    async def renew(self) -> None:
        await self._renew(keys=[self.key], args=[self.id, self.lease_ms])

    async def release(self) -> None:
        await self.redis.zrem(self.key, self.id)


class PolicedTransportWSHandler(BaseGraphQLTransportWSHandler):
    """Strawberry's graphql-transport-ws handler with this API's rules for sockets."""

    context: Context

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = self.context.services.settings
        self.slot: SocketSlot | None = None
        self.timers: list[asyncio.Task] = []
        # each operation's own context, handed from handle_subscribe to its task
        self.operation_contexts: dict[str, Context] = {}
        self.dropping = False  # closing a slow client: no second close
        self.closing = False  # a close frame was sent (or tried): nothing more goes out
        codes = [e for e in self.schema.extensions if isinstance(e, type)]
        self.error_codes = next((e for e in codes if issubclass(e, ErrorCodes)), ErrorCodes)
        if self.context.request_id is None:
            self.context.request_id = uuid.uuid4().hex
        self.operations_started = 0  # numbers each operation's request id

    async def close(self, code: int, reason: str) -> None:
        self.closing = True
        # the socket may already be gone (the client left, or another close won the race)
        with contextlib.suppress(WebSocketDisconnect, WebSocketDisconnected, RuntimeError):
            await self.websocket.close(code=code, reason=_reason(reason))

    async def handle_message(self, message: Any) -> None:
        problem = frame_problem(message)
        if problem is not None:
            await self.handle_invalid_message(problem)
            return
        try:
            await super().handle_message(message)
        except WebSocketDisconnected:
            raise
        except Exception as error:
            if _socket_gone(error):  # the client left while it was answered
                return
            request_id = self.context.request_id
            logger.exception(
                "unexpected error on a %r message (request %s); closing with 4500",
                message["type"],
                request_id,
            )
            await self.close(4500, f"Internal error (request {request_id})")

    async def handle_invalid_message(self, error_message: str) -> None:
        await self.close(4400, error_message)

    async def handle_connection_init(self, message: Any) -> None:
        if self.connection_timed_out:
            return
        if self.connection_init_timeout_task:
            self.connection_init_timeout_task.cancel()
        if self.connection_init_received:
            await self.close(4429, "Too many initialisation requests")
            return
        self.connection_init_received = True
        self.context.connection_params = message.get("payload") or {}
        try:
            self.context.authenticate_socket()
            await self.context.check_session()
        except Unauthenticated as exc:
            await self.close(4403, f"Forbidden: {exc.message}")
            return
        if not await self._count_socket():
            return
        expires_at = self.context.token_expires_at
        if expires_at is not None:
            self.timers.append(asyncio.create_task(self._close_when_expired(expires_at)))
        await self.send_message({"type": "connection_ack"})
        self.connection_acknowledged = True
        if self.settings.socket_ping_interval_s > 0:
            self.timers.append(asyncio.create_task(self._ping()))

    async def _count_socket(self) -> bool:
        viewer_id = self.context.viewer_id
        socket = self.context.websocket
        # the same client address as the rate limits: forwarded by a trusted proxy, IPv6 per
        # /64, and every unknown one in one shared count
        address = address_subject(
            client_address(socket.scope, self.settings.trusted_proxies) if socket else None
        )
        if viewer_id is not None:
            cap, whose = self.settings.max_sockets_per_user, "this user"
        else:
            cap, whose = self.settings.max_anonymous_sockets_per_address, "this address"
        slot = SocketSlot(
            self.context.services.redis,
            socket_count_key(viewer_id, address),
            self.settings.socket_lease_s,
        )
        if not await slot.acquire(cap):
            await self.close(4429, f"Too many open sockets for {whose} (at most {cap})")
            return False
        self.slot = slot
        self.timers.append(asyncio.create_task(self._renew_slot(slot)))
        return True

    async def _renew_slot(self, slot: SocketSlot) -> None:
        """Keeps the socket counted and, on the same beat, closes it once its session was
        revoked: a socket that only holds subscriptions sends no operation to check, and
        is closed within a third of the lease of the revocation."""
        while True:
            await asyncio.sleep(slot.lease_ms / 3000)
            try:
                await slot.renew()
            except RedisError:  # the next renewal tries again; the entry outlives a blip
                logger.warning("could not renew a socket's entry in %s", slot.key, exc_info=True)
            try:
                await self.context.check_session()
            except Unauthenticated as exc:
                await self.close(4403, f"Forbidden: {exc.message}")
                return

    async def _close_when_expired(self, expires_at: int) -> None:
        await asyncio.sleep(max(0.0, expires_at - time.time()))
        await self.close(4403, "Forbidden: the access token has expired; reconnect with a new one")

    async def _ping(self) -> None:
        """graphql-transport-ws keep-alive: a ping every interval (clients answer pong), so
        proxies keep an idle socket open; uvicorn's own WebSocket pings find dead peers."""
        while True:
            await asyncio.sleep(self.settings.socket_ping_interval_s)
            try:
                await self.send_message({"type": "ping"})
            except (WebSocketDisconnect, WebSocketDisconnected, RuntimeError, OSError):
                return

    def slow_client(self) -> None:
        """A subscription's queue overflowed: close the socket (see the module's 1013)."""
        if self.dropping:
            return
        self.dropping = True
        logger.warning("closing a socket whose client does not read its events (1013)")
        self.timers.append(asyncio.create_task(self._drop_slow_client()))

    async def _drop_slow_client(self) -> None:
        reason = "the client does not read its events fast enough; reconnect with after"
        try:
            await asyncio.wait_for(self.close(1013, reason), _CLOSE_GRACE_S)
        except TimeoutError:
            # not even the close frame goes out: the client reads nothing. Drop the TCP
            # connection, so the blocked sends end and the socket's slot is given back
            transport = _transport_of(self.context.websocket)
            if transport is not None:
                transport.abort()
            else:
                logger.warning("could not drop a socket whose client reads nothing")

    async def handle_subscribe(self, message: Any) -> None:
        if not self.connection_acknowledged:
            await self.close(4401, "Unauthorized")
            return
        if message["id"] in self.operations:
            await self.close(4409, f"Subscriber for {message['id']} already exists")
            return
        cap = self.settings.max_operations_per_socket
        if len(self.operations) >= cap:
            # the socket stays open: the client may send it again once one of its operations
            # has completed
            limited = RateLimited(
                f"at most {cap} operations may be in flight on one socket", retry_after_seconds=1
            )
            [error] = self.error_codes.code([_as_error(limited)], self.context)
            await self.send_message(
                {"id": message["id"], "type": "error", "payload": [error.formatted]}
            )
            return
        try:
            # belt and braces beside the expiry timer and the lease's session check: no
            # operation runs on an expired token or a revoked session
            context = await self.context.for_socket_operation()
        except Unauthenticated as exc:
            await self.close(4403, f"Forbidden: {exc.message}")
            return
        payload = message["payload"]
        try:
            resolved = await self.view.documents.resolve(
                context.services,
                payload.get("query"),
                payload.get("extensions"),
                payload.get("documentId"),
            )
        except ClientError as exc:
            [error] = self.error_codes.code([_as_error(exc)], context)
            await self.send_message(
                {"id": message["id"], "type": "error", "payload": [error.formatted]}
            )
            return
        payload["query"] = resolved.query
        # named apart like an HTTP request, and after its socket
        self.operations_started += 1
        context.request_id = f"{self.context.request_id}:{self.operations_started}"
        self.operation_contexts[message["id"]] = context
        # the operation's task is made inside, and keeps this value: its listeners call it
        token = on_slow_consumer.set(self.slow_client)
        try:
            await super().handle_subscribe(message)
        finally:
            on_slow_consumer.reset(token)

    async def run_operation(self, operation: Operation) -> None:
        """strawberry 0.341's run_operation, run with the operation's own context; a fault
        that escapes it is answered by the error policy in an `error` message."""
        context = self.operation_contexts.pop(operation.id)
        try:
            shared = shared_feed(
                self.schema._schema,
                operation.query,
                operation.variables,
                operation.operation_name,
                context,
                self.error_codes.code,
            )
            if shared is not None:
                await self._send_shared(operation, shared, context)
            else:
                result_source = await self.schema.stream(
                    operation.query,
                    variable_values=operation.variables,
                    context_value=context,
                    root_value=self.root_value,
                    operation_name=operation.operation_name,
                )
                async with aclosing(result_source):
                    await self._send_results(operation, result_source, context)
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except _OperationStreamClosed:
            return
        except WebSocketDisconnected:
            self.operations.pop(operation.id, None)  # the client left: nobody to tell
        except Exception as error:
            if self.dropping or self.closing or _socket_gone(error):
                # the socket is closing (a slow client: logged once, in slow_client) or the
                # client left; its operations ending now, or failing to send, is no fault to
                # log one by one
                self.operations.pop(operation.id, None)
                return
            # coded, masked and logged under the operation's request id, as over HTTP; the
            # `error` message ends the operation (no `complete` after it)
            errors = self.error_codes.code([_as_error(error)], context)
            with contextlib.suppress(Exception):
                await operation.send_initial_errors(errors)
            self.operations.pop(operation.id, None)

    async def _send_shared(
        self, operation: Operation, shared: SharedFeed, context: Context
    ) -> None:
        """A shared feedUpdates: each event's payload comes encoded (made once for every
        socket of the group); only this operation's id is written around it. Under uvicorn's
        websockets-sansio protocol the fan-out writes it to the socket itself (a DirectSink,
        transport/direct.py) and this task only holds the subscription until it ends;
        otherwise (another server, the in-process test client) the payloads come here."""
        head = '{"id":' + json.dumps(operation.id) + ',"type":"next","payload":'
        sink = self._direct_sink(operation, head, context)
        source = notification_resolvers.shared_feed_payloads(context, shared, sink)
        try:
            await self._relay_shared(operation, source, head, context)
        finally:
            if sink is not None:  # a fan-out already running writes nothing more for it
                sink.ended = True

    def _direct_sink(self, operation: Operation, head: str, context: Context) -> DirectSink | None:
        protocol = sansio_protocol(self.context.websocket)
        if protocol is None:
            return None

        def stopped() -> bool:
            # the client's `complete` takes the operation out of `operations` at once (its
            # task is cancelled, and leaves the hub a moment later); an id used again names
            # another operation
            return (
                self.closing
                or self.dropping
                or operation.completed
                or self.operations.get(operation.id) is not operation
            )

        def on_fault(error: BaseException) -> None:
            request_id = context.request_id
            logger.error(
                "could not write an event to a socket (request %s); closing with 4500",
                request_id,
                exc_info=error,
            )
            self.closing = True
            close = self.close(4500, f"Internal error (request {request_id})")
            self.timers.append(asyncio.create_task(close))

        return DirectSink(
            protocol,
            head,
            queue_size=self.settings.subscription_queue_size,
            stopped=stopped,
            on_slow=self.slow_client,
            on_fault=on_fault,
        )

    async def _relay_shared(
        self, operation: Operation, source: Any, head: str, context: Context
    ) -> None:
        async with aclosing(source):
            while True:
                try:
                    payload = await anext(source)
                except StopAsyncIteration:
                    return
                except Exception as error:
                    # as Schema.stream answers a fault of a subscription's source: a `next`
                    # without data, its error coded, then `complete`
                    errors = self.error_codes.code([_as_error(error)], context)
                    await operation.send_next(ExecutionResult(data=None, errors=errors))
                    return
                if operation.completed:
                    return
                await self._send_text(head + payload + "}")

    async def _send_text(self, text: str) -> None:
        """One text frame as it is (the adapter would decode and encode it again)."""
        ws = getattr(self.websocket, "ws", None)
        if ws is None or not callable(getattr(ws, "send_data", None)):
            await self.send_message(json.loads(text))
            return
        try:
            await ws.send_data(data=text)
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc

    async def _send_results(self, operation: Operation, results: Any, context: Context) -> None:
        """strawberry 0.341's _send_result_stream. Every result schema.stream yields was
        coded by the ErrorCodes extension (its on_stream_result) already."""
        first = True
        async for result in results:
            if first and isinstance(result, PreExecutionError):
                assert result.errors
                if isinstance(result.errors[0], GraphQLSyntaxError):
                    # as strawberry does: a document that does not parse closes the socket
                    await self.close(4400, result.errors[0].message)
                    self.operations.pop(operation.id, None)
                    raise _OperationStreamClosed
                await operation.send_initial_errors(result.errors)
                return
            if not isinstance(result, ExecutionResult):  # @defer / @stream
                refused = GraphQLError(
                    "incremental delivery (@defer, @stream) is not supported over websockets"
                )
                await operation.send_initial_errors(self.error_codes.code([refused], context))
                return
            await operation.send_next(result)
            first = False

    async def shutdown(self) -> None:
        for timer in self.timers:
            timer.cancel()
        for timer in self.timers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await timer
        try:
            await super().shutdown()
        finally:
            if self.slot is not None:
                try:
                    await self.slot.release()
                except RedisError:  # the entry lapses on its own after the lease
                    logger.warning("could not release a socket's entry", exc_info=True)


class SocketPolicy:
    """Mixed into the GraphQL controller: what a websocket may do, and for how long."""

    graphql_transport_ws_handler_class = PolicedTransportWSHandler
    # the handler applies REELGRAPH_MAX_OPERATIONS_PER_SOCKET with a contract code instead
    max_subscriptions_per_connection = None


def _socket_gone(error: BaseException) -> bool:
    """A send the ASGI server refused because the socket is gone: closed by a close this
    process sent (whichever code path sent it), or by the client (the ASGI spec has the
    server raise an OSError subclass of its own for a send on a connection the client
    closed: uvicorn's ClientDisconnected). Nobody is left to tell. Any other OSError (a file,
    a connection of the app's own) is a fault, and goes through the error policy."""
    if isinstance(error, _CLIENT_DISCONNECTED):
        return True
    return isinstance(error, RuntimeError) and "after sending 'websocket.close'" in str(error)


try:  # the ASGI server the app runs under; another one raises its own OSError subclass
    from uvicorn.protocols.utils import ClientDisconnected as _UvicornClientDisconnected

    _CLIENT_DISCONNECTED: tuple[type[BaseException], ...] = (_UvicornClientDisconnected,)
except ImportError:  # pragma: no cover - uvicorn is a dependency
    _CLIENT_DISCONNECTED = ()
