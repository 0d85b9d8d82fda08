"""Per-user mutation limits: a document's mutation fields are counted before any runs."""

from __future__ import annotations

from collections.abc import AsyncIterator

from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from auth.rate_limits import RateLimits
from errors import RateLimited

__all__ = ["MutationRateLimit", "mutation_field_count"]


def mutation_field_count(document, operation_name: str | None) -> int:
    """Root fields of the operation that will run (aliases and fragments count each)."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }

    def count(selection_set: SelectionSetNode, seen: frozenset[str]) -> int:
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += selection.name.value != "__typename"
            elif isinstance(selection, InlineFragmentNode):
                total += count(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in fragments and name not in seen:  # cycles fail validation anyway
                    total += count(fragments[name].selection_set, seen | {name})
        return total

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            operation_name is None or (definition.name and definition.name.value == operation_name)
        ):
            return count(definition.selection_set, frozenset())
    return 0


class MutationRateLimit(SchemaExtension):
    """A signed-in user's mutations share one allowance across every API process (Redis).
    A document over it is refused whole, so none of its mutations runs."""

    async def on_execute(self) -> AsyncIterator[None]:
        ec = self.execution_context
        ctx = ec.context
        viewer_id = getattr(ctx, "viewer_id", None)
        if (
            ec.result is None
            and ec.graphql_document is not None
            and viewer_id is not None
            and getattr(ctx, "auth_error", None) is None
            and ec.operation_type == OperationType.MUTATION
        ):
            fields = mutation_field_count(ec.graphql_document, ec.operation_name)
            try:
                await RateLimits(ctx.services.redis, ctx.settings).mutations(viewer_id, fields)
            except RateLimited as exc:
                ec.result = ExecutionResult(
                    data=None, errors=[GraphQLError(exc.message, original_error=exc)]
                )
        yield
