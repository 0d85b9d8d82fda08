"""Neo4j 5 adapter over the official async driver (bolt://, neo4j://, neo4j+s://).

Each statement runs in a managed transaction (`execute_read` / `execute_write`): the driver
retries transient failures (a leader switch, a deadlock, a lost connection) within the
transaction timeout, and a client-side deadline bounds the whole call, so a frozen server
costs a bounded wait, never a hang. Every driver error leaves as GraphUnavailable or
ConstraintViolation; only a statement's own mistakes (syntax, types) stay Neo4j errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from neo4j import (
    READ_ACCESS,
    WRITE_ACCESS,
    AsyncGraphDatabase,
    AsyncManagedTransaction,
    unit_of_work,
)
from neo4j.exceptions import (
    AuthError,
    ConfigurationError,
    ConnectionPoolError,
    ConstraintError,
    Forbidden,
    IncompleteCommit,
    SessionExpired,
    TransientError,
)
from neo4j.exceptions import ClientError as Neo4jClientError
from neo4j.exceptions import ServiceUnavailable as Neo4jServiceUnavailable

from graph.driver import (
    SHADOW_RUN,
    ConstraintViolation,
    Cypher,
    GraphTimeouts,
    GraphUnavailable,
    Row,
    check_statement,
)
from graph.schema_setup import NEO4J_SCHEMA

__all__ = ["Neo4jDriver", "translate_error"]

_DATABASE_NOT_FOUND = "Neo.ClientError.Database.DatabaseNotFound"


def translate_error(exc: BaseException) -> Exception | None:
    """The error callers see for a driver error; None for a statement's own mistake."""
    if isinstance(exc, ConstraintError):
        return ConstraintViolation(str(exc))
    if isinstance(exc, AuthError | Forbidden):
        return GraphUnavailable(f"Neo4j refused the credentials of the graph URL: {exc}")
    if isinstance(exc, Neo4jClientError) and exc.code == _DATABASE_NOT_FOUND:
        return GraphUnavailable(f"no such Neo4j database (REELGRAPH_NEO4J_DATABASE): {exc}")
    if isinstance(exc, IncompleteCommit):
        # the connection broke during COMMIT: the write may or may not have happened
        return GraphUnavailable(f"the graph connection broke while committing: {exc}")
    if isinstance(exc, Neo4jServiceUnavailable | SessionExpired | TransientError):
        # TransientError covers DatabaseUnavailable, NotALeader, deadlocks: retried already
        return GraphUnavailable(f"the graph is unavailable: {exc}")
    if isinstance(exc, ConfigurationError):
        return GraphUnavailable(f"the graph driver is misconfigured: {exc}")
    if isinstance(exc, ConnectionPoolError | OSError):  # no free connection in time, sockets
        return GraphUnavailable(f"the graph connection failed: {exc}")
    return None


async def _collect(
    tx: AsyncManagedTransaction, statement: str, params: dict[str, Any]
) -> list[Row]:
    result = await tx.run(statement, params)
    return await result.data()


class Neo4jDriver:
    engine = "neo4j"

    def __init__(
        self,
        uri: str,
        *,
        auth: tuple[str, str] | None,
        database: str,
        timeouts: GraphTimeouts | None = None,
    ) -> None:
        self.uri = uri
        self.timeouts = timeouts or GraphTimeouts()
        try:
            self._driver = AsyncGraphDatabase.driver(
                uri,
                auth=auth,
                connection_timeout=self.timeouts.connection_s,
                connection_acquisition_timeout=self.timeouts.acquisition_s,
                max_transaction_retry_time=self.timeouts.transaction_s,
            )
        except ConfigurationError as exc:  # e.g. a routing context on a bolt:// URL
            raise ValueError(f"unusable graph URL {uri!r}: {exc}") from None
        self._database = database
        # the server aborts a transaction running longer than this (Neo4j's tx timeout)
        self._work = unit_of_work(timeout=self.timeouts.transaction_s)(_collect)
        # the whole call, waiting for a connection and retries included
        self._deadline_s = self.timeouts.acquisition_s + self.timeouts.transaction_s
        self.round_trips = 0

    async def _run(
        self, statement: Cypher, params: Mapping[str, Any] | None, access_mode: str
    ) -> list[Row]:
        check_statement(statement)
        if not SHADOW_RUN.get():
            self.round_trips += 1
        async with self._bounded():
            # bookmarks as execute_query keeps them: a read sees the writes before it
            async with self._driver.session(
                database=self._database,
                default_access_mode=access_mode,
                bookmark_manager=self._driver.execute_query_bookmark_manager,
            ) as session:
                execute = (
                    session.execute_read if access_mode == READ_ACCESS else session.execute_write
                )
                return await execute(self._work, statement, dict(params or {}))

    @contextlib.asynccontextmanager
    async def _bounded(self) -> AsyncIterator[None]:
        """Within the whole-call deadline, with every driver error translated."""
        try:
            async with asyncio.timeout(self._deadline_s):
                yield
        except TimeoutError:
            raise GraphUnavailable(
                f"the graph did not answer within {self._deadline_s:g} s"
            ) from None
        except Exception as exc:
            translated = translate_error(exc)
            if translated is None:
                raise
            raise translated from exc

    async def read(self, statement: Cypher, params: Mapping[str, Any] | None = None) -> list[Row]:
        return await self._run(statement, params, READ_ACCESS)

    async def write(self, statement: Cypher, params: Mapping[str, Any] | None = None) -> list[Row]:
        return await self._run(statement, params, WRITE_ACCESS)

    async def ensure_schema(self) -> None:
        for statement in NEO4J_SCHEMA:
            await self.write(statement)

    async def ping(self) -> None:
        async with self._bounded():
            await self._driver.verify_connectivity()

    async def close(self) -> None:
        await self._driver.close()
