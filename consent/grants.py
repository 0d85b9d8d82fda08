"""Audience and grant rules that live in Python: input bounds.

Who may *use* a cameo is one Cypher fragment (graph.cameos usable_by), so the API, the
workers and the statements that write clips can never disagree about it; who may *see* a
cameo or a clip is graph.visibility's rule (`cameo_visible` is re-exported here for the
callers that know it by this name). What is here only shapes input.
"""

from __future__ import annotations

import re
import unicodedata

from errors import BadUserInput
from graph.visibility import cameo_visible

__all__ = [
    "AUDIENCES",
    "MAX_GRANT_DAYS",
    "MAX_RESTRICTIONS",
    "MAX_RESTRICTION_LENGTH",
    "cameo_visible",
    "grant_expiry",
    "normalize_restrictions",
]

AUDIENCES = ("ONLY_ME", "APPROVED", "MUTUALS", "EVERYONE")
MAX_RESTRICTIONS = 10
MAX_RESTRICTION_LENGTH = 100
MAX_GRANT_DAYS = 365
_DAY_MS = 24 * 3600 * 1000
_SPACES = re.compile(r"\s+")


def normalize_restrictions(restrictions: list[str]) -> list[str]:
    """NFC, whitespace collapsed, empty entries dropped, duplicates (case-insensitive)
    dropped keeping the first; at most 10 rules of at most 100 characters."""
    kept: list[str] = []
    seen: set[str] = set()
    if len(restrictions) > 4 * MAX_RESTRICTIONS:  # bounds the work before any of it
        raise BadUserInput(f"at most {MAX_RESTRICTIONS} restrictions")
    for raw in restrictions:
        rule = _SPACES.sub(" ", unicodedata.normalize("NFC", raw)).strip()
        if not rule:
            continue
        if any(unicodedata.category(ch).startswith("C") for ch in rule):
            raise BadUserInput("a restriction may not contain control characters")
        if len(rule) > MAX_RESTRICTION_LENGTH:
            raise BadUserInput(f"a restriction has at most {MAX_RESTRICTION_LENGTH} characters")
        folded = rule.casefold()
        if folded not in seen:
            seen.add(folded)
            kept.append(rule)
    if len(kept) > MAX_RESTRICTIONS:
        raise BadUserInput(f"at most {MAX_RESTRICTIONS} restrictions")
    return kept


def grant_expiry(expires_in_days: int | None, now: int) -> int | None:
    """When a grant made now ends (epoch ms); None: it lasts until revoked."""
    if expires_in_days is None:
        return None
    if not 1 <= expires_in_days <= MAX_GRANT_DAYS:
        raise BadUserInput(f"expiresInDays must be 1-{MAX_GRANT_DAYS}, or null for no expiry")
    return now + expires_in_days * _DAY_MS
