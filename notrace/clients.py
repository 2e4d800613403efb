"""Who is asking: the client address of a request, through trusted proxies only.

Runs in the server loop. The address is the socket peer's, unless that peer is in
NOTRACE_TRUSTED_PROXIES: then `X-Forwarded-For` is read from the right (the entry the
trusted proxy added) leftwards, skipping trusted proxies, and the first address that is
not one is the client. An entry that is not an IP address stops the walk at the last
trusted hop. From any other peer the header is ignored: anyone can send it.

The access log (NOTRACE_LOG_CLIENT_IP) and the rate limiter both use this one function.
"""
from __future__ import annotations

import ipaddress
from typing import Sequence

from aiohttp import web

__all__ = ["client_address", "parse_networks", "Network"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_CACHED = web.RequestKey("client_address", object)   # str, or None: computed once


def parse_networks(text: str) -> tuple[Network, ...]:
    """`10.0.0.1, 10.1.0.0/16, fd00::/8` -> networks (ValueError on a bad entry)."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False)
                 for part in text.replace(" ", ",").split(",") if part.strip())


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:          # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:                         # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _trusted(address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)


def client_address(request: web.Request, trusted: Sequence[Network]) -> str | None:
    """The client's IP address as text (None when the peer is unknown: a Unix socket)."""
    if _CACHED in request:
        return request[_CACHED]
    peer = _ip(request.remote or "")
    client = peer
    if peer is not None and _trusted(peer, trusted):
        hops = [hop for value in request.headers.getall("X-Forwarded-For", ())
                for hop in value.split(",")]
        for hop in reversed(hops):
            address = _ip(hop)
            if address is None:
                break
            client = address
            if not _trusted(address, trusted):
                break
    request[_CACHED] = str(client) if client is not None else None
    return request[_CACHED]
