"""Compiled plans for schema/fast_path.py: what graphql-core works out for each field of a
query, once per document. For each response key: the field definition, its nodes, its
resolver (and how to call it without Strawberry's wrapper: a plain attribute, or a resolver
that takes no arguments), its arguments' presence, and the plan of its selection. A document
a plan cannot cover (directives, interface or union fields, introspection beyond
`__typename`, fragment arguments) compiles to nothing: the interpreter runs it."""

from __future__ import annotations

from typing import Any

from graphql import (
    DirectiveNode,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    Visitor,
    is_leaf_type,
    is_object_type,
    visit,
)
from graphql.execution.collect_fields import collect_subfields
from strawberry.schema.schema_converter import GraphQLCoreConverter

__all__ = ["NotCompilable", "Plan", "PlanField", "compile_plan"]

_DEFINITION = GraphQLCoreConverter.DEFINITION_BACKREF


class NotCompilable(Exception):
    pass


class PlanField:
    """One response key of a selection: everything the interpreter works out per item."""

    __slots__ = (
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
        self.item_plan: Plan | None = None
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


class Plan:
    """The fields of one object type's selection, in document order."""

    __slots__ = ("fields", "type")

    def __init__(self, object_type: GraphQLObjectType, fields: list[PlanField]) -> None:
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
    raise NotCompilable  # an interface or a union: the interpreter resolves its type


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

    def plan(self, object_type: GraphQLObjectType, grouped: dict) -> Plan:
        schema = self.executor.schema
        fields = []
        for key, details in grouped.items():
            if any(d.fragment_variable_values is not None for d in details):
                raise NotCompilable
            field = PlanField(key, details, object_type)
            if not field.typename:
                if field.name.startswith("__"):
                    raise NotCompilable  # __schema / __type
                definition = schema.get_field(object_type, field.name)
                if definition is None:
                    raise NotCompilable
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
                        raise NotCompilable
                    field.item_plan = self.plan(inner, grouped_inner)
            fields.append(field)
        return Plan(object_type, fields)


def compile_plan(executor: Any, root_type: GraphQLObjectType, grouped: dict) -> Plan | None:
    """The plan of a query's root fields, or None when the interpreter must run it."""
    if _has_directives(executor.operation, executor.fragments):
        return None
    try:
        return _Compiler(executor).plan(root_type, grouped)
    except NotCompilable:
        return None
