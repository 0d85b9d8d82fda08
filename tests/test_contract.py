"""The exported schema is current, and holds the contract's parts built so far, unchanged."""

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

ALL = "*"
# type -> the contract's fields built so far (ALL: every field the contract names)
BUILT: dict[str, object] = {
    "Node": ALL,
    "PageInfo": ALL,
    "UserEdge": ALL,
    "UserConnection": ALL,
    "AuthPayload": ALL,
    "SignUpInput": ALL,
    "ClipState": ALL,
    "VideoAsset": ALL,
    "ClipEdge": ALL,
    "ClipConnection": ALL,
    "CreateClipInput": ALL,
    "CameoState": ALL,
    "CameoAudience": ALL,
    "Cameo": ALL,
    "CameoGrant": ALL,
    "CameoChallenge": ALL,
    "NotificationKind": ALL,
    "Notification": ALL,
    "RenderProgress": ALL,
    "Subscription": ALL,
    "ApprovalState": ALL,
    "CameoAppearance": ALL,
    "User": {
        "id", "handle", "displayName", "createdAt", "followerCount", "followingCount",
        "followers", "following", "viewerFollows", "clips", "cameo", "roles",
    },
    "Role": ALL,
    "DataExport": ALL,
    "AccountDeletion": ALL,
    "Clip": {
        "id", "author", "prompt", "state", "failureReason", "moods", "createdAt", "publishedAt",
        "video", "renderProgress", "remixOf", "cameos",
    },
    "Query": {"node", "viewer", "user", "clip", "drafts", "cameoChallenge", "cameoInbox"},
    "Mutation": {
        "signUp", "logIn", "refreshToken", "follow", "unfollow", "blockUser",
        "createClip", "publishClip", "deleteClip",
        "startCameoCapture", "setCameoAudience", "setCameoRestrictions", "grantCameo",
        "revokeCameoGrant", "deleteCameo",
        "approveAppearance", "rejectAppearance", "removeAppearance",
        "exportMyData", "deleteAccount",
    },
}  # fmt: skip


def test_exported_schema_file_is_current() -> None:
    exported = (ROOT / "schema.graphql").read_text()
    assert exported == str(build_schema()) + "\n", "run `reelgraph export-schema`"


def _fields(type_) -> dict:
    return type_.fields


def test_built_types_have_every_contract_field() -> None:
    for type_name, built in BUILT.items():
        contract_type = CONTRACT.type_map[type_name]
        ours = SCHEMA.type_map.get(type_name)
        assert ours is not None, f"{type_name} is missing"
        assert isinstance(ours, type(contract_type)), type_name
        if isinstance(contract_type, GraphQLEnumType):
            assert set(ours.values) == set(contract_type.values), type_name
            continue
        expected = set(_fields(contract_type)) if built == ALL else built
        missing = expected - set(_fields(ours))
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
