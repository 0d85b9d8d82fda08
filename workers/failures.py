"""Why a render failed, as a plain sentence a client may read, and which failures to retry.

A clip's failureReason never carries exception text or class names (they can name paths,
hosts and internals); the worker logs those. Transient causes (the graph, Redis, a full disk,
GPU memory) are retried with backoff before the clip fails with the sentence for its cause.

A render stopped by its consent checks says which of three things stopped it: the owner
revoked consent (consent.withdrawn_reason, naming them), the consent token expired before
the render ran, or a server key problem (a signing key or KEK unknown or retired), which is
the operator's to fix, not the owner's doing.
"""

from __future__ import annotations

import errno
import sys

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from consent.tokens import EXPIRED, KEY_PROBLEM, TokenRejected
from graph.driver import GraphUnavailable

__all__ = [
    "CAMEO_KEY_PROBLEM",
    "CONSENT_KEY_PROBLEM",
    "CONSENT_TOKEN_EXPIRED",
    "DISK_FULL",
    "GPU_OUT_OF_MEMORY",
    "GRAPH_UNAVAILABLE",
    "REDIS_UNAVAILABLE",
    "RENDERER_FAILED",
    "SERVICE_UNAVAILABLE",
    "consent_rejection_reason",
    "failure_reason",
    "is_cuda_out_of_memory",
    "retry_delay_s",
    "time_limit_reason",
    "too_many_attempts_reason",
    "transient_reason",
]

DISK_FULL = "the render ran out of disk space; try again later"
GPU_OUT_OF_MEMORY = "the GPU ran out of memory; try a shorter clip, or try again later"
GRAPH_UNAVAILABLE = "the graph database was unavailable; try again later"
REDIS_UNAVAILABLE = "the render queue's Redis was unavailable; try again later"
SERVICE_UNAVAILABLE = "a service the render needs was unavailable; try again later"
RENDERER_FAILED = "the renderer failed; try again, or try another prompt"
CONSENT_TOKEN_EXPIRED = (
    "the render was stopped: the consent token expired before rendering (the clip waited "
    "too long); make the clip again"
)
CONSENT_KEY_PROBLEM = (
    "the render was stopped by a server key problem: the consent token's signing key is "
    "unknown or retired (operator: see reelgraph keys); make the clip again later"
)
CAMEO_KEY_PROBLEM = (
    "the render was stopped by a server key problem: a featured cameo's key-encryption key "
    "is unknown or retired (operator: see reelgraph keys); make the clip again later"
)

_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# the Neo4j driver's errors worth a retry, should one reach here untranslated by the adapter
_NEO4J_TRANSIENT = {"ServiceUnavailable", "SessionExpired", "TransientError"}
_MAX_RETRY_DELAY_S = 60.0


def time_limit_reason(limit_s: float) -> str:
    return f"the render took longer than {limit_s:g} s"


def too_many_attempts_reason(attempts: int) -> str:
    return f"the render was started {attempts} times and never finished"


def is_cuda_out_of_memory(exc: BaseException) -> bool:
    """torch's CUDA out-of-memory error, recognised without importing torch."""
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if isinstance(oom, type) and isinstance(exc, oom):
        return True
    if any(
        cls.__name__ == "OutOfMemoryError" and cls.__module__.split(".")[0] == "torch"
        for cls in type(exc).__mro__
    ):
        return True
    # torch before 2.1 raised a RuntimeError with this text
    return isinstance(exc, RuntimeError) and str(exc).startswith("CUDA out of memory")


def _causes(exc: BaseException) -> list[BaseException]:
    """exc and what it was raised from (a library may wrap an OSError), a few levels deep."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 5 and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _is_neo4j_transient(exc: BaseException) -> bool:
    return any(
        cls.__name__ in _NEO4J_TRANSIENT and cls.__module__.split(".")[0] == "neo4j"
        for cls in type(exc).__mro__
    )


def _transient_reason_of(exc: BaseException) -> str | None:
    if isinstance(exc, GraphUnavailable) or _is_neo4j_transient(exc):
        return GRAPH_UNAVAILABLE
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return REDIS_UNAVAILABLE
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
        return DISK_FULL
    if is_cuda_out_of_memory(exc):
        return GPU_OUT_OF_MEMORY
    if isinstance(exc, ConnectionError | TimeoutError):
        return SERVICE_UNAVAILABLE
    return None


def transient_reason(exc: BaseException) -> str | None:
    """The sentence for a failure worth retrying later; None when retrying would not help."""
    for cause in _causes(exc):
        reason = _transient_reason_of(cause)
        if reason is not None:
            return reason
    return None


def consent_rejection_reason(rejected: BaseException | None) -> str | None:
    """The sentence for a consent token the worker refused because it expired or because of
    a key problem; None for anything else (revoked consent, a token that does not hold for
    this clip), which keeps the owner's sentence (consent.withdrawn_reason)."""
    if isinstance(rejected, TokenRejected):
        if rejected.kind == EXPIRED:
            return CONSENT_TOKEN_EXPIRED
        if rejected.kind == KEY_PROBLEM:
            return CONSENT_KEY_PROBLEM
    return None


def failure_reason(exc: BaseException) -> str:
    """The sentence a client sees for a render that failed with exc."""
    return transient_reason(exc) or RENDERER_FAILED


def retry_delay_s(failures_so_far: int, backoff_s: float) -> float:
    """Exponential backoff: backoff_s, then twice that, and so on, at most a minute."""
    return min(backoff_s * 2**failures_so_far, _MAX_RETRY_DELAY_S)
