"""The GraphQL controller: Strawberry's Litestar integration with our context and policies.

Over HTTP it speaks the GraphQL-over-HTTP spec (graphql-http's audit runs in the suite):
- the response type follows Accept: `application/graphql-response+json` when the client asks
  for it, `application/json` otherwise (and when Accept is missing or `*/*`); 406 when the
  client accepts neither;
- POST bodies must be `application/json` in UTF-8 (415 otherwise) and one JSON object
  (400 otherwise); GET carries queries in its query string, never mutations (405);
- with `application/graphql-response+json`, a request error (parse, validation, variables,
  a document refused before execution) answers 400 without `data`; with `application/json`
  it answers 200 with `data: null`, as clients written before the spec expect;
- every answer carries `X-Request-Id` (the client's, when it sent a sane one); an unexpected
  error is logged with its traceback under that id, and the error carries it too;
- a document may be named by id instead of sent (`extensions.persistedQuery`, `documentId`:
  transport/persisted.py); an unknown id answers PERSISTED_QUERY_NOT_FOUND with 200 whatever
  the response type, as Apollo Server does (its clients then send the text).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

from cross_web import HTTPException
from graphql import GraphQLError
from litestar import Request, Response
from litestar.datastructures import State
from litestar.exceptions import HTTPException as LitestarHTTPException
from litestar.types import Scope
from strawberry.http import GraphQLRequestData
from strawberry.http.parse_content_type import parse_content_type
from strawberry.litestar import make_graphql_controller
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult

from errors import ClientError
from resolvers.context import Context
from schema.extensions import ErrorCodes
from settings import Settings
from transport.persisted import (
    NOT_FOUND_CACHE_CONTROL,
    PersistedDocuments,
    PersistedQueryNotFound,
)
from transport.sockets import SocketPolicy

__all__ = [
    "GRAPHQL_RESPONSE_JSON",
    "JSON",
    "graphql_controller",
    "negotiate",
    "request_id_from",
]

logger = logging.getLogger("reelgraph.errors")

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", []):
        if name == wanted:
            return value.decode("latin-1")
    return None


def request_id_from(header: str | None) -> str:
    """The client's X-Request-Id when it is a sane token, else a new one."""
    if header is not None and _SANE_REQUEST_ID.fullmatch(header.strip()):
        return header.strip()
    return uuid.uuid4().hex


def negotiate(accept: str | None) -> str | None:
    """The response type for an Accept header; None when the client accepts neither of ours.

    The most specific matching range decides each type's quality; on a tie an explicitly
    named `application/graphql-response+json` wins, a wildcard picks `application/json`.
    """
    if accept is None or not accept.strip():
        return JSON
    best: tuple[float, int, bool] | None = None
    chosen = None
    for candidate in (JSON, GRAPHQL_RESPONSE_JSON):
        quality, specificity = _quality(accept, candidate)
        if quality <= 0:
            continue
        key = (quality, specificity, candidate == GRAPHQL_RESPONSE_JSON and specificity == 2)
        if best is None or key > best:
            best, chosen = key, candidate
    return chosen


def _quality(accept: str, media_type: str) -> tuple[float, int]:
    """(q, specificity) of the most specific range in `accept` that covers `media_type`."""
    kind = media_type.split("/")[0]
    found = (0.0, -1)
    for part in accept.split(","):
        range_, *params = (p.strip() for p in part.split(";"))
        range_ = range_.lower()
        specificity = {media_type: 2, f"{kind}/*": 1, "*/*": 0}.get(range_)
        if specificity is None or specificity < found[1]:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        found = (quality, specificity)
    return found


def _error_body(message: str, code: str, request_id: str | None = None) -> bytes:
    extensions: dict[str, Any] = {"code": code}
    if request_id is not None:
        extensions["requestId"] = request_id
    return json.dumps({"errors": [{"message": message, "extensions": extensions}]}).encode()


async def graphql_context(state: State, scope: Scope) -> Context:
    context = await Context.for_request(state.services, _header(scope, b"authorization"))
    context.request_id = request_id_from(_header(scope, b"x-request-id"))
    return context


@dataclass
class RequestData(GraphQLRequestData):
    """A GraphQL request, with the persisted document it may name by `documentId`."""

    document_id: Any = None


def _names_a_document(params: Any) -> bool:
    return any(name in params for name in ("query", "extensions", "documentId"))


def _is_request_error(result: Any) -> bool:
    """Nothing was executed: the document, its variables or the request were refused."""
    errors = getattr(result, "errors", None)
    return bool(errors) and result.data is None and all(e.path is None for e in errors)


