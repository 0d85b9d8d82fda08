"""The client's network address: the peer's, or the one a trusted proxy forwarded."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

__all__ = ["UNIX_PEER", "UNKNOWN_SUBJECT", "IPAddress", "address_subject", "client_address"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

UNIX_PEER = "unix"  # a REELGRAPH_TRUSTED_PROXIES entry: a peer on a unix socket is a proxy
UNKNOWN_SUBJECT = "unknown"  # every connection whose client address is unknown counts here


@lru_cache(maxsize=32)
def _networks(trusted: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(
        ipaddress.ip_network(entry, strict=False) for entry in trusted if entry != UNIX_PEER
    )


def _ip(text: str) -> IPAddress | None:
    """An address, from a bare IP or a hop with a port ("1.2.3.4:5678", "[2001:db8::1]:443")."""
    text = text.strip()
    if text.startswith("["):
        text, bracket, _ = text[1:].partition("]")
        if not bracket:
            return None
    elif text.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has two colons or more
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
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

    X-Forwarded-For counts only when the peer is a trusted proxy (or, with the entry "unix",
    when the connection came over a unix socket and so has no peer address): its hops are
    read from the right, past every trusted proxy, to the first address that is not one.
    None when the address is unknown: no peer address and nothing trusted forwarded one, or a
    peer that is not an IP (an in-process test client).
    """
    trusted = tuple(trusted_proxies)
    networks = _networks(trusted)
    client = scope.get("client")
    if client:
        peer = _ip(str(client[0]))
        if peer is None or not any(peer in network for network in networks):
            return peer
    elif UNIX_PEER not in trusted:
        return None
    else:
        peer = None  # a unix socket: only the proxy on it could have connected
    address = peer
    for hop in reversed(_forwarded_for(scope.get("headers", []))):
        ip = _ip(hop)
        if ip is None:
            break  # a hop that is not an address: nothing to its left can be trusted
        address = ip
        if not any(ip in network for network in networks):
            break
    return address


def address_subject(address: IPAddress | None) -> str:
    """Whose allowance a connection uses: IPv4 per address, IPv6 per /64 (the block one
    subscriber usually holds). Unknown addresses all share one: a limit fails closed."""
    if address is None:
        return UNKNOWN_SUBJECT
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
