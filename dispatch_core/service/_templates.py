"""The service's templates: the store's files, with versions and the panels told.

A template's version is its fingerprint (sha256 of its file): an edit made on an older
read is refused, as config edits are. Every change is announced here, so no caller has
to remember to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigConflict, Conflict
from ..templates import Template, TemplateStore, check_name
from ._support import Events

__all__ = ["Templates"]


class Templates:
    """List, read, save, rename and delete templates; each change announced."""

    def __init__(self, store: TemplateStore, events: Events):
        self.store = store
        self._events = events

    def names(self) -> list[str]:
        return self.store.names()

    def list(self) -> list[dict[str, Any]]:
        return self.store.list()

    def fingerprint(self, name: str) -> str:
        return self.store.fingerprint(name)

    def load(self, name: str) -> Template:
        return self.store.load(check_name(name))

    def save(
        self,
        name: str,
        workflow: Any,
        *,
        parameters: Mapping[str, Any] | None = None,
        description: str = "",
        overwrite: bool = True,
        expected_version: str | None = None,
    ) -> Template:
        name = check_name(name)
        if not overwrite and name in self.store.names():
            raise Conflict(f"a template named {name!r} exists already", field="name")
        self._check_version(name, expected_version)
        template = self.store.save(name, workflow, parameters=parameters, description=description)
        self._announce()
        return template

    def rename(self, name: str, new: Any, *, expected_version: str | None = None) -> Template:
        name, new = check_name(name), check_name(new)
        self.store.load(name)  # NotFound when there is none
        if new != name and new in self.store.names():
            raise Conflict(f"a template named {new!r} exists already", field="name")
        self._check_version(name, expected_version)
        template = self.store.rename(name, new)
        self._announce()
        return template

    def delete(self, name: str, *, expected_version: str | None = None) -> None:
        name = check_name(name)
        self.store.load(name)
        self._check_version(name, expected_version)
        self.store.delete(name)
        self._announce()

    def _check_version(self, name: str, expected: str | None) -> None:
        current = self.store.fingerprint(name)
        if expected is not None and expected != current:
            raise ConfigConflict(
                f"template {name!r} changed since you read it; reload it and try again",
                current_version=current,
            )

    def _announce(self) -> None:
        self._events.emit("dispatch.templates", {"templates": self.store.list()})
