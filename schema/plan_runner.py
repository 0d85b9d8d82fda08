"""Running a compiled plan (schema/plans.py) as graphql-core's executor would run the
same fields: one level of the answer at a time, the awaited resolvers of a level together
(DataLoaders batch), values completed in place, errors located and nulls propagated as the
interpreter does (schema/fast_path.py says what is compared and how)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLError,
    GraphQLID,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLString,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    located_error,
)
from graphql.execution.executor import invalid_return_type_error
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path, Undefined, is_iterable
from graphql.type.scalars import GRAPHQL_MAX_INT, GRAPHQL_MIN_INT

from schema.lineage import LeafListExecutionContext
from schema.plans import Plan, PlanField

__all__ = ["PlanRun"]


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
    """Coroutines nobody will await: closed, so none warns that it never ran. A future is
    left alone (a DataLoader's may be shared by other fields)."""
    for awaitable, _complete in pending:
        if inspect.iscoroutine(awaitable):
            awaitable.close()


class PlanRun:
    """One execution of a plan."""

    def __init__(self, executor: Any) -> None:
        self.ex = executor  # its collected_errors are read when an error comes (verify swaps them)
        self.args: dict[int, Any] = {}
        self.is_awaitable = executor.is_awaitable
        self.root_error: GraphQLError | None = None
        self.info_class = executor.info_class

    async def run(self, plan: Plan, root_value: Any) -> dict[str, Any]:
        data: dict[str, Any] = {}
        root = _Slot(None, None, False, None, None)
        level: list[tuple[Plan, Any, dict, _Slot, Path | None]] = [
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
        plan: Plan,
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

    def _arguments(self, field: PlanField) -> dict:
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
        field: PlanField,
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
            if isinstance(value, Exception):
                # after a root error too: what finished with it still reports its error, as
                # the interpreter's own wrappers record theirs before its gather fails
                self._error(value, field, return_type, container, key, slot, path)
            elif self.root_error is None:
                self._complete(
                    field, return_type, value, container, key, slot, path, info, following, pending
                )

        return complete

    # -- completion ---------------------------------------------------------------------

    def _complete(
        self,
        field: PlanField,
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
        field: PlanField,
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
        field: PlanField,
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
        field: PlanField,
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


def _invalid_type(return_type: Any, result: Any, field: PlanField) -> GraphQLError:
    return invalid_return_type_error(return_type, result, field.details)
