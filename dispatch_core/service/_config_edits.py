"""The edits the routes and the panel make to a config, each named and checked.

Each function returns an `Edit`: a change to the config's plain-data form, applied by
`ConfigStore.edit` under its lock to the current config, so that what it checks (a name
taken, a server in use) is what it changes. The config's own validation then checks the
result whole; nothing is written unless both pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError, Conflict, NotFound
from ._config_store import MASK, Edit

__all__ = [
    "add_server",
    "delete_route",
    "merge_settings",
    "put_route",
    "remove_server",
    "replace",
    "set_enabled",
    "update_server",
]

_SETTINGS = ("timeouts", "cache", "queue")


def replace(new: Mapping[str, Any]) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        data.clear()
        data.update(new)

    return edit


def merge_settings(settings: Mapping[str, Any]) -> Edit:
    """`timeouts`, `cache` and `queue`, each merged key by key into what is set."""
    unknown = sorted(set(settings) - set(_SETTINGS))
    if unknown:
        raise ConfigError("only 'timeouts', 'cache' and 'queue' are settings", key=unknown[0])

    def edit(data: dict[str, Any]) -> None:
        for section in _SETTINGS:
            if section in settings:
                if not isinstance(settings[section], Mapping):
                    raise ConfigError(f"'{section}' must be an object", key=section)
                if section == "queue":  # a backend's fields go with it: replaced whole
                    data[section] = dict(settings[section])
                else:
                    data[section].update(settings[section])

    return edit


def add_server(name: Any, fields: Mapping[str, Any]) -> Edit:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("give the server a name", key="name")

    def edit(data: dict[str, Any]) -> None:
        if name in data["servers"]:
            raise Conflict(f"a server named {name!r} exists already", field="name")
        data["servers"][name] = dict(fields)

    return edit


def update_server(name: str, changes: Mapping[str, Any]) -> Edit:
    """Change some fields of a server; `name` among them renames it, in routes too."""
    new_name = changes.get("name", name)
    if not isinstance(new_name, str) or not new_name.strip():
        raise ConfigError("a server name must be text", key="name")
    fields = {k: v for k, v in changes.items() if k != "name"}

    def edit(data: dict[str, Any]) -> None:
        _server(data, name)
        if new_name != name and new_name in data["servers"]:
            raise Conflict(f"a server named {new_name!r} exists already", field="name")
        server = data["servers"].pop(name)
        server["headers"] = _headers_after(server, fields, name)
        server.update({k: v for k, v in fields.items() if k != "headers"})
        data["servers"][new_name] = server
        _rename_in_routes(data, name, new_name)

    return edit


def remove_server(name: str) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        _server(data, name)
        only = [r for r, names in data["routes"].items() if _names(names) == [name]]
        if only:
            raise Conflict(
                f"route {', '.join(only)} sends every job to {name!r}: "
                "point it at another server or remove it first",
                field="routes",
            )
        del data["servers"][name]
        for route, names in data["routes"].items():
            data["routes"][route] = [n for n in _names(names) if n != name]

    return edit


def set_enabled(name: str, enabled: bool) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        _server(data, name)["enabled"] = enabled

    return edit


def put_route(name: str, servers: Any) -> Edit:
    servers = [servers] if isinstance(servers, str) else servers
    if not isinstance(servers, list) or not servers or not all(isinstance(s, str) for s in servers):
        raise ConfigError("'servers' must name one server or a list of them", key="servers")

    def edit(data: dict[str, Any]) -> None:
        data["routes"][name] = servers

    return edit


def delete_route(name: str) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        if name not in data["routes"]:
            raise NotFound(f"no route {name!r}", field="route")
        del data["routes"][name]

    return edit


def _server(data: dict[str, Any], name: str) -> dict[str, Any]:
    if name not in data["servers"]:
        known = ", ".join(data["servers"]) or "none configured"
        raise NotFound(f"no server {name!r} (servers: {known})", field="name")
    server: dict[str, Any] = data["servers"][name]
    return server


def _names(names: Any) -> list[Any]:
    return [names] if isinstance(names, str) else list(names)


def _rename_in_routes(data: dict[str, Any], old: str, new: str) -> None:
    for route, names in data["routes"].items():
        data["routes"][route] = [new if n == old else n for n in _names(names)]


def _headers_after(stored: dict[str, Any], changes: Mapping[str, Any], name: str) -> Any:
    """A server's headers after an edit. A masked value keeps what is stored, but only
    while the URL stays: the headers were meant for that host, not for a new one."""
    moved = "url" in changes and changes["url"] != stored.get("url")
    given = changes.get("headers")
    if given is None:
        return {} if moved else dict(stored.get("headers") or {})
    if not isinstance(given, Mapping):
        return given  # the config's own check names the mistake
    kept = stored.get("headers") or {}
    headers = {}
    for header, value in given.items():
        if value == MASK and (moved or header not in kept):
            why = "the URL changed" if moved else "no value is stored for it"
            key = f"servers.{name}.headers.{header}"
            raise ConfigError(f"{why}: send the header's value, not the mask", key=key)
        headers[header] = kept[header] if value == MASK else value
    return headers
