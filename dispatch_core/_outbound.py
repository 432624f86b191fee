"""Which addresses a URL that a request or a config names (a webhook receiver) may reach.

Peers are the operator's own servers, wherever they are. A webhook's URL may come from a
request, so by default it may reach only public addresses: never loopback, private,
link-local (cloud metadata at 169.254.169.254), carrier-grade NAT, multicast or reserved
ranges, whether the URL names the address or a name that resolves to one. The check is
made on the addresses the connection will use (a resolver of our own), not on the name
beforehand, so a name that resolves to a public address when checked and to an internal
one when connecting (DNS rebinding) is refused too. The operator may allow loopback and
private addresses (`serve --webhooks-internal`, `DISPATCH_WEBHOOKS_INTERNAL=1`), for a
receiver on this machine or the LAN; link-local (where clouds serve their instance
credentials), multicast, unspecified and reserved addresses stay refused even then.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from .errors import InputError

__all__ = [
    "InternalAddress",
    "OutboundResolver",
    "RefusedName",
    "is_internal",
    "reachable",
    "refuse_internal_literal",
]


class InternalAddress(InputError):
    """A URL that would reach an address the policy keeps out of reach."""


class RefusedName(OSError):
    """A name that resolves only to addresses out of reach (raised inside aiohttp's connect,
    which wraps it: look for it along `__cause__`)."""


_SHARED = ipaddress.ip_network("100.64.0.0/10")
"""Carrier-grade NAT: a provider's LAN, which Python counts neither private nor global."""


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address, an IPv4 one mapped into IPv6 as itself."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_internal(address: str) -> bool:
    """Anything but a public unicast address."""
    ip = _ip(address)
    return not ip.is_global or ip.is_multicast


def reachable(address: str, *, allow_internal: bool) -> bool:
    """Whether the policy lets a webhook reach `address`."""
    if not is_internal(address):
        return True
    ip = _ip(address)
    reserved = ip.is_reserved and not ip.is_loopback  # ::1 lies in IPv6's reserved ::/8
    if ip.is_link_local or ip.is_multicast or ip.is_unspecified or reserved:
        return False  # before private: Python counts 169.254/16 and 240/4 private too
    lan = ip.is_loopback or ip.is_private or ip in _SHARED
    return allow_internal and lan


def refuse_internal_literal(host: str, *, field: str, allow_internal: bool = False) -> None:
    """Refuse at once a URL naming an address out of reach, or `localhost`; names are
    checked again, resolved, when the request is made."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        if not allow_internal:
            message = f"{host!r} is this machine, which webhooks may not reach"
            raise InternalAddress(message, field=field)
        return
    try:
        allowed = reachable(name, allow_internal=allow_internal)
    except ValueError:
        return  # a name: checked once resolved
    if not allowed:
        raise InternalAddress(
            f"{host!r} is an internal address, which webhooks may not reach (loopback and "
            "private ones only if the operator allows them: serve --webhooks-internal, "
            "DISPATCH_WEBHOOKS_INTERNAL=1)",
            field=field,
        )


class OutboundResolver(AbstractResolver):
    """aiohttp's resolver, keeping only the addresses the policy lets us reach."""

    def __init__(self, *, allow_internal: bool = False) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self.allow_internal = allow_internal

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]:
        found = await self._inner.resolve(host, port, family)
        allow = self.allow_internal
        kept = [e for e in found if reachable(str(e["host"]), allow_internal=allow)]
        if not kept:
            raise RefusedName(f"{host} resolves only to internal addresses, which are refused")
        return kept

    async def close(self) -> None:
        await self._inner.close()
