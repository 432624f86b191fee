"""Servers, routes, timeouts and cache settings: loaded strictly, saved atomically.

A config is JSON:

    {"servers": {"fast": "http://10.0.0.1:8188",
                 "edit": {"url": "http://10.0.0.2:8188", "max_in_flight": 1,
                          "headers": {"Authorization": "Bearer …"}, "enabled": true, "weight": 1}},
     "routes": {"generate": "fast", "edit": ["edit", "fast"]},
     "timeouts": {"job": 300, "poll_interval": 1.2, "request": 30},
     "cache": {"enabled": true, "fuzzy": false, "max_distance": 3, "max_entries": 500},
     "queue": {"backend": "local"}}

`queue` says where jobs wait: in this process (`local`, the default) or in a Redis shared
by several dispatcher processes (`{"backend": "redis", "url": "redis://host:6379/0"}`).

Every mistake is reported with the dotted key at fault; unknown keys are refused so that a
typo never silently falls back to a default.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ._files import write_atomically
from .errors import ConfigError, NotFound, RoutingError

__all__ = [
    "AUTO",
    "CacheSettings",
    "Config",
    "QueueSettings",
    "ServerConfig",
    "Timeouts",
    "WebhookSettings",
    "check_webhook_url",
    "load_config",
    "save_config",
]

T = TypeVar("T")
AUTO = "auto"
"""A route of every enabled server."""
MAX_NAME = 64
"""Longest server or route name: it is a path segment of the routes and a label."""
_NAME_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/\\?#%]")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")
_MAX_HEADER_VALUE = 8192
_MAX_NUMBER = 1e9
"""Above any sensible timeout, weight or count: refuses 1e308 and the like."""


@dataclass(frozen=True)
class ServerConfig:
    """One ComfyUI peer."""

    name: str
    url: str
    """Base URL, http or https, without a trailing slash."""
    max_in_flight: int = 1
    """Jobs sent to this peer at once; ComfyUI runs one at a time, so 1 keeps queues here."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Sent with every request, for peers behind an auth proxy. Never shown back in clear."""
    enabled: bool = True
    """A disabled server gets no new jobs."""
    weight: float = 1.0
    """Relative speed in a pool: a server of weight 2 is expected to finish jobs twice as fast."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "max_in_flight": self.max_in_flight,
            "headers": dict(self.headers),
            "enabled": self.enabled,
            "weight": self.weight,
        }


@dataclass(frozen=True)
class Timeouts:
    """How long to wait, in seconds."""

    job: float = 300.0
    """Longest wait for one job, from acceptance to images in hand."""
    poll_interval: float = 1.2
    """How often to ask `/history` while the peer's WebSocket is down."""
    request: float = 30.0
    """Longest wait for one HTTP answer from a peer."""


@dataclass(frozen=True)
class CacheSettings:
    """The result cache, keyed by an explicit cache key per route."""

    enabled: bool = True
    fuzzy: bool = False
    """Also hit on a key within `max_distance` edits (a prompt an LLM rephrased slightly)."""
    max_distance: int = 3
    max_entries: int = 500


QUEUE_BACKENDS = ("local", "redis")
_REDIS_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class QueueSettings:
    """Where jobs wait and who runs them, read when the dispatcher starts."""

    backend: str = "local"
    """`local`: this process alone; `redis`: every process sharing `url` acts as one."""
    url: str | None = None
    """The Redis (7+) or Valkey URL, `redis://host:6379/0`; required for `redis`."""


@dataclass(frozen=True)
class WebhookSettings:
    """Where jobs' outcomes are sent when they end (a job may name its own URL instead)."""

    url: str | None = None
    """For every job whose route names none."""
    routes: Mapping[str, str] = field(default_factory=dict)
    """Route → URL, for that route's jobs."""
    retry_for: float = 600.0
    """Seconds after a job's end during which a failed delivery is tried again."""

    def for_route(self, route: str) -> str | None:
        return self.routes.get(route, self.url)


