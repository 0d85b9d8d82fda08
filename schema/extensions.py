"""Schema extensions: query limits and the error policy (contract codes, masking)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    get_named_type,
    value_from_ast_untyped,
)
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)

from errors import BadUserInput, ClientError

__all__ = ["ErrorCodes", "MaxNodes", "RejectBadTokens", "limit_extensions"]

logger = logging.getLogger("reelgraph.errors")
DEFAULT_PAGE, MAX_PAGE = 20, 100  # the contract's connection defaults
INTERNAL_MESSAGE = "Internal error"


def limit_extensions(max_depth: int, max_aliases: int, max_tokens: int) -> list:
    return [
        QueryDepthLimiter(max_depth=max_depth),
        MaxAliasesLimiter(max_alias_count=max_aliases),  # counts through fragments too
        MaxTokensLimiter(max_token_count=max_tokens),
    ]


def _with_code(error: GraphQLError, code: str, message: str | None = None) -> GraphQLError:
    return GraphQLError(
        message if message is not None else error.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions={**(error.extensions or {}), "code": code},
    )


def classify(error: GraphQLError, mask: bool) -> GraphQLError:
    """Every error leaves with a contract code; unexpected ones are masked in production."""
    original = error.original_error
    if isinstance(original, ClientError):
        return _with_code(error, original.code, original.message)
    if original is None:
        # the document itself was refused: syntax, validation, limits, variable coercion
        return _with_code(error, (error.extensions or {}).get("code", "BAD_USER_INPUT"))
    if isinstance(original, GraphQLError) and original.original_error is None:
        return _with_code(error, "BAD_USER_INPUT")
    logger.error("unexpected error in %s", error.path, exc_info=original)
    return _with_code(error, "INTERNAL", INTERNAL_MESSAGE if mask else None)


class ErrorCodes(SchemaExtension):
    mask = True

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and getattr(result, "errors", None):
            result.errors = [classify(error, self.mask) for error in result.errors]
        elif self.execution_context.pre_execution_errors:
            self.execution_context.pre_execution_errors = [
                classify(error, self.mask) for error in self.execution_context.pre_execution_errors
            ]


class RejectBadTokens(SchemaExtension):
    """A bad access token fails the operation: never a silent fall-back to anonymous.

    Only the fields that hand out tokens still run, so a client whose access token expired
    can refresh it without first dropping the stale header.
    """

    TOKEN_FIELDS = frozenset({"signUp", "logIn", "refreshToken", "__typename"})

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context.context
        error = getattr(ctx, "auth_error", None)
        if error is not None and not self._only_token_fields():
            self.execution_context.result = ExecutionResult(
                data=None, errors=[GraphQLError(error.message, original_error=error)]
            )
        yield

    def _only_token_fields(self) -> bool:
        document = self.execution_context.graphql_document
        name = self.execution_context.operation_name
        for definition in document.definitions if document else ():
            if isinstance(definition, OperationDefinitionNode) and (
                name is None or (definition.name and definition.name.value == name)
            ):
                selections = definition.selection_set.selections
                return all(
                    isinstance(s, FieldNode) and s.name.value in self.TOKEN_FIELDS
                    for s in selections
                )
        return False


class MaxNodes(SchemaExtension):
    """Bounds what one document can fetch before anything runs: along each path, the page
    sizes of nested connections multiply; the document's total must stay under max_nodes."""

    max_nodes = 10_000

    def on_execute(self) -> Iterator[None]:
        ec = self.execution_context
        document = ec.graphql_document
        if ec.result is None and document is not None:
            schema = ec.schema._schema
            fragments = {
                d.name.value: d
                for d in document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            cost = 0
            for op in document.definitions:
                if isinstance(op, OperationDefinitionNode) and (
                    ec.operation_name is None or (op.name and op.name.value == ec.operation_name)
                ):
                    root = schema.get_root_type(op.operation)
                    walk = _CostWalk(schema, fragments, ec.variables or {})
                    cost += walk.cost(op.selection_set, root, 1)
            if cost > self.max_nodes:
                error = BadUserInput(
                    f"this query could fetch {cost} nodes; the limit is {self.max_nodes}: "
                    "ask for smaller pages or fewer nested lists"
                )
                ec.result = ExecutionResult(
                    data=None, errors=[GraphQLError(error.message, original_error=error)]
                )
        yield


class _CostWalk:
    def __init__(self, schema, fragments: dict, variables: dict) -> None:
        self.schema, self.fragments, self.variables = schema, fragments, variables

    def cost(self, selection_set, parent, multiplier: int) -> int:
        total = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FragmentSpreadNode | InlineFragmentNode):
                fragment = (
                    self.fragments.get(selection.name.value)
                    if isinstance(selection, FragmentSpreadNode)
                    else selection
                )
                if fragment is None:
                    continue
                condition = fragment.type_condition
                inner_parent = self.schema.get_type(condition.name.value) if condition else parent
                total += self.cost(fragment.selection_set, inner_parent, multiplier)
                continue
            definition = getattr(parent, "fields", {}).get(selection.name.value)
            if definition is None:
                continue
            inner = multiplier
            if "first" in definition.args:  # a connection: one page of nodes per parent
                inner = multiplier * self._first(selection)
                total += inner
            total += self.cost(selection.selection_set, get_named_type(definition.type), inner)
        return total

    def _first(self, field: FieldNode) -> int:
        for argument in field.arguments or ():
            if argument.name.value == "first":
                value = value_from_ast_untyped(argument.value, self.variables)
                if isinstance(value, int):
                    return min(max(value, 0), MAX_PAGE)
        return DEFAULT_PAGE


def error_extension(mask: bool) -> type[ErrorCodes]:
    return type("ErrorCodes", (ErrorCodes,), {"mask": mask})
