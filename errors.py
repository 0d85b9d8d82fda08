"""Errors a client can cause, each with a code from the API contract."""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadUserInput",
    "ClientError",
    "Conflict",
    "ConsentRequired",
    "Forbidden",
    "NotFound",
    "PolicyViolation",
    "RateLimited",
    "ServiceUnavailable",
    "Unauthenticated",
]


class ClientError(Exception):
    """An expected failure: its message reaches the client as is, with extensions.code."""

    code = "INTERNAL"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        # graphql-core copies `extensions` of the original error onto the GraphQL error
        self.extensions: dict[str, Any] = {"code": self.code, **extensions}


class Unauthenticated(ClientError):
    code = "UNAUTHENTICATED"


class Forbidden(ClientError):
    code = "FORBIDDEN"


class NotFound(ClientError):
    code = "NOT_FOUND"


class BadUserInput(ClientError):
    code = "BAD_USER_INPUT"


class ConsentRequired(ClientError):
    code = "CONSENT_REQUIRED"


class PolicyViolation(ClientError):
    code = "POLICY_VIOLATION"


class Conflict(ClientError):
    code = "CONFLICT"


class RateLimited(ClientError):
    code = "RATE_LIMITED"

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message, retryAfterSeconds=retry_after_seconds)


class ServiceUnavailable(ClientError):
    """A backing service is down; nothing was written. Not masked: the client should retry."""

    code = "INTERNAL"
