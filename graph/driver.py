"""The small driver interface every repository module speaks, and the two engines behind it.

Callers pass a named `Cypher` constant and parameters, and get rows as plain dicts. Statements
return scalars, lists and map projections only (never nodes), so rows look the same on both
engines. Where the engines differ, the difference lives in an adapter, not in callers.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    from settings import Settings

__all__ = [
    "SHADOW_RUN",
    "ConstraintViolation",
    "Cypher",
    "GraphDriver",
    "GraphTimeouts",
    "GraphUnavailable",
    "Row",
    "driver_for",
    "neo4j_uri",
    "open_driver",
]

Row = dict[str, Any]


class Cypher(str):
    """A Cypher statement constant. Only values of this type may be sent to a driver."""

    __slots__ = ()


class ConstraintViolation(Exception):
    """A uniqueness constraint refused a write."""


class GraphUnavailable(Exception):
    """The graph engine could not be reached, refused the configured credentials, or did not
    answer in time. The statement most likely did not run (only a connection lost during
    COMMIT leaves that open); statements are written to be safe to run again."""


@dataclass(frozen=True)
class GraphTimeouts:
    """Seconds: opening a connection, waiting for a free one, and one statement."""

    connection_s: float = 5.0
    acquisition_s: float = 10.0
    transaction_s: float = 30.0


class GraphDriver(Protocol):
    engine: str  # "neo4j" or "falkordb"
    round_trips: int  # statements sent since start; tests count them

    async def read(
        self, statement: Cypher, params: Mapping[str, Any] | None = None
    ) -> list[Row]: ...

    async def write(
        self, statement: Cypher, params: Mapping[str, Any] | None = None
    ) -> list[Row]: ...

    async def ensure_schema(self) -> None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


_TRACE_DIR_ENV = "REELGRAPH_TRACE_STATEMENTS"  # test-suite only: which statements ran

# set while REELGRAPH_FAST_PATH=verify runs a query a second time to compare
# (schema/fast_path.py): its statements are not counted as round trips of the request
SHADOW_RUN: contextvars.ContextVar[bool] = contextvars.ContextVar("shadow_run", default=False)


def trace_statement(statement: Cypher) -> None:
    """Record that a statement was executed (a no-op unless the test suite asks for it)."""
    trace_dir = os.environ.get(_TRACE_DIR_ENV)
    if not trace_dir:
        return
    digest = hashlib.sha1(statement.encode()).hexdigest()
    with open(os.path.join(trace_dir, f"{os.getpid()}.log"), "a") as fh:
        fh.write(digest + "\n")


def check_statement(statement: object) -> Cypher:
    if not isinstance(statement, Cypher):
        raise TypeError("statements must be named Cypher constants from graph/")
    trace_statement(statement)
    return statement


def driver_for(settings: Settings) -> GraphDriver:
    """The driver the settings name (graph URL, FalkorDB graph key, Neo4j database, timeouts)."""
    return open_driver(
        settings.graph_url,
        graph_name=settings.graph_name,
        neo4j_database=settings.neo4j_database,
        timeouts=GraphTimeouts(
            connection_s=settings.graph_connection_timeout_s,
            acquisition_s=settings.graph_acquisition_timeout_s,
            transaction_s=settings.graph_transaction_timeout_s,
        ),
    )


def neo4j_uri(url: str) -> tuple[str, tuple[str, str] | None]:
    """The driver URI and credentials of a bolt/neo4j URL: the user and password move out of
    the URI; the host (IPv6 in brackets), port and query (a routing context) stay as given."""
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    auth = None
    if userinfo:
        user, _, password = userinfo.partition(":")
        auth = (unquote(user), unquote(password))
    uri = urlunsplit((parts.scheme, hostport or "localhost", "", parts.query, ""))
    return uri, auth


def open_driver(
    url: str,
    *,
    graph_name: str,
    neo4j_database: str,
    timeouts: GraphTimeouts | None = None,
) -> GraphDriver:
    """Open a driver for a graph URL: bolt/neo4j(+s) for Neo4j, falkor/falkor+unix for FalkorDB."""
    scheme = urlsplit(url).scheme
    if scheme.startswith(("bolt", "neo4j")):
        from graph.neo4j_adapter import Neo4jDriver

        uri, auth = neo4j_uri(url)
        return Neo4jDriver(uri, auth=auth, database=neo4j_database, timeouts=timeouts)
    if scheme in ("falkor", "falkors", "falkor+unix", "redis", "unix"):
        from graph.falkor_adapter import FalkorDriver

        return FalkorDriver(url, graph_name=graph_name, timeouts=timeouts)
    raise ValueError(
        f"unsupported graph URL {url!r}: use embedded:, bolt://, neo4j://, neo4j+s:// or falkor://"
    )
