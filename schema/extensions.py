"""Schema extensions: document limits, cached parsing and validation, the error policy."""

from __future__ import annotations

import logging
import re
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLID,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    get_named_type,
    parse,
    specified_rules,
    validate,
    value_from_ast_untyped,
)
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from errors import BadUserInput, ClientError
from events.bus import SlowConsumer
from resolvers.ids import decode_any
from resolvers.pagination import time_id_cursor

__all__ = [
    "CheckNestedArguments",
    "DocumentGate",
    "ErrorCodes",
    "MaxNodes",
    "RejectBadTokens",
    "classify",
    "document_gate",
    "document_problems",
    "error_extension",
    "introspection_allowed",
    "limit_extensions",
]

logger = logging.getLogger("reelgraph.errors")
DEFAULT_PAGE, MAX_PAGE = 20, 100  # the contract's connection defaults
INTERNAL_MESSAGE = "Internal error"
MAX_NESTING = 64  # selection sets (or variable values) inside one another
# longer texts (a comment pads any length: it is no token) are parsed and validated each
# time, so the caches hold at most document_cache_size x this much text
MAX_CACHED_TEXT = 20_000
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads joins valid pairs already
_SUGGESTION = re.compile(r" ?Did you mean [^?]*\?")  # names never hold a "?"
# stands in for a document too deeply nested to parse, so the refusal takes the usual path
_PLACEHOLDER = parse("{ __typename }")


def limit_extensions(max_depth: int, max_aliases: int, max_tokens: int) -> list:
    # instances, not factories: their validation rules stay the same classes, so the
    # validation cache (keyed by the rules) keeps hitting
    return [
        QueryDepthLimiter(max_depth=max_depth),
        MaxAliasesLimiter(max_alias_count=max_aliases),  # counts through fragments too
        MaxTokensLimiter(max_token_count=max_tokens),
    ]


def introspection_allowed(policy: str, context: Any) -> bool:
    """Introspection and "Did you mean" suggestions: "on", "signed-in" or "off"."""
    if policy == "on":
        return True
    signed_in = getattr(context, "viewer_id", None) is not None
    return policy == "signed-in" and signed_in and getattr(context, "auth_error", None) is None


def _refusal(message: str) -> GraphQLError:
    return GraphQLError(message, original_error=BadUserInput(message))


def _request_id(context: Any) -> str:
    request_id = getattr(context, "request_id", None)
    if request_id is None:
        request_id = uuid.uuid4().hex
        if context is not None and hasattr(context, "request_id"):
            context.request_id = request_id  # the log line and the error name the same one
    return request_id


def _with_code(
    error: GraphQLError, code: str, message: str | None = None, **extensions: Any
) -> GraphQLError:
    # a syntax error stays one: a websocket answers a document that does not parse by
    # closing with 4400 (after this policy has coded it, as each streamed result is)
    cls = GraphQLSyntaxError if isinstance(error, GraphQLSyntaxError) else GraphQLError
    coded = cls.__new__(cls)
    GraphQLError.__init__(
        coded,
        message if message is not None else error.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions={**(error.extensions or {}), "code": code, **extensions},
    )
    return coded


# refusals of the operation itself that strawberry raises rather than answers (over HTTP
# they become a 400 before any result; over a socket they arrive as errors)
_REFUSED_OPERATIONS = (CannotGetOperationTypeError, InvalidOperationTypeError, MissingQueryError)


def classify(
    error: GraphQLError, mask: bool, context: Any = None, hide_suggestions: bool = False
) -> GraphQLError:
    """Every error leaves with a contract code; unexpected ones are masked in production,
    logged with their traceback and carry the request id that the log line names."""
    original = error.original_error
    if isinstance(original, ClientError):
        if original.code != "INTERNAL":
            return _with_code(error, original.code, original.message)
        # a backing service is down: expected, not masked, but still worth a log line
        request_id = _request_id(context)
        logger.warning("%s (request %s)", original.message, request_id, exc_info=original)
        return _with_code(error, "INTERNAL", original.message, requestId=request_id)
    if isinstance(original, SlowConsumer):
        # a subscription of a client that stopped reading: its socket is being closed (1013),
        # which the socket logs once; each of its subscriptions ending is no fault of ours
        return _with_code(
            error,
            "RATE_LIMITED",
            "the client does not read its events fast enough; reconnect with after",
            retryAfterSeconds=0,
        )
    if isinstance(original, _REFUSED_OPERATIONS):
        # no such operationName, several operations and none named, a type not allowed here
        return _with_code(error, "BAD_USER_INPUT")
    if original is None or (isinstance(original, GraphQLError) and original.original_error is None):
        # the document itself was refused: syntax, validation, limits, variable coercion
        code = (error.extensions or {}).get("code", "BAD_USER_INPUT")
        message = _SUGGESTION.sub("", error.message) if hide_suggestions else None
        return _with_code(error, code, message)
    request_id = _request_id(context)
    where = error.path or "an operation"
    logger.error("unexpected error in %s (request %s)", where, request_id, exc_info=original)
    return _with_code(error, "INTERNAL", INTERNAL_MESSAGE if mask else None, requestId=request_id)


