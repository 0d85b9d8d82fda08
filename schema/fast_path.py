"""A compiled execution plan per query document: the same answers as graphql-core's
interpreter, at a fraction of its cost per field.

graphql-core completes every field of every object through a chain of generic steps (an
info object, a path, awaitable checks, a coroutine and a gather per object with an async
field), and Strawberry wraps each resolver again. For a feed page that is about 180 fields
and 40% of the API's CPU for the page (benchmarks/RESULTS.md, "Less GraphQL per page").
Documents repeat: each one the DocumentGate caches (persisted ones included) is parsed once,
and the same parsed operation comes back. For such an operation schema/plans.py compiles,
once, what graphql-core would collect at each level: for each response key the field
definition, its nodes, its resolver, whether it is a plain attribute read, and the plan of
its selection. Running a plan (schema/plan_runner.py) walks the answer one level at a time:
every resolver of a level is called, the awaitables of the whole level are awaited together
(so DataLoaders still batch), and values are completed in place.

What the plan does is what the interpreter does, decision for decision: the same resolvers
with the same arguments and the same info, leaf values coerced by the same types, the same
"Cannot return null" errors, errors located at the same paths, null propagation to the
nearest nullable position, errors under a nulled position dropped, the keys in document
order. tests/test_fast_path.py compares both on hypothesis-generated documents, and the
suite runs with REELGRAPH_FAST_PATH=verify, where every query the tests send runs both ways
and a difference fails the request.

Anything a plan does not cover runs in the interpreter, unchanged: mutations and
subscriptions, documents with directives (@skip/@include, @defer/@stream), fields of
interface or union type (`node`), introspection beyond `__typename`, abort signals. Errors
from several fields completing in the same level are listed in the order of the level
(the interpreter's order when its resolvers finish in the order they started, as
DataLoader batches do).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLObjectType,
    OperationType,
)
from graphql.execution.executor import CollectedErrors
from strawberry.types import Info

from graph.driver import SHADOW_RUN
from schema.lineage import LeafListExecutionContext
from schema.plan_runner import PlanRun
from schema.plans import Plan, compile_plan

__all__ = ["FastPathExecutionContext", "FastPathMismatch", "compiled_execution_context"]

logger = logging.getLogger("reelgraph.errors")
_PLAN_CACHE_SIZE = 512


class FastPathMismatch(AssertionError):
    """REELGRAPH_FAST_PATH=verify: the plan's answer differs from the interpreter's."""


class FastPathExecutionContext(LeafListExecutionContext):
    """graphql-core's executor, with a compiled plan for the root fields of a query."""

    verify = False
    plans: OrderedDict = OrderedDict()
    info_class: type = Info  # the schema's StrawberryConfig.info_class

    def execute_collected_root_fields(
        self,
        root_type: GraphQLObjectType,
        root_value: Any,
        grouped_field_set: Any,
        serially: bool,
        new_defer_usages: Any,
    ) -> Any:
        plan = None if serially or new_defer_usages else self._plan(root_type, grouped_field_set)
        if plan is None:
            return super().execute_collected_root_fields(
                root_type, root_value, grouped_field_set, serially, new_defer_usages
            )
        if self.verify:
            return self._verified(plan, root_type, root_value, grouped_field_set)
        return PlanRun(self).run(plan, root_value)

    def _plan(self, root_type: GraphQLObjectType, grouped: Any) -> Plan | None:
        operation = self.operation
        if (
            operation.operation is not OperationType.QUERY
            or self.abort_signal is not None
            or not self.error_propagation
            or getattr(self.middleware_manager, "_middleware_resolvers", None) is not None
        ):
            return None
        plans = self.plans
        key = id(operation)
        entry = plans.get(key)
        if entry is not None and entry[0] is operation:
            plans.move_to_end(key)
            return entry[1]
        plan = compile_plan(self, root_type, grouped)
        plans[key] = (operation, plan)  # the operation kept alive: its id stays its own
        while len(plans) > _PLAN_CACHE_SIZE:
            plans.popitem(last=False)
        return plan

    async def _verified(
        self, plan: Plan, root_type: Any, root_value: Any, grouped: Any
    ) -> dict[str, Any]:
        """Both ways, compared; the plan's answer is the one returned. A difference is
        checked once more (data a worker changed between the two runs is no mismatch)."""
        for attempt in (1, 2):
            fast = await self._collect(PlanRun(self).run(plan, root_value))
            slow = await self._collect(self._interpret(root_type, root_value, grouped))
            same = _comparable(fast) == _comparable(slow)
            if same or attempt == 2:
                break
        if not same:
            logger.error(
                "fast path mismatch:\nplan: %r\ninterpreter: %r",
                _comparable(fast), _comparable(slow),
            )  # fmt: skip
            # as a GraphQL error, so the error policy codes it INTERNAL and logs it
            mismatch = FastPathMismatch(
                "the compiled plan and the interpreter answered differently"
            )
            raise GraphQLError(str(mismatch), original_error=mismatch)
        data, errors, root_error = fast
        self.collected_errors._errors.extend(errors)
        if root_error is not None:
            raise root_error
        return data

    async def _interpret(self, root_type: Any, root_value: Any, grouped: Any) -> Any:
        token = SHADOW_RUN.set(True)  # the tasks it makes inherit it: not counted as trips
        try:
            result = super().execute_collected_root_fields(
                root_type, root_value, grouped, False, ()
            )
            if self.is_awaitable(result):
                result = await result
            return result
        finally:
            SHADOW_RUN.reset(token)

    async def _collect(self, run: Any) -> tuple[Any, list, GraphQLError | None]:
        """(data, field errors, the error that nulled the data) of one way of running."""
        saved, self.collected_errors = self.collected_errors, CollectedErrors()
        try:
            try:
                return await run, self.collected_errors.errors, None
            except GraphQLError as error:
                return None, self.collected_errors.errors, error
        finally:
            self.collected_errors = saved


def _comparable(outcome: tuple) -> tuple:
    data, errors, root_error = outcome
    everything = [*errors, *([root_error] if root_error is not None else [])]
    return data, [error.formatted for error in everything]


def compiled_execution_context(mode: str) -> type:
    """The execution context for REELGRAPH_FAST_PATH: "on", "off" or "verify"."""
    if mode == "off":
        return LeafListExecutionContext
    return type(
        "FastPathExecutionContext",
        (FastPathExecutionContext,),
        {"verify": mode == "verify", "plans": OrderedDict()},
    )
