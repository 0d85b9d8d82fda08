"""The exported schema is current, and holds the whole contract, unchanged."""

from __future__ import annotations

from pathlib import Path

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
)
from graphql import (
    build_schema as parse_sdl,
)

from schema import build_schema

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = parse_sdl((ROOT / "api" / "contract.graphql").read_text())
SCHEMA = build_schema()._schema


def test_exported_schema_file_is_current() -> None:
    exported = (ROOT / "schema.graphql").read_text()
    assert exported == str(build_schema()) + "\n", "run `reelgraph export-schema`"


def _fields(type_) -> dict:
    return type_.fields


SCALARS = {"String", "Int", "Float", "Boolean", "ID", "DateTime"}


def test_every_contract_type_is_built_with_every_field() -> None:
    """The whole contract is built: every type it names, every field and enum value."""
    names = sorted(n for n in CONTRACT.type_map if not n.startswith("__") and n not in SCALARS)
    assert len(names) > 45
    for type_name in names:
        contract_type = CONTRACT.type_map[type_name]
        ours = SCHEMA.type_map.get(type_name)
        assert ours is not None, f"{type_name} is missing"
        assert isinstance(ours, type(contract_type)), type_name
        if isinstance(contract_type, GraphQLEnumType):
            assert set(ours.values) == set(contract_type.values), type_name
            continue
        missing = set(_fields(contract_type)) - set(_fields(ours))
        assert not missing, f"{type_name} lacks {missing}"


def test_every_shared_field_matches_the_contract() -> None:
    """Names, argument names, types and nullability of everything present in both."""
    checked = 0
    for type_name, contract_type in CONTRACT.type_map.items():
        ours = SCHEMA.type_map.get(type_name)
        if type_name.startswith("__") or ours is None:
            continue
        if isinstance(contract_type, GraphQLObjectType | GraphQLInterfaceType):
            assert {i.name for i in contract_type.interfaces} <= {i.name for i in ours.interfaces}
        if not isinstance(
            contract_type, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType
        ):
            continue
        for field_name, field in contract_type.fields.items():
            if field_name not in ours.fields:
                continue
            mine = ours.fields[field_name]
            assert str(mine.type) == str(field.type), f"{type_name}.{field_name}"
            for arg_name, arg in getattr(field, "args", {}).items():
                assert arg_name in mine.args, f"{type_name}.{field_name}({arg_name})"
                assert str(mine.args[arg_name].type) == str(arg.type), (
                    f"{type_name}.{field_name}({arg_name})"
                )
            extra = set(getattr(mine, "args", {})) - set(getattr(field, "args", {}))
            for arg_name in extra:  # additions must be optional
                assert not str(mine.args[arg_name].type).endswith("!"), arg_name
            checked += 1
    assert checked > 50
