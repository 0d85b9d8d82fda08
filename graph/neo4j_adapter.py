"""Neo4j 5 adapter over the official async driver (bolt://, neo4j://, neo4j+s://)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from neo4j import AsyncGraphDatabase, RoutingControl
from neo4j.exceptions import ConstraintError, ServiceUnavailable

from graph.driver import ConstraintViolation, Cypher, GraphUnavailable, Row, check_statement
from graph.schema_setup import NEO4J_SCHEMA

__all__ = ["Neo4jDriver"]


class Neo4jDriver:
    engine = "neo4j"

    def __init__(self, uri: str, *, auth: tuple[str, str] | None, database: str) -> None:
        self._driver = AsyncGraphDatabase.driver(uri, auth=auth)
        self._database = database
        self.round_trips = 0

    async def _run(
        self, statement: Cypher, params: Mapping[str, Any] | None, routing: RoutingControl
    ) -> list[Row]:
        check_statement(statement)
        self.round_trips += 1
        try:
            # execute_query retries transient failures inside a managed transaction
            result = await self._driver.execute_query(
                statement, dict(params or {}), database_=self._database, routing_=routing
            )
        except ConstraintError as exc:
            raise ConstraintViolation(str(exc)) from exc
        except ServiceUnavailable as exc:
            raise GraphUnavailable(str(exc)) from exc
        return [record.data() for record in result.records]

    async def read(self, statement: Cypher, params: Mapping[str, Any] | None = None) -> list[Row]:
        return await self._run(statement, params, RoutingControl.READ)

    async def write(self, statement: Cypher, params: Mapping[str, Any] | None = None) -> list[Row]:
        return await self._run(statement, params, RoutingControl.WRITE)

    async def ensure_schema(self) -> None:
        for statement in NEO4J_SCHEMA:
            await self.write(statement)

    async def ping(self) -> None:
        try:
            await self._driver.verify_connectivity()
        except ServiceUnavailable as exc:
            raise GraphUnavailable(str(exc)) from exc

    async def close(self) -> None:
        await self._driver.close()
