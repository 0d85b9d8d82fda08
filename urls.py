"""The graph and Redis URLs reelgraph accepts, and how each client library wants them spelled.

Every URL is built by string, never through `urlsplit(...)._replace(...).geturl()`: that
round trip drops the empty authority of `unix:///path` and writes `unix:/path`, which
redis-py 8.2 refuses. Socket paths are percent-encoded, so a path with spaces or `?` or `#`
survives redis-py's and kombu's parsers.

- falkor://[user:pass@]host:port[/db] -> redis://...; falkors:// -> rediss://...
- falkor+unix:///abs/path[?db=N] -> unix:///abs/path[?db=N]
- redis://, rediss:// and unix:// are used as given
- for Celery (kombu), unix:///abs/path?db=N is spelled redis+socket:///abs/path?virtual_host=N
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode

from redis.connection import parse_url

__all__ = [
    "FALKOR_SCHEMES",
    "REDIS_SCHEMES",
    "UrlError",
    "broker_url_for_kombu",
    "check_redis_url",
    "redis_url_for_falkor",
    "unix_socket_url",
]

# graph URL scheme -> the redis-py scheme that reaches the same server
FALKOR_SCHEMES = {"falkor": "redis", "falkors": "rediss", "falkor+unix": "unix"}
REDIS_SCHEMES = ("redis", "rediss", "unix")


class UrlError(ValueError):
    """A graph, Redis or broker URL that cannot be used; the message says why, in a sentence."""


def _split_scheme(url: str) -> tuple[str, str]:
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise UrlError(f"{_shown(url)} is not a URL: it needs a scheme, as in redis://host:6379")
    return scheme.lower(), rest


def _shown(url: str) -> str:
    """The URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.partition("@")
    if at and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{hostpart}"
    return repr(url)


def unix_socket_url(path: Path | str, *, scheme: str = "unix", db: int | None = None) -> str:
    """`unix:///abs/path` (or another scheme) for a socket path, percent-encoded."""
    path = str(path)
    if not path.startswith("/"):
        raise UrlError(f"a unix socket path must be absolute, not {path!r}")
    url = f"{scheme}://{quote(path, safe='/')}"
    return f"{url}?db={db}" if db is not None else url


def redis_url_for_falkor(url: str) -> str:
    """The redis-py URL of a FalkorDB graph URL: falkor:// -> redis://, falkors:// -> rediss://,
    falkor+unix:///s -> unix:///s; redis://, rediss:// and unix:// stay as given."""
    scheme, rest = _split_scheme(url)
    redis_scheme = FALKOR_SCHEMES.get(scheme, scheme)
    if redis_scheme not in REDIS_SCHEMES:
        raise UrlError(
            f"{_shown(url)} is not a FalkorDB URL: use falkor://host:port, falkors://host:port "
            "or falkor+unix:///path/to/socket"
        )
    return check_redis_url(f"{redis_scheme}://{rest}")


def check_redis_url(url: str) -> str:
    """The URL itself when redis-py can use it; UrlError with the reason when it cannot."""
    if url.lower().startswith("unix:") and not url.lower().startswith("unix:///"):
        raise UrlError(
            f"{_shown(url)} names no absolute socket path: write unix:///path/to/socket "
            "(three slashes)"
        )
    scheme, _ = _split_scheme(url)
    if scheme not in REDIS_SCHEMES:
        raise UrlError(
            f"{_shown(url)} is not a Redis URL: use redis://host:port, rediss://host:port "
            "or unix:///path/to/socket"
        )
    try:
        parse_url(url)  # redis-py's own parser: what from_url will do with it
    except ValueError as exc:
        raise UrlError(f"{_shown(url)} cannot be used: {exc}") from None
    return url


def broker_url_for_kombu(url: str) -> str:
    """The Celery (kombu) broker URL of a Redis URL: kombu spells a Redis unix socket
    `redis+socket://` and its database as `virtual_host`."""
    scheme, rest = _split_scheme(url)
    scheme = FALKOR_SCHEMES.get(scheme, scheme)
    if scheme != "unix":
        return f"{scheme}://{rest}"  # redis://, rediss:// and kombu's own (amqp://, ...)
    check_redis_url(f"unix://{rest}")
    path, _, query = rest.partition("?")
    params = dict(parse_qsl(query))
    if "db" in params:
        params["virtual_host"] = params.pop("db")
    return f"redis+socket://{path}" + (f"?{urlencode(params)}" if params else "")