class ErrorCodes(SchemaExtension):
    """The error policy, applied to every result before it leaves: over HTTP once the
    operation has run, over a websocket to each result as it is streamed (on_operation ends
    only after the last one has gone out)."""

    mask = True
    introspection = "on"
    streamed = False  # set per operation: its results were coded one by one

    @classmethod
    def code(cls, errors: list[GraphQLError], context: Any) -> list[GraphQLError]:
        """`classify` each error with this schema's masking and suggestion policy."""
        hide = not introspection_allowed(cls.introspection, context)
        return [classify(e, cls.mask, context, hide) for e in errors]

    def on_operation(self) -> Iterator[None]:
        self.streamed = False
        yield
        if self.streamed:
            return
        ec = self.execution_context
        result = ec.result
        if result is not None and getattr(result, "errors", None):
            result.errors = self.code(result.errors, ec.context)
        elif ec.pre_execution_errors:
            ec.pre_execution_errors = self.code(ec.pre_execution_errors, ec.context)

    def on_stream_result(self, result: Any) -> Iterator[None]:
        self.streamed = True
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self.code(list(errors), self.execution_context.context)
        yield


class _LRU:
    """A bounded map that forgets the least recently used entry first."""

    def __init__(self, size: int) -> None:
        self.size, self.items = size, OrderedDict()

    def get(self, key: Any) -> Any:
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)


class DocumentGate(SchemaExtension):
    """Parses and validates each document once (both cached, bounded), and first refuses
    the shapes whose validation alone would cost too much: the overlapping-fields check
    compares every pair of selections that share a response name, so a 5 KB document of
    490 `viewer { id }` kept the event loop busy for a second. Variables are checked on
    every request: no lone surrogates (nothing can encode them) and no deep nesting."""

    max_fields = 500
    max_same_name = 20
    introspection = "on"
    parsed = _LRU(512)
    validated = _LRU(512)

    def __init__(self) -> None:
        self.refusal: str | None = None

    def on_parse(self) -> Iterator[None]:
        ec = self.execution_context
        if ec.query is not None and ec.graphql_document is None:
            key = (ec.query, tuple(sorted(ec.parse_options.items())))
            cacheable = len(ec.query) <= MAX_CACHED_TEXT
            document = self.parsed.get(key) if cacheable else None
            if document is None:
                try:
                    document = parse(ec.query, **ec.parse_options)
                except GraphQLError:
                    document = None  # Strawberry parses it again and answers the error
                except RecursionError:
                    document, self.refusal = _PLACEHOLDER, "the document is nested too deeply"
                else:
                    if cacheable:
                        self.parsed.put(key, document)
            ec.graphql_document = document
        yield

    def on_validate(self) -> Iterator[None]:
        ec = self.execution_context
        problem = self.refusal or variables_problem(ec.variables)
        if problem is not None:
            ec.pre_execution_errors = [_refusal(problem)]
        else:
            hide = not introspection_allowed(self.introspection, ec.context)
            key = (ec.query, ec.validation_rules, hide)
            cacheable = ec.query is not None and len(ec.query) <= MAX_CACHED_TEXT
            errors = self.validated.get(key) if cacheable else None
            if errors is None:
                errors = self._validate(ec, hide)
                if cacheable:
                    self.validated.put(key, errors)
            ec.pre_execution_errors = list(errors)
            if not errors:
                # the name the client sent: `operation_name` falls back to the first one
                sent = getattr(ec, "_provided_operation_name", ec.operation_name)
                problem = operation_problem(ec.graphql_document, sent)
                if problem is not None:
                    ec.pre_execution_errors = [_refusal(problem)]
        yield

    def _validate(self, ec: Any, hide: bool) -> list[GraphQLError]:
        problem = shape_problem(ec.graphql_document, self.max_fields, self.max_same_name)
        if problem is not None:
            return [_refusal(problem)]
        rules = (*ec.validation_rules, MaybeNullValidationRule, OneOfInputValidationRule)
        if hide:
            rules = (*rules, NoSchemaIntrospectionCustomRule)
        return validate(ec.schema._schema, ec.graphql_document, rules, hide_suggestions=hide)


