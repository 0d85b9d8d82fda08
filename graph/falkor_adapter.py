"""FalkorDB adapter: the embedded engine (falkordblite) or a FalkorDB server."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aredis
from falkordb.asyncio import FalkorDB
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from graph.driver import (
    SHADOW_RUN,
    ConstraintViolation,
    Cypher,
    GraphTimeouts,
    GraphUnavailable,
    Row,
    check_statement,
)
from graph.schema_setup import FALKOR_INDEXES, FALKOR_UNIQUE
from urls import redis_url_for_falkor

__all__ = ["FalkorDriver", "redis_url_for_falkor"]


def _plain(value: Any) -> Any:
    if isinstance(value, OrderedDict | dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class FalkorDriver:
    engine = "falkordb"

    def __init__(
        self,
        url: str,
        *,
        graph_name: str,
        max_connections: int = 32,
        timeouts: GraphTimeouts | None = None,
    ) -> None:
        self.timeouts = timeouts or GraphTimeouts()
        self._pool = aredis.BlockingConnectionPool.from_url(
            redis_url_for_falkor(url),
            max_connections=max_connections,
            decode_responses=True,
            socket_connect_timeout=self.timeouts.connection_s,
            socket_timeout=self.timeouts.transaction_s,  # a frozen server costs this, no more
            timeout=self.timeouts.acquisition_s,  # waiting for a free connection
        )
        self._db = FalkorDB(connection_pool=self._pool)
        self._graph_name = graph_name
        self._graph = self._db.select_graph(graph_name)
        self.round_trips = 0

    async def _run(
        self, statement: Cypher, params: Mapping[str, Any] | None, *, ro: bool
    ) -> list[Row]:
        check_statement(statement)
        if not SHADOW_RUN.get():
            self.round_trips += 1
        try:
            if ro:
                result = await self._graph.ro_query(statement, dict(params or {}))
            else:
                result = await self._graph.query(statement, dict(params or {}))
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise GraphUnavailable(f"the graph is unavailable: {exc}") from exc
        except ResponseError as exc:
            if "unique constraint" in str(exc).lower():
                raise ConstraintViolation(str(exc)) from exc
            raise
        keys = [column[1] for column in result.header]
        return [dict(zip(keys, map(_plain, row), strict=True)) for row in result.result_set]

    async def read(self, statement: Cypher, params: Mapping[str, Any] | None = None) -> list[Row]:
        return await self._run(statement, params, ro=True)

    async def write(self, statement: Cypher, params: Mapping[str, Any] | None = None) -> list[Row]:
        return await self._run(statement, params, ro=False)

    async def ensure_schema(self) -> None:
        for label, prop in FALKOR_INDEXES:
            try:
                await self._graph.create_node_range_index(label, prop)
            except ResponseError as exc:
                if "already indexed" not in str(exc):
                    raise
        for label, prop in FALKOR_UNIQUE:
            try:  # also creates the range index the constraint needs
                await self._graph.create_node_unique_constraint(label, prop)
            except ResponseError as exc:
                if "already exists" not in str(exc):
                    raise

    async def ping(self) -> None:
        try:
            await aredis.Redis(connection_pool=self._pool).ping()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise GraphUnavailable(f"the graph is unavailable: {exc}") from exc

    async def close(self) -> None:
        await self._pool.aclose()
