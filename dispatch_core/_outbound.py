"""Which addresses a URL that a request or a config names (a webhook receiver) may reach.

Peers are the operator's own servers, wherever they are. A webhook's URL may come from a
request, so by default it may reach only public addresses: never loopback, private,
link-local (cloud metadata at 169.254.169.254), carrier-grade NAT, multicast or reserved
ranges, whether the URL names the address or a name that resolves to one. The check is
made on the addresses the connection will use (a resolver of our own), not on the name
beforehand, so a name that resolves to a public address when checked and to an internal
one when connecting (DNS rebinding) is refused too. The operator may allow internal
addresses (`serve --webhooks-internal`, `DISPATCH_WEBHOOKS_INTERNAL=1`).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from .errors import InputError

__all__ = ["InternalAddress", "OutboundResolver", "is_internal", "refuse_internal_literal"]


class InternalAddress(InputError):
    """A URL that would reach an address the policy keeps out of reach."""


def is_internal(address: str) -> bool:
    """Anything but a public unicast address; an IPv4 address mapped into IPv6 counts as
    itself."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def refuse_internal_literal(host: str, *, field: str) -> None:
    """Refuse at once a URL naming an internal address or `localhost`; names are checked
    again, resolved, when the request is made."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        raise InternalAddress(
            f"{host!r} is this machine, which webhooks may not reach", field=field
        )
    try:
        internal = is_internal(name)
    except ValueError:
        return  # a name: checked once resolved
    if internal:
        raise InternalAddress(
            f"{host!r} is an internal address, which webhooks may not reach unless the "
            "operator allows it (serve --webhooks-internal, DISPATCH_WEBHOOKS_INTERNAL=1)",
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
        if self.allow_internal:
            return found
        kept = [entry for entry in found if not is_internal(str(entry["host"]))]
        if not kept:
            raise OSError(f"{host} resolves only to internal addresses, which are refused")
        return kept

    async def close(self) -> None:
        await self._inner.close()