@dataclass(frozen=True)
class Config:
    """The whole dispatcher configuration."""

    servers: Mapping[str, ServerConfig] = field(default_factory=dict)
    routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Workflow type → server names; more than one name makes a pool; `("auto",)` pools
    every enabled server, and the dispatcher picks among those that have what it needs."""
    timeouts: Timeouts = field(default_factory=Timeouts)
    cache: CacheSettings = field(default_factory=CacheSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)

    def servers_for(self, route: str, *, server: str | None = None) -> tuple[str, ...]:
        """The enabled servers a job of `route` may run on, or just `server` when named.

        The one resolver of routes: an unknown name is NotFound, a route whose servers
        are all disabled a RoutingError, each saying what to do. `"auto"` is every enabled
        server even when no route has that name (a configured one takes its place).
        """
        if server is not None:
            if server not in self.servers:
                known = ", ".join(sorted(self.servers)) or "none configured"
                raise NotFound(f"unknown server {server!r} (known: {known})", field="server")
            if not self.servers[server].enabled:
                raise RoutingError(f"server {server!r} is disabled; enable it or pick another")
            return (server,)
        if route == AUTO and AUTO not in self.routes:
            route_servers: tuple[str, ...] = (AUTO,)  # "auto" always names every server
        elif route not in self.routes:
            known = ", ".join(sorted(self.routes)) or "none configured"
            raise NotFound(f"unknown route {route!r} (known: {known})", field="route")
        else:
            route_servers = self.routes[route]
        names = tuple(self.servers) if route_servers == (AUTO,) else route_servers
        enabled = tuple(name for name in names if self.servers[name].enabled)
        if not enabled:
            raise RoutingError(
                f"every server of route {route!r} is disabled: "
                f"{', '.join(names) or 'none configured'}; enable one or route to another server"
            )
        return enabled

    @classmethod
    def from_dict(cls, data: Any, *, path: str | None = None) -> Config:
        return _Parser(path).config(data)

    @classmethod
    def single(cls, url: str, *, name: str = "local", route: str = "default") -> Config:
        """A config with one server and one route to it, for quick use without a file."""
        return cls.from_dict({"servers": {name: url}, "routes": {route: name}})

    def to_dict(self) -> dict[str, Any]:
        return {
            "servers": {name: server.to_dict() for name, server in self.servers.items()},
            "routes": {
                name: names[0] if len(names) == 1 else list(names)
                for name, names in self.routes.items()
            },
            "timeouts": {
                "job": self.timeouts.job,
                "poll_interval": self.timeouts.poll_interval,
                "request": self.timeouts.request,
            },
            "cache": {
                "enabled": self.cache.enabled,
                "fuzzy": self.cache.fuzzy,
                "max_distance": self.cache.max_distance,
                "max_entries": self.cache.max_entries,
            },
            "queue": {"backend": self.queue.backend}
            | ({"url": self.queue.url} if self.queue.url is not None else {}),
        } | (
            {"webhooks": _webhooks_dict(self.webhooks)}
            if self.webhooks != WebhookSettings()
            else {}
        )


def _webhooks_dict(webhooks: WebhookSettings) -> dict[str, Any]:
    return {"url": webhooks.url, "routes": dict(webhooks.routes), "retry_for": webhooks.retry_for}


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; every problem names the file and the key."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", path=where) from None
    except OSError as error:
        raise ConfigError(f"cannot read: {error.strerror}", path=where) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}",
            path=where,
        ) from None
    return Config.from_dict(data, path=where)


def save_config(config: Config, path: str | os.PathLike[str]) -> None:
    """Write atomically: a crash mid-write leaves the old file, never a broken one."""
    write_atomically(path, (json.dumps(config.to_dict(), indent=2) + "\n").encode())


class _Parser:
    """Validates raw JSON into frozen dataclasses, naming the key at fault."""

    def __init__(self, path: str | None):
        self.path = path

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, key=key, path=self.path)

    def config(self, data: Any) -> Config:
        allowed = {"servers", "routes", "timeouts", "cache", "webhooks", "queue"}
        obj = self.mapping("(top level)", data, allowed)
        servers = self.servers(obj.get("servers", {}))
        routes = self.routes(obj.get("routes", {}), servers)
        return Config(
            servers=servers,
            routes=routes,
            timeouts=self.timeouts(obj.get("timeouts", {})),
            cache=self.cache(obj.get("cache", {})),
            webhooks=self.webhooks(obj.get("webhooks", {})),
            queue=self.queue(obj.get("queue", {})),
        )

    def mapping(self, key: str, value: Any, allowed: set[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected an object, got {_kind(value)}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(
                f"{key}.{unknown[0]}" if key != "(top level)" else unknown[0],
                f"unknown key (allowed: {', '.join(sorted(allowed))})",
            )
        return value

    def servers(self, value: Any) -> dict[str, ServerConfig]:
        if not isinstance(value, Mapping):
            raise self.fail("servers", f"expected an object of name → URL, got {_kind(value)}")
        if AUTO in value:
            message = f"{AUTO!r} means every server in a route: name this one otherwise"
            raise self.fail(f"servers.{AUTO}", message)
        return {self.name("servers", n): self.server(n, v) for n, v in value.items()}

    def name(self, section: str, name: Any) -> str:
        if not isinstance(name, str) or not name.strip():
            raise self.fail(section, f"a name must be a non-empty string, got {_kind(name)}")
        if len(name) > MAX_NAME or name != name.strip() or _NAME_FORBIDDEN.search(name):
            raise self.fail(
                section,
                f"name {name[:MAX_NAME]!r}: use up to {MAX_NAME} characters, without "
                "control characters, / \\ ? # % or spaces at either end",
            )
        return name

    def server(self, name: str, value: Any) -> ServerConfig:
        key = f"servers.{name}"
        if isinstance(value, str):
            return ServerConfig(name=name, url=self.url(f"{key}", value))
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a URL string or an object, got {_kind(value)}")
        allowed = {"url", "max_in_flight", "headers", "enabled", "weight"}
        obj = self.mapping(key, value, allowed)
        if "url" not in obj:
            raise self.fail(f"{key}.url", "missing: every server needs a URL")
        return ServerConfig(
            name=name,
            url=self.url(f"{key}.url", obj["url"]),
            max_in_flight=self.number(f"{key}.max_in_flight", obj.get("max_in_flight", 1), int, 1),
            headers=self.headers(f"{key}.headers", obj.get("headers", {})),
            enabled=self.boolean(f"{key}.enabled", obj.get("enabled", True)),
            weight=self.number(f"{key}.weight", obj.get("weight", 1.0), float, 0.0, strict=True),
        )

    def url(self, key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"expected a URL string, got {_kind(value)}")
        parts = urlsplit(value.strip())
        if parts.username is not None or parts.password is not None:
            raise self.fail(
                key,
                "a server URL cannot hold a user name or password (it would be shown and "
                'logged): give them as a header instead, "headers": {"Authorization": '
                '"Basic <base64 of user:password>"}',
            )
        if parts.scheme not in ("http", "https"):
            raise self.fail(key, f"{value!r} is not an http:// or https:// URL")
        if not parts.hostname:
            raise self.fail(key, f"{value!r} has no host")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise self.fail(key, f"{value!r} has an invalid port") from None
        if parts.query or parts.fragment:
            raise self.fail(key, f"{value!r}: a server URL takes no query or fragment")
        return value.strip().rstrip("/")

    def headers(self, key: str, value: Any) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected an object of header → value, got {_kind(value)}")
        for name, header in value.items():
            if not isinstance(header, str) or not isinstance(name, str) or not name:
                raise self.fail(f"{key}.{name}", "header names and values must be strings")
            if not _HEADER_NAME.fullmatch(name):
                raise self.fail(key, f"header name {name[:100]!r}: use letters, digits and -")
            if len(header) > _MAX_HEADER_VALUE or any(c in header for c in "\r\n\0"):
                raise self.fail(
                    f"{key}.{name}",
                    "a header value is one line (no line break) of at most 8192 characters",
                )
        return dict(value)

    def routes(self, value: Any, servers: Mapping[str, ServerConfig]) -> dict[str, tuple[str, ...]]:
        if not isinstance(value, Mapping):
            raise self.fail("routes", f"expected an object of type → server(s), got {_kind(value)}")
        routes: dict[str, tuple[str, ...]] = {}
        for name, target in value.items():
            key = f"routes.{self.name('routes', name)}"
            names = (target,) if isinstance(target, str) else target
            if (
                not isinstance(names, (list, tuple))
                or not names
                or not all(isinstance(n, str) for n in names)
            ):
                raise self.fail(key, "expected a server name or a non-empty list of server names")
            if names == (AUTO,) or names == [AUTO]:
                routes[name] = (AUTO,)
                continue
            for server in names:
                if server not in servers:
                    known = ", ".join(sorted(servers)) or "none configured"
                    raise self.fail(key, f"unknown server {server!r} (known: {known})")
            if len(set(names)) != len(names):
                raise self.fail(key, "a server is listed twice in this pool")
            routes[name] = tuple(names)
        return routes

    def timeouts(self, value: Any) -> Timeouts:
        obj = self.mapping("timeouts", value, {"job", "poll_interval", "request"})
        base = Timeouts()
        return Timeouts(
            job=self.number("timeouts.job", obj.get("job", base.job), float, 0, strict=True),
            poll_interval=self.number(
                "timeouts.poll_interval",
                obj.get("poll_interval", base.poll_interval),
                float,
                0,
                strict=True,
            ),
            request=self.number(
                "timeouts.request", obj.get("request", base.request), float, 0, strict=True
            ),
        )

    def cache(self, value: Any) -> CacheSettings:
        obj = self.mapping("cache", value, {"enabled", "fuzzy", "max_distance", "max_entries"})
        base = CacheSettings()
        return CacheSettings(
            enabled=self.boolean("cache.enabled", obj.get("enabled", base.enabled)),
            fuzzy=self.boolean("cache.fuzzy", obj.get("fuzzy", base.fuzzy)),
            max_distance=self.number(
                "cache.max_distance", obj.get("max_distance", base.max_distance), int, 0
            ),
            max_entries=self.number(
                "cache.max_entries", obj.get("max_entries", base.max_entries), int, 1
            ),
        )

    def webhooks(self, value: Any) -> WebhookSettings:
        obj = self.mapping("webhooks", value, {"url", "routes", "retry_for"})
        routes = obj.get("routes", {})
        if not isinstance(routes, Mapping):
            raise self.fail(
                "webhooks.routes", f"expected an object of route → URL, got {_kind(routes)}"
            )
        url = obj.get("url")
        return WebhookSettings(
            url=None if url is None else self.webhook_url("webhooks.url", url),
            routes={
                self.name("webhooks.routes", name): self.webhook_url(f"webhooks.routes.{name}", u)
                for name, u in routes.items()
            },
            retry_for=self.number("webhooks.retry_for", obj.get("retry_for", 600.0), float, 0),
        )

    def webhook_url(self, key: str, value: Any) -> str:
        """An http(s) URL without credentials; unlike a server's, it may carry a query
        (receivers often take their own token there)."""
        try:
            return check_webhook_url(value)
        except ValueError as error:
            raise self.fail(key, str(error)) from None

    def queue(self, value: Any) -> QueueSettings:
        obj = self.mapping("queue", value, {"backend", "url"})
        backend = obj.get("backend", "local")
        if backend not in QUEUE_BACKENDS:
            raise self.fail("queue.backend", f"expected 'local' or 'redis', got {_kind(backend)}")
        url = obj.get("url")
        if backend == "local":
            if url is not None:
                raise self.fail("queue.url", "only the 'redis' backend takes a URL")
            return QueueSettings()
        if url is None:
            raise self.fail("queue.url", "missing: the 'redis' backend needs redis://host:port/db")
        return QueueSettings(backend=backend, url=self.redis_url(url))

    def redis_url(self, value: Any) -> str:
        key = "queue.url"
        if not isinstance(value, str) or len(value) > 2048:
            raise self.fail(key, f"expected a redis:// URL string, got {_kind(value)[:100]}")
        parts = urlsplit(value.strip())
        if parts.scheme not in _REDIS_SCHEMES:
            raise self.fail(key, f"{value[:200]!r} is not a redis://, rediss:// or unix:// URL")
        if parts.username is not None or parts.password is not None:
            raise self.fail(
                key,
                "a Redis URL here cannot hold a password (the config is shown and logged): "
                "set DISPATCH_REDIS_PASSWORD in the environment instead",
            )
        if parts.scheme != "unix" and not parts.hostname:
            raise self.fail(key, f"{value[:200]!r} has no host")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise self.fail(key, f"{value[:200]!r} has an invalid port") from None
        if parts.fragment or any(c in value for c in "\r\n\0 "):
            raise self.fail(key, f"{value[:200]!r}: a Redis URL takes no fragment or spaces")
        return value.strip()

    def boolean(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {_kind(value)}")
        return value

    def number(
        self,
        key: str,
        value: Any,
        kind: Callable[[Any], T],
        minimum: float,
        *,
        strict: bool = False,
    ) -> T:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"expected a number, got {_kind(value)}")
        if kind is int and not float(value).is_integer():
            raise self.fail(key, f"expected a whole number, got {value!r}")
        if not math.isfinite(value) or abs(value) > _MAX_NUMBER:
            raise self.fail(key, f"expected a number up to {_MAX_NUMBER:g}, got {value!r}")
        if value < minimum or (strict and value == minimum):
            bound = "greater than" if strict else "at least"
            raise self.fail(key, f"must be {bound} {minimum:g}, got {value!r}")
        return kind(value)


def check_webhook_url(value: Any) -> str:
    """`value` as a webhook URL, or ValueError saying why not. Which addresses it may
    reach is decided when it is sent (`_outbound`), once its name is resolved."""
    if not isinstance(value, str) or len(value) > 2048:
        raise ValueError(f"expected a URL string of at most 2048 characters, got {_kind(value)}")
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"{value[:100]!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value[:100]!r} is not an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise ValueError("a webhook URL takes no user name, password or fragment")
    if any(c in value for c in "\r\n\0 "):
        raise ValueError("a webhook URL has no spaces or line breaks")
    return value.strip()


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
