"""Which render failures are retried, and the plain sentence a client sees for each cause.

The same mapping runs through a real worker in test_render_worker.py; here every cause,
including the ones a worker cannot be made to meet on demand, is checked directly.
"""

from __future__ import annotations

import errno
import re

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from graph.driver import GraphUnavailable
from workers import failures


class _Wrapped(Exception):
    """A library error raised from the real cause (as PyAV or boto3 do)."""


def _raised_from(cause: BaseException) -> BaseException:
    try:
        raise _Wrapped("could not write the file") from cause
    except _Wrapped as exc:
        return exc


def _torch_oom() -> BaseException:
    torch = pytest.importorskip("torch")
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def _neo4j(name: str, message: str) -> BaseException:
    exceptions = pytest.importorskip("neo4j.exceptions")
    return getattr(exceptions, name)(message)


# the same class name from another package is not CUDA's
class OutOfMemoryError(Exception):
    pass


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: OSError(errno.ENOSPC, "No space left on device"), failures.DISK_FULL),
        (lambda: OSError(errno.EDQUOT, "Disk quota exceeded"), failures.DISK_FULL),
        (lambda: _raised_from(OSError(errno.ENOSPC, "full")), failures.DISK_FULL),
        (_torch_oom, failures.GPU_OUT_OF_MEMORY),
        (lambda: RuntimeError("CUDA out of memory. Tried to allocate"), failures.GPU_OUT_OF_MEMORY),
        (lambda: GraphUnavailable("bolt://db:7687 refused"), failures.GRAPH_UNAVAILABLE),
        (lambda: _neo4j("ServiceUnavailable", "no routing servers"), failures.GRAPH_UNAVAILABLE),
        (lambda: _neo4j("SessionExpired", "leader switched"), failures.GRAPH_UNAVAILABLE),
        (lambda: _neo4j("DatabaseUnavailable", "db offline"), failures.GRAPH_UNAVAILABLE),
        (lambda: RedisConnectionError("Error 111 connecting"), failures.REDIS_UNAVAILABLE),
        (lambda: RedisTimeoutError("Timeout reading from socket"), failures.REDIS_UNAVAILABLE),
        (lambda: ConnectionResetError("peer reset"), failures.SERVICE_UNAVAILABLE),
        (lambda: TimeoutError("timed out"), failures.SERVICE_UNAVAILABLE),
    ],
)
def test_transient_failures_are_retried_with_a_sentence_per_cause(make, reason: str) -> None:
    exc = make()
    assert failures.transient_reason(exc) == reason
    assert failures.failure_reason(exc) == reason


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("internal detail: /srv/models/x.safetensors"),
        OSError(errno.EACCES, "Permission denied"),
        RuntimeError("Expected all tensors to be on the same device"),
        OutOfMemoryError("not torch's"),
        KeyError("prompt"),
    ],
)
def test_other_failures_fail_at_once_without_their_details(exc: Exception) -> None:
    assert failures.transient_reason(exc) is None
    assert failures.failure_reason(exc) == failures.RENDERER_FAILED


def test_no_reason_carries_exception_text_or_class_names() -> None:
    reasons = [
        failures.DISK_FULL,
        failures.GPU_OUT_OF_MEMORY,
        failures.GRAPH_UNAVAILABLE,
        failures.REDIS_UNAVAILABLE,
        failures.SERVICE_UNAVAILABLE,
        failures.RENDERER_FAILED,
        failures.time_limit_reason(600),
        failures.too_many_attempts_reason(4),
    ]
    for reason in reasons:
        assert re.fullmatch(r"[a-z][a-zA-Z0-9 ,;'()]+", reason), reason
        assert not re.search(r"Error|Exception|errno|\w+\.\w+", reason), reason
    assert failures.time_limit_reason(600) == "the render took longer than 600 s"
    assert failures.time_limit_reason(1.5) == "the render took longer than 1.5 s"


def test_retries_back_off_exponentially_up_to_a_minute() -> None:
    delays = [failures.retry_delay_s(n, 2.0) for n in range(8)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
