"""A compiled execution plan per query document: the same answers as graphql-core's
interpreter, at a fraction of its cost per field.

graphql-core completes every field of every object through a chain of generic steps (an
info object, a path, awaitable checks, a coroutine and a gather per object with an async
field), and Strawberry wraps each resolver again. For a feed page that is about 180 fields
and half the page's CPU (benchmarks/RESULTS.md, "Less GraphQL per page"). Documents repeat:
each one the DocumentGate caches (persisted ones included) is parsed once, and the same
parsed operation comes back. For such an operation this module compiles, once, what
graphql-core would collect at each level: for each response key the field definition, its
nodes, its resolver, whether it is a plain attribute read, and the plan of its selection.
Executing a plan walks the answer one level at a time: every resolver of a level is called,
the awaitables of the whole level are gathered at once (so DataLoaders still batch), and
values are completed in place.

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

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from graphql import (
    DirectiveNode,
    GraphQLBoolean,
    GraphQLError,
    GraphQLID,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLString,
    OperationType,
    Visitor,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
    located_error,
    visit,
)
from graphql.execution.collect_fields import collect_subfields
from graphql.execution.executor import CollectedErrors, invalid_return_type_error
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path, Undefined, is_iterable
from graphql.type.scalars import GRAPHQL_MAX_INT, GRAPHQL_MIN_INT
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types import Info

from graph.driver import SHADOW_RUN
from schema.lineage import LeafListExecutionContext

__all__ = ["FastPathExecutionContext", "FastPathMismatch", "compiled_execution_context"]

logger = logging.getLogger("reelgraph.errors")
_DEFINITION = GraphQLCoreConverter.DEFINITION_BACKREF
_PLAN_CACHE_SIZE = 512


class FastPathMismatch(AssertionError):
    """REELGRAPH_FAST_PATH=verify: the plan's answer differs from the interpreter's."""


class _NotCompilable(Exception):
    pass


class _Field:
    """One response key of a selection: everything the interpreter works out per item."""

    __slots__ = (
        "args",
        "basic",
        "definition",
        "details",
        "direct",
        "has_args",
        "item_plan",
        "key",
        "name",
        "nodes",
        "parent_type",
        "resolve",
        "return_type",
        "typename",
    )

    def __init__(self, key: str, details: Any, parent_type: GraphQLObjectType) -> None:
        self.key, self.details, self.parent_type = key, details, parent_type
        self.nodes = [d.node for d in details]
        self.name = self.nodes[0].name.value
        self.typename = self.name == "__typename"
        self.item_plan: _Plan | None = None
        self.args: Any = None
        self.direct: _Direct | None = None


class _Direct:
    """How Strawberry calls a resolver that takes no GraphQL arguments and has no field
    extensions (schema_converter's `get_arguments` then `field.get_result`), done here
    without its wrappers: the source as `self`, `root` or `parent`, its Info as `info`."""

    __slots__ = ("field", "func", "info_name", "pass_self", "source_names")

    def __init__(self, strawberry_field: Any) -> None:
        resolver = strawberry_field.base_resolver
        self.field, self.func = strawberry_field, resolver.wrapped_func
        self.pass_self = resolver.self_parameter is not None
        self.source_names = tuple(
            p.name for p in (resolver.parent_parameter, resolver.root_parameter) if p is not None
        )
        self.info_name = resolver.info_parameter.name if resolver.info_parameter else None

    def call(self, source: Any, raw_info: Any, info_class: type) -> Any:
        kwargs = dict.fromkeys(self.source_names, source)
        if self.info_name is not None:
            kwargs[self.info_name] = info_class(_raw_info=raw_info, _field=self.field)
        if self.pass_self:
            return self.func(source, **kwargs)
        return self.func(**kwargs)


class _Plan:
    """The fields of one object type's selection, in document order."""

    __slots__ = ("fields", "type")

    def __init__(self, object_type: GraphQLObjectType, fields: list[_Field]) -> None:
        self.type, self.fields = object_type, fields


def _has_directives(operation: Any, fragments: dict) -> bool:
    found = []

    class _Find(Visitor):
        def enter_directive(self, node: DirectiveNode, *_: Any) -> Any:
            found.append(node)
            return Visitor.BREAK

    visit(operation, _Find())
    for details in fragments.values():
        if not found:
            visit(details.definition, _Find())
    return bool(found)


def _named_object(field_type: Any) -> GraphQLObjectType | None:
    """The object type under NonNull and List wrappers; None for a leaf; refuses the rest."""
    while isinstance(field_type, GraphQLNonNull | GraphQLList):
        field_type = field_type.of_type
    if is_leaf_type(field_type):
        return None
    if is_object_type(field_type):
        return field_type
    raise _NotCompilable  # an interface or a union: the interpreter resolves its type


class _Compiler:
    def __init__(self, executor: Any) -> None:
        self.executor = executor
        strawberry_schema = getattr(executor.schema, "_strawberry_schema", None)
        self.converter = getattr(strawberry_schema, "schema_converter", None)

    def handlers(self, strawberry_field: Any) -> bool:
        """Whether Strawberry would run exception handlers around this field's resolver
        (then its own wrapper calls it, not _Direct)."""
        find = getattr(self.converter, "_get_field_exception_handlers", None)
        return find is None or bool(find(strawberry_field))

    def plan(self, object_type: GraphQLObjectType, grouped: dict, depth: int = 0) -> _Plan:
        schema = self.executor.schema
        fields = []
        for key, details in grouped.items():
            if any(d.fragment_variable_values is not None for d in details):
                raise _NotCompilable
            field = _Field(key, details, object_type)
            if not field.typename:
                if field.name.startswith("__"):
                    raise _NotCompilable  # __schema / __type
                definition = schema.get_field(object_type, field.name)
                if definition is None:
                    raise _NotCompilable
                field.definition, field.return_type = definition, definition.type
                field.resolve = definition.resolve or self.executor.field_resolver
                strawberry_field = (definition.extensions or {}).get(_DEFINITION)
                basic = bool(
                    strawberry_field is not None
                    and strawberry_field.is_basic_field
                    and getattr(field.resolve, "_is_default", False)
                )
                # a plain attribute: what Strawberry's basic-field resolver reads, read here
                field.basic = (
                    (strawberry_field.default_resolver, strawberry_field.python_name)
                    if basic
                    else None
                )
                node = field.nodes[0]
                field.has_args = bool(definition.args or node.arguments)
                if (
                    strawberry_field is not None
                    and not self.handlers(strawberry_field)
                    and strawberry_field.base_resolver is not None
                    and not strawberry_field.extensions
                    and not field.has_args
                    and callable(strawberry_field.base_resolver.wrapped_func)
                ):
                    field.direct = _Direct(strawberry_field)
                inner = _named_object(definition.type)
                if inner is not None:
                    collected = collect_subfields(
                        schema,
                        self.executor.fragments,
                        self.executor.variable_values,
                        self.executor.operation,
                        inner,
                        details,
                        self.executor.hide_suggestions,
                    )
                    grouped_inner, defers, _forbidden = collected
                    if defers:
                        raise _NotCompilable
                    field.item_plan = self.plan(inner, grouped_inner, depth + 1)
            fields.append(field)
        return _Plan(object_type, fields)


class _Slot:
    """Where a completed object or list sits: nulled as a whole by a non-null error below."""

    __slots__ = ("container", "key", "nullable", "nulled", "parent", "path")

    def __init__(
        self, container: Any, key: Any, nullable: bool, path: Path | None, parent: _Slot | None
    ) -> None:
        self.container, self.key, self.nullable = container, key, nullable
        self.path, self.parent, self.nulled = path, parent, False

    def dead(self) -> bool:
        slot: _Slot | None = self
        while slot is not None:
            if slot.nulled:
                return True
            slot = slot.parent
        return False


_SKIP = object()  # a position already nulled by an error below it: nothing to store


async def _drained(source: Any) -> list:
    return [item async for item in source]


async def _completed_in_order(awaitables: list) -> list[tuple[int, Any]]:
    """Each awaitable's outcome (its value, or the exception it raised) in the order they
    finished: the order the interpreter's wrappers record errors in."""
    order: list[int] = []
    tasks = []
    for index, awaitable in enumerate(awaitables):
        task = asyncio.ensure_future(awaitable)
        task.add_done_callback(lambda _task, index=index: order.append(index))
        tasks.append(task)
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        raise
    outcomes = []
    for index in order:
        task = tasks[index]
        if task.cancelled():
            raise asyncio.CancelledError
        error = task.exception()
        if error is not None and not isinstance(error, Exception):
            raise error
        outcomes.append((index, error if error is not None else task.result()))
    return outcomes


def _unchanged_by(leaf_type: Any, value: Any) -> bool:
    """Whether coercing value to this built-in scalar returns it as it is (graphql-core's
    serializers do for these exact types), so the call can be skipped."""
    kind = type(value)
    if kind is str:
        return leaf_type is GraphQLString or leaf_type is GraphQLID
    if kind is int:
        return leaf_type is GraphQLInt and GRAPHQL_MIN_INT <= value <= GRAPHQL_MAX_INT
    if kind is bool:
        return leaf_type is GraphQLBoolean
    return False


def _abandon(pending: list) -> None:
    """Awaitables nobody will await: closed, so none warns that it never ran."""
    for awaitable, _complete in pending:
        close = getattr(awaitable, "close", None) or getattr(awaitable, "cancel", None)
        if close is not None:
            close()


class _Run:
    """One execution of a plan."""

    def __init__(self, executor: Any) -> None:
        self.ex = executor  # its collected_errors are read when an error comes (verify swaps them)
        self.args: dict[int, Any] = {}
        self.is_awaitable = executor.is_awaitable
        self.root_error: GraphQLError | None = None
        self.info_class = executor.info_class

    async def run(self, plan: _Plan, root_value: Any) -> dict[str, Any]:
        data: dict[str, Any] = {}
        root = _Slot(None, None, False, None, None)
        level: list[tuple[_Plan, Any, dict, _Slot, Path | None]] = [
            (plan, root_value, data, root, None)
        ]
        while level:
            following: list = []
            pending: list = []
            for object_plan, source, target, slot, path in level:
                self._fields(object_plan, source, target, slot, path, following, pending)
                if self.root_error is not None:
                    # a field failed as it was called: the interpreter's loop ends there,
                    # and what was started is left to settle unseen
                    _abandon(pending)
                    raise self.root_error
            while pending:  # awaitable list items join the level, one round later
                done, pending = pending, []
                for index, outcome in await _completed_in_order([p[0] for p in done]):
                    done[index][1](outcome, following, pending)
                if self.root_error is not None:
                    _abandon(pending)
                    raise self.root_error
            level = following
        return data

    # -- fields -------------------------------------------------------------------------

    def _fields(
        self,
        plan: _Plan,
        source: Any,
        target: dict,
        slot: _Slot,
        path: Path | None,
        following: list,
        pending: list,
    ) -> None:
        if slot.dead():
            return
        type_name = plan.type.name
        for field in plan.fields:
            if slot.nulled or self.root_error is not None:
                return  # a sync non-null error ended this object, as it ends the interpreter's
            if field.typename:
                target[field.key] = type_name
                continue
            field_path = Path(path, field.key, type_name)
            target[field.key] = None  # its place in document order
            info = None
            try:
                args = self._arguments(field) if field.has_args else {}
                if field.basic is not None:
                    getter, name = field.basic
                    result = getter(source, name)
                else:
                    direct = field.direct
                    if direct is None or direct.info_name is not None:
                        info = self.ex.build_resolve_info(
                            field.definition, field.nodes, plan.type, field_path
                        )
                    if direct is not None:
                        result = direct.call(source, info, self.info_class)
                    else:
                        result = field.resolve(source, info, **args)
            except Exception as raw:
                self._error(raw, field, field.return_type, target, field.key, slot, field_path)
                continue
            if self.is_awaitable(result):
                pending.append(
                    (
                        result,
                        self._later(
                            field, field.return_type, target, field.key, slot, field_path, info
                        ),
                    )
                )
            else:
                self._complete(
                    field, field.return_type, result, target, field.key, slot, field_path, info,
                    following, pending,
                )  # fmt: skip

    def _arguments(self, field: _Field) -> dict:
        cached = self.args.get(id(field))
        if cached is None:
            ex = self.ex
            try:
                cached = (
                    get_argument_values(
                        field.definition,
                        field.nodes[0],
                        ex.variable_values,
                        field.details[0].fragment_variable_values,
                        ex.hide_suggestions,
                    ),
                    None,
                )
            except Exception as error:
                cached = (None, error)
            self.args[id(field)] = cached
        if cached[1] is not None:
            raise cached[1]
        return cached[0]

    def _later(
        self,
        field: _Field,
        return_type: Any,
        container: Any,
        key: Any,
        slot: _Slot,
        path: Path,
        info: Any,
    ) -> Any:
        def complete(value: Any, following: list, pending: list) -> None:
            if slot.dead():
                return
            if self.root_error is not None:
                # the data is null already; what finished with it still reports its error,
                # as the interpreter's own wrappers record theirs before its gather fails
                if isinstance(value, Exception):
                    self._error(value, field, return_type, container, key, slot, path)
                return
            if isinstance(value, Exception):
                self._error(value, field, return_type, container, key, slot, path)
                return
            self._complete(
                field, return_type, value, container, key, slot, path, info, following, pending
            )

        return complete

    # -- completion ---------------------------------------------------------------------

    def _complete(
        self,
        field: _Field,
        return_type: Any,
        result: Any,
        container: Any,
        key: Any,
        slot: _Slot,
        path: Path,
        info: Any,
        following: list,
        pending: list,
    ) -> None:
        """graphql-core's complete_value for one position: the value is stored at
        container[key]; an object's fields are queued for the next level."""
        try:
            value = self._value(
                field, return_type, result, container, key, slot, path, info, following, pending
            )
        except Exception as raw:
            self._error(raw, field, return_type, container, key, slot, path)
            return
        if value is not _SKIP:
            container[key] = value

    def _value(
        self,
        field: _Field,
        return_type: Any,
        result: Any,
        container: Any,
        key: Any,
        slot: _Slot,
        path: Path,
        info: Any,
        following: list,
        pending: list,
    ) -> Any:
        if isinstance(result, Exception):
            raise result
        non_null = is_non_null_type(return_type)
        inner_type = return_type.of_type if non_null else return_type
        if result is None or result is Undefined:
            if non_null:
                raise TypeError(
                    "Cannot return null for non-nullable field"
                    f" {field.parent_type.name}.{field.name}."
                )
            return None
        if is_list_type(inner_type):
            return self._list(
                field, inner_type, non_null, result, container, key, slot, path, info,
                following, pending,
            )  # fmt: skip
        if is_leaf_type(inner_type):
            if _unchanged_by(inner_type, result):
                return result
            return self.ex.complete_leaf_value(inner_type, result)
        # an object: its fields run in the next level, into the dict placed here
        is_type_of = inner_type.is_type_of
        if is_type_of is not None:
            matches = is_type_of(result, info)
            if self.is_awaitable(matches) or not matches:
                if self.is_awaitable(matches):
                    matches.close()
                raise _invalid_type(inner_type, result, field)
        target: dict[str, Any] = {}
        inner_slot = _Slot(container, key, not non_null, path, slot)
        following.append((field.item_plan, result, target, inner_slot, path))
        return target

    def _list(
        self,
        field: _Field,
        list_type: GraphQLList,
        non_null: bool,
        result: Any,
        container: Any,
        key: Any,
        slot: _Slot,
        path: Path,
        info: Any,
        following: list,
        pending: list,
    ) -> list:
        if self.ex.is_async_iterable(result):  # drained, then completed as a list
            wrapped = GraphQLNonNull(list_type) if non_null else list_type
            later = self._later(field, wrapped, container, key, slot, path, info)
            pending.append((_drained(result), later))
            return _SKIP
        if not is_iterable(result):
            raise GraphQLError(
                "Expected Iterable, but did not find one for field"
                f" '{field.parent_type.name}.{field.name}'."
            )
        items = result if type(result) is list else list(result)
        item_type = list_type.of_type
        plain = LeafListExecutionContext.plain_leaves(item_type, items)
        if plain:
            return items
        completed: list[Any] = [None] * len(items)
        list_slot = _Slot(container, key, not non_null, path, slot)
        for index, item in enumerate(items):
            if list_slot.nulled:
                break
            item_path = Path(path, index, None)
            if self.is_awaitable(item):
                later = self._later(field, item_type, completed, index, list_slot, item_path, info)
                pending.append((item, later))
                continue
            self._complete(
                field, item_type, item, completed, index, list_slot, item_path, info,
                following, pending,
            )  # fmt: skip
        return _SKIP if list_slot.nulled else completed

    # -- errors -------------------------------------------------------------------------

    def _error(
        self,
        raw: Exception,
        field: _Field,
        return_type: Any,
        container: Any,
        key: Any,
        slot: _Slot,
        path: Path,
    ) -> None:
        """graphql-core's handle_field_error, with the propagation its raise performs: a
        nullable position becomes null and keeps the error; a non-null one nulls the
        nearest nullable position above it (the whole data at the root)."""
        error = located_error(raw, field.nodes, path.as_list())
        if not is_non_null_type(return_type):
            container[key] = None
            self.ex.collected_errors.add(error, path)
            return
        at: _Slot | None = slot
        while at is not None:
            if at.parent is None:  # the root: data is null (raised once the level is done)
                if self.root_error is None:
                    self.root_error = error
                return
            if at.dead():
                return
            at.nulled = True
            if at.nullable:
                at.container[at.key] = None
                self.ex.collected_errors.add(error, at.path)
                return
            at = at.parent


def _invalid_type(return_type: Any, result: Any, field: _Field) -> GraphQLError:
    return invalid_return_type_error(return_type, result, field.details)


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
        return _Run(self).run(plan, root_value)

    def _plan(self, root_type: GraphQLObjectType, grouped: Any) -> _Plan | None:
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
        plan: _Plan | None
        if _has_directives(operation, self.fragments):
            plan = None
        else:
            try:
                plan = _Compiler(self).plan(root_type, grouped)
            except _NotCompilable:
                plan = None
        plans[key] = (operation, plan)  # the operation kept alive: its id stays its own
        while len(plans) > _PLAN_CACHE_SIZE:
            plans.popitem(last=False)
        return plan

    async def _verified(
        self, plan: _Plan, root_type: Any, root_value: Any, grouped: Any
    ) -> dict[str, Any]:
        """Both ways, compared; the plan's answer is the one returned. A difference is
        checked once more (data a worker changed between the two runs is no mismatch)."""
        for attempt in (1, 2):
            fast = await self._collect(_Run(self).run(plan, root_value))
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
