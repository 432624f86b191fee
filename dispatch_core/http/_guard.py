"""Who may call the `/dispatch` routes: the Host a request names and the site it comes from.

ComfyUI has no authentication, so a request that reaches the port is trusted. Two kinds
of request must not be: one from a page of another site (the browser says so in `Origin`
and `Sec-Fetch-Site`), and one from a page whose hostile name resolves to this machine
(DNS rebinding: the browser then sends `Host: evil.example:8188` with a matching Origin,
so an Origin check alone passes). The Host check closes the second: a server bound to
loopback answers only loopback names; one bound to the network answers IP literals, this
machine's own names and the names its operator allows (`DISPATCH_ALLOWED_HOSTS`).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

__all__ = ["HostPolicy", "Refusal", "refusal"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ALLOWED_HOSTS_ENV = "DISPATCH_ALLOWED_HOSTS"


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: an HTTP status, a message, and the header at fault."""

    status: int
    message: str
    field: str


@dataclass(frozen=True)
class HostPolicy:
    """The Host names a server answers, decided from the address it listens on."""

    loopback_only: bool = True
    """Bound to loopback: only loopback names (a rebinding name never is one)."""
    extra: frozenset[str] = field(default_factory=frozenset)
    """Names the operator allows besides (`DISPATCH_ALLOWED_HOSTS`, `--allow-host`)."""

    @classmethod
    def for_listen(cls, listen: str | Iterable[str], extra: Iterable[str] = ()) -> HostPolicy:
        """The policy of a server listening on `listen` (ComfyUI's `--listen` may list
        several addresses, comma-separated)."""
        addresses = listen.split(",") if isinstance(listen, str) else list(listen)
        loopback = all(_is_loopback(a.strip()) for a in addresses if a.strip())
        allowed = {_normal(name) for name in extra if name.strip()}
        allowed |= {_normal(n) for n in os.environ.get(_ALLOWED_HOSTS_ENV, "").split(",") if n}
        return cls(loopback_only=loopback, extra=frozenset(allowed))

    def allows(self, host: str) -> bool:
        name = _hostname(host)
        if not name:
            return False
        if _is_loopback(name) or name in self.extra:
            return True
        if self.loopback_only:
            return False
        return _is_ip(name) or name in _own_names()


def refusal(request: web.Request, policy: HostPolicy) -> Refusal | None:
    """Why `request` must not be served, or None when it may."""
    host = request.headers.get("Host", "")
    if not policy.allows(host):
        return Refusal(
            403,
            f"Host {host[:100]!r} is not a name of this machine: a page on another site "
            f"may be reaching it through DNS rebinding. Browse to it by its IP or loopback "
            f"address, or allow the name with {_ALLOWED_HOSTS_ENV}=name",
            "Host",
        )
    site = request.headers.get("Sec-Fetch-Site", "")
    unsafe = request.method not in SAFE_METHODS
    if site == "cross-site" or (unsafe and site == "same-site"):
        return Refusal(403, "a request from another site is refused", "Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if origin is not None and (unsafe or request.headers.get("Upgrade")):
        if origin == "null" or urlsplit(origin).netloc.lower() != host.lower():
            return Refusal(403, "a request from another origin is refused", "Origin")
    return None


def _hostname(host: str) -> str:
    """The name of a Host header, without port or brackets, lower case, no final dot."""
    host = host.strip()
    if host.startswith("["):
        name = host[1 : host.find("]")] if "]" in host else ""
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return _normal(name)


def _normal(name: str) -> str:
    return name.strip().lower().rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_loopback(address: str) -> bool:
    name = _normal(address.strip("[]"))
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _own_names() -> set[str]:
    """This machine's names as a LAN client would type them (no DNS asked: it may hang)."""
    name = _normal(socket.gethostname())
    return {name, f"{name}.local"}
