"""Opaque Relay global IDs: base64url of "Type:rawId"."""

from __future__ import annotations

import base64
import binascii
import re

from errors import BadUserInput, NotFound

__all__ = ["decode_any", "decode_id", "encode_id"]

_MAX_ID_LENGTH = 200
# what our ids look like (ULIDs) and what every engine takes back as a parameter: a NUL or
# a stray byte in an id made FalkorDB fail to parse the statement's parameters
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{0,31}")
_RAW_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


def encode_id(type_name: str, raw_id: str) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{raw_id}".encode()).decode().rstrip("=")


def decode_any(global_id: str) -> tuple[str, str]:
    """(type name, raw id); BAD_USER_INPUT when it is not one of our IDs."""
    if not global_id or len(global_id) > _MAX_ID_LENGTH:
        raise BadUserInput("malformed ID")
    try:
        text = base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadUserInput("malformed ID") from None
    type_name, sep, raw = text.partition(":")
    if not sep or not _TYPE_NAME.fullmatch(type_name) or not _RAW_ID.fullmatch(raw):
        raise BadUserInput("malformed ID")
    return type_name, raw


def decode_id(global_id: str, expected_type: str) -> str:
    """The raw id of a global ID of the expected type; NOT_FOUND for an ID of another type."""
    type_name, raw = decode_any(global_id)
    if type_name != expected_type:
        raise NotFound(f"no {expected_type} with this ID")
    return raw