class HTTPPolicy:
    """Mixed into the GraphQL controller: what the GraphQL-over-HTTP spec asks of a server."""

    documents: PersistedDocuments = PersistedDocuments()  # graphql_controller sets its own

    async def execute_request(self, request: Request, context: Any, root_value: Any) -> Response:
        request_id = getattr(context, "request_id", None) or request_id_from(None)
        accept = request.headers.get("accept")
        media_type = negotiate(accept)
        request.state.graphql_media_type = media_type or JSON
        try:
            if media_type is None and not self._wants_ide(request):
                raise HTTPException(
                    406,
                    "this endpoint answers application/graphql-response+json or "
                    "application/json: accept one of them",
                )
            response = await self.run(request, context=context, root_value=root_value)
        except HTTPException as exc:
            response = Response(
                _error_body(exc.reason, "BAD_USER_INPUT"),
                status_code=exc.status_code,
                media_type=request.state.graphql_media_type,
            )
            if exc.status_code == 405:
                response.headers["Allow"] = "POST"
        except LitestarHTTPException as exc:  # e.g. 413 for a body over Litestar's limit
            if exc.status_code >= 500:
                raise
            response = Response(
                _error_body(exc.detail, "BAD_USER_INPUT"),
                status_code=exc.status_code,
                media_type=request.state.graphql_media_type,
            )
        except Exception:
            logger.exception("unexpected error in a GraphQL request (request %s)", request_id)
            response = Response(
                _error_body("Internal error", "INTERNAL", request_id),
                status_code=500,
                media_type=request.state.graphql_media_type,
            )
        else:
            if response.media_type == JSON:  # a GraphQL answer, not GraphiQL's page
                response.media_type = request.state.graphql_media_type
                status = getattr(request.state, "graphql_status", None)
                if status is not None:
                    response.status_code = status
                if getattr(request.state, "persisted_not_found", False):
                    response.headers["Cache-Control"] = NOT_FOUND_CACHE_CONTROL
        response.headers["X-Request-Id"] = request_id
        return response

    @staticmethod
    def _wants_ide(request: Request) -> bool:
        return request.method == "GET" and not _names_a_document(request.query_params)

    def should_render_graphql_ide(self, request: Any) -> bool:
        # a GET naming a persisted document by id has no `query`: it is no visit to the IDE
        if _names_a_document(request.query_params):
            return False
        return super().should_render_graphql_ide(request)

    async def process_result(self, request: Request, result: Any) -> dict:
        data = await super().process_result(request, result)
        if request.state.graphql_media_type == GRAPHQL_RESPONSE_JSON and _is_request_error(result):
            codes = {(e.extensions or {}).get("code") for e in result.errors}
            if "PERSISTED_QUERY_NOT_FOUND" not in codes:  # 200, as Apollo Server answers
                request.state.graphql_status = 500 if "INTERNAL" in codes else 400
            data.pop("data", None)
        return data

    async def execute_single(self, *args: Any, **kwargs: Any) -> Any:
        request, data, context = kwargs["request"], kwargs["request_data"], kwargs["context"]
        try:
            resolved = await self.documents.resolve(
                context.services, data.query, data.extensions, getattr(data, "document_id", None)
            )
        except ClientError as exc:
            if isinstance(exc, PersistedQueryNotFound):
                request.state.persisted_not_found = True
            return ExecutionResult(data=None, errors=self._coded(exc, context))
        data.query = resolved.query
        try:
            result = await super().execute_single(*args, **kwargs)
        except HTTPException as exc:
            if isinstance(exc.__cause__, InvalidOperationTypeError):
                method = kwargs["request_adapter"].method
                if method == "GET":
                    raise HTTPException(405, "send mutations with POST") from exc
            raise
        if resolved.register is not None and not _is_request_error(result):
            # it parsed, validated and passed every limit: later requests may name it by hash
            await self.documents.register(context.services.redis, resolved.register, resolved.query)
        return result

    def _coded(self, error: ClientError, context: Any) -> list[GraphQLError]:
        """A refusal of the request, coded as the schema's error policy codes every error."""
        policy = next(
            (
                e
                for e in self.schema.extensions
                if isinstance(e, type) and issubclass(e, ErrorCodes)
            ),
            ErrorCodes,
        )
        return policy.code([GraphQLError(error.message, original_error=error)], context)

    async def parse_http_body(self, request: Any) -> GraphQLRequestData:
        if request.method == "GET":
            data: Any = self.parse_query_params(request.query_params)
        else:
            content_type, params = parse_content_type(request.content_type or "")
            if content_type != JSON:
                raise HTTPException(415, "send the GraphQL request as application/json")
            if params.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
                raise HTTPException(415, "send the GraphQL request in UTF-8")
            body = await request.get_body()
            try:
                data = json.loads(body.decode("utf-8"))
            except UnicodeDecodeError:
                raise HTTPException(400, "the request body is not valid UTF-8") from None
            except (ValueError, RecursionError):
                raise HTTPException(400, "the request body is not valid JSON") from None
        if isinstance(data, list):
            raise HTTPException(400, "batched requests are not supported: send one operation")
        if not isinstance(data, dict):
            raise HTTPException(
                400, 'the request body must be a JSON object such as {"query": "{ viewer { id } }"}'
            )
        query, variables = data.get("query"), data.get("variables")
        operation_name, extensions = data.get("operationName"), data.get("extensions")
        document_id = data.get("documentId")
        if not isinstance(query, str | None):
            raise HTTPException(400, "`query` must be a string")
        if not isinstance(variables, dict | None):
            raise HTTPException(400, "`variables` must be an object")
        if not isinstance(operation_name, str | None):
            raise HTTPException(400, "`operationName` must be a string")
        if not isinstance(extensions, dict | None):
            raise HTTPException(400, "`extensions` must be an object")
        if not isinstance(document_id, str | None):
            raise HTTPException(400, "`documentId` must be a string")
        return RequestData(
            query=query,
            variables=variables,
            operation_name=operation_name,
            extensions=extensions,
            document_id=document_id,
        )

    def parse_query_params(self, params: Any) -> dict[str, Any]:
        try:
            return super().parse_query_params(params)
        except (ValueError, RecursionError):  # JSON in `variables` or `extensions`
            raise HTTPException(400, "`variables` and `extensions` must be JSON objects") from None


def graphql_controller(schema, settings: Settings) -> type:
    production = settings.environment == "production"
    base_controller = make_graphql_controller(
        schema,
        path="/graphql",
        graphql_ide=None if production else "graphiql",
        context_getter=graphql_context,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
    )

    class GraphQLController(HTTPPolicy, SocketPolicy, base_controller):
        # one per app (each API process): the persisted documents it has served, by id
        documents = PersistedDocuments(settings.documents)

    return GraphQLController
