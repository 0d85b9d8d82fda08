"""The client's network address: the peer's, or the one a trusted proxy forwarded."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

__all__ = ["IPAddress", "client_address"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=32)
def _networks(trusted: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in trusted)


def _ip(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # one client, one address, whichever stack it came in on
    return ip


def _forwarded_for(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    hops: list[str] = []
    for name, value in headers:
        if name.lower() == b"x-forwarded-for":
            hops.extend(value.decode("latin-1").split(","))
    return hops


def client_address(scope: Mapping[str, Any], trusted_proxies: Iterable[str]) -> IPAddress | None:
    """The address of the client behind an ASGI connection (HTTP or websocket).

    X-Forwarded-For counts only when the peer is a trusted proxy: its hops are read from the
    right, past every trusted proxy, to the first address that is not one. A connection that
    has no IP address (a unix socket, an in-process test client) gives None.
    """
    client = scope.get("client")
    peer = _ip(str(client[0])) if client else None
    networks = _networks(tuple(trusted_proxies))
    if peer is None or not any(peer in network for network in networks):
        return peer
    address = peer
    for hop in reversed(_forwarded_for(scope.get("headers", []))):
        ip = _ip(hop)
        if ip is None:
            break  # a hop that is not an address: nothing to its left can be trusted
        address = ip
        if not any(ip in network for network in networks):
            break
    return address