def operation_problem(document: Any, operation_name: str | None) -> str | None:
    """Why no single operation of the document can run, or None (GraphQL spec 6.1:
    a document of several operations runs only the one operationName names)."""
    names = [
        d.name.value if d.name else None
        for d in getattr(document, "definitions", ())
        if isinstance(d, OperationDefinitionNode)
    ]
    if operation_name is None and len(names) > 1:
        return "the document holds several operations: name the one to run in operationName"
    return None  # an unknown name is refused earlier, by Strawberry


class _Refused(Exception):
    pass


def shape_problem(document: Any, max_fields: int, max_same_name: int) -> str | None:
    """Why a document is refused before validation, or None: more than max_fields field
    selections with fragments expanded, more than max_same_name selections sharing one
    response name in one (merged) selection set, or nesting deeper than MAX_NESTING."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    budget = [max_fields]

    def collect(selection_sets: list, groups: dict, chain: frozenset) -> None:
        for selection_set in selection_sets:
            for selection in selection_set.selections:
                if isinstance(selection, FieldNode):
                    budget[0] -= 1
                    if budget[0] < 0:
                        raise _Refused(
                            f"this document selects more than {max_fields} fields (fragments "
                            "expanded): split it into smaller operations"
                        )
                    name = (selection.alias or selection.name).value
                    groups.setdefault(name, []).append(selection)
                elif isinstance(selection, InlineFragmentNode):
                    collect([selection.selection_set], groups, chain)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    if name in fragments and name not in chain:  # a cycle fails validation
                        collect([fragments[name].selection_set], groups, chain | {name})

    def walk(selection_sets: list, depth: int) -> None:
        if depth > MAX_NESTING:
            raise _Refused("the document is nested too deeply")
        groups: dict[str, list[FieldNode]] = {}
        collect(selection_sets, groups, frozenset())
        for name, fields in groups.items():
            if len(fields) > max_same_name:
                raise _Refused(
                    f"this document selects `{name}` {len(fields)} times in one selection "
                    f"set; the limit is {max_same_name}"
                )
            inner = [f.selection_set for f in fields if f.selection_set is not None]
            if inner:
                walk(inner, depth + 1)

    try:
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                walk([definition.selection_set], 0)
        # validation also compares the fields of every fragment definition, used or not
        for fragment in fragments.values():
            budget[0] = max_fields
            walk([fragment.selection_set], 0)
    except _Refused as refused:
        return str(refused)
    return None


def variables_problem(variables: Any) -> str | None:
    """Why variables are refused, or None: strings with lone surrogates, deep nesting."""
    stack = [(variables, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_NESTING:
            return "the variables are nested too deeply"
        if isinstance(value, str):
            if _LONE_SURROGATE.search(value):
                return (
                    "a string in the variables holds a lone UTF-16 surrogate (such as "
                    "\\ud800), which is not a character: send valid Unicode"
                )
        elif isinstance(value, dict):
            stack.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
    return None


def document_gate(
    max_fields: int, max_same_name: int, cache_size: int, introspection: str
) -> type[DocumentGate]:
    """A DocumentGate with its own caches (one pair per schema)."""
    return type(
        "DocumentGate",
        (DocumentGate,),
        {
            "max_fields": max_fields,
            "max_same_name": max_same_name,
            "introspection": introspection,
            "parsed": _LRU(cache_size),
            "validated": _LRU(cache_size),
        },
    )


def document_problems(schema: Any, text: str) -> list[str]:
    """Why `schema` would refuse this document before running it, whoever sent it: its
    syntax, the document limits (tokens, depth, aliases, fields, same-name selections) and
    validation, as the extensions check each request; empty when it would run. Trusted
    documents are checked with it before they are stored (documents_cli.py). Introspection
    passes here: whether it may run is still decided per request (DocumentGate)."""
    rules: list = list(specified_rules)
    max_tokens = None
    gate: type[DocumentGate] = DocumentGate
    for extension in schema.extensions:
        if isinstance(extension, AddValidationRules):  # depth and aliases
            rules.extend(extension.validation_rules)
        elif isinstance(extension, MaxTokensLimiter):
            max_tokens = extension.max_token_count
        elif isinstance(extension, type) and issubclass(extension, DocumentGate):
            gate = extension
    try:
        document = parse(text, max_tokens=max_tokens)
    except GraphQLError as error:
        return [error.message]
    except RecursionError:
        return ["the document is nested too deeply"]
    problem = shape_problem(document, gate.max_fields, gate.max_same_name)
    if problem is not None:
        return [problem]
    rules.extend((MaybeNullValidationRule, OneOfInputValidationRule))
    return [error.message for error in validate(schema._schema, document, rules)]


class RejectBadTokens(SchemaExtension):
    """A bad access token fails the operation before any resolver runs (so nothing is
    written): never a silent fall-back to anonymous.

    An operation of only the fields that hand out tokens runs as an anonymous one, so a
    client whose access token expired can refresh it (or sign up, or log in) without first
    dropping the stale header, and nothing inside their result fails on the stale header:
    a signUp that wrote the account always hands over its tokens.
    """

    TOKEN_FIELDS = frozenset({"signUp", "logIn", "refreshToken", "__typename"})

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context.context
        error = getattr(ctx, "auth_error", None)
        if error is not None:
            if self._only_token_fields():
                ctx.auth_error = None  # viewer_id is already None: anonymous
            else:
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


class CheckNestedArguments(SchemaExtension):
    """A mutation writes first, then its result is resolved: an argument inside that result
    bound to fail (a malformed ID or cursor, a negative `first`) would turn the answer of a
    mutation that wrote into an error. Such arguments are checked before anything runs, so
    a mutation that cannot answer writes nothing. (Root arguments are the resolvers' own
    first check.)"""

    def on_execute(self) -> Iterator[None]:
        ec = self.execution_context
        document = ec.graphql_document
        if ec.result is None and document is not None:
            for op in _operations(document, ec.operation_name):
                if op.operation is not OperationType.MUTATION:
                    continue
                problem = _nested_argument_problem(ec.schema._schema, document, op, ec)
                if problem is not None:
                    ec.result = ExecutionResult(data=None, errors=[_refusal(problem)])
                    break
        yield


def _operations(document: Any, name: str | None) -> Iterator[OperationDefinitionNode]:
    for op in document.definitions:
        if isinstance(op, OperationDefinitionNode) and (
            name is None or (op.name and op.name.value == name)
        ):
            yield op


def _nested_argument_problem(
    schema: Any, document: Any, op: OperationDefinitionNode, ec: Any
) -> str | None:
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    variables = _variables_with_defaults(op, ec)
    stack = [(op.selection_set, schema.get_root_type(op.operation), 0)]
    while stack:
        selection_set, parent, depth = stack.pop()
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FragmentSpreadNode | InlineFragmentNode):
                fragment = (
                    fragments.get(selection.name.value)
                    if isinstance(selection, FragmentSpreadNode)
                    else selection
                )
                if fragment is not None:
                    condition = fragment.type_condition
                    inner = schema.get_type(condition.name.value) if condition else parent
                    stack.append((fragment.selection_set, inner, depth))
                continue
            definition = getattr(parent, "fields", {}).get(selection.name.value)
            if definition is None:
                continue
            if depth > 0:
                for argument in selection.arguments or ():
                    arg_type = definition.args.get(argument.name.value)
                    value = value_from_ast_untyped(argument.value, variables)
                    try:
                        _check_argument(argument.name.value, arg_type, value)
                    except BadUserInput as exc:
                        return f"{exc.message} in `{selection.name.value}`"
            stack.append((selection.selection_set, get_named_type(definition.type), depth + 1))
    return None


def _check_argument(name: str, argument: Any, value: Any) -> None:
    """What the resolvers of nested fields would refuse, checked ahead of them."""
    if argument is None or value is None:
        return
    if get_named_type(argument.type) is GraphQLID:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                decode_any(item)
    elif name == "after" and isinstance(value, str):
        time_id_cursor(value)  # the keyset every connection pages by
    elif name == "first" and isinstance(value, int) and value < 0:
        raise BadUserInput("`first` must not be negative")


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
                    walk = _CostWalk(schema, fragments, _variables_with_defaults(op, ec))
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


def _variables_with_defaults(operation: OperationDefinitionNode, ec: Any) -> dict:
    """The values the operation will run with: a variable not sent takes its default."""
    values = {
        d.variable.name.value: value_from_ast_untyped(d.default_value)
        for d in operation.variable_definitions or ()
        if d.default_value is not None
    }
    values.update(ec.variables or {})
    return values


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


def error_extension(mask: bool, introspection: str = "on") -> type[ErrorCodes]:
    return type("ErrorCodes", (ErrorCodes,), {"mask": mask, "introspection": introspection})
