"""What the farm can run, told as one ComfyUI would tell it.

`/object_info` is the union of every enabled server's: each node class any server has,
with the list choices (model files above all) of every server that has it, so that a
client (ComfyUI's page among them) offers everything some GPU can run, and the router
sends each prompt where its models are. LoadImage and kin list the gateway's own uploads,
since those are what a prompt may name. A server that cannot be asked is left out.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable, Mapping
from typing import Any

from ...errors import DispatchError
from ...service import DispatchService

__all__ = ["FarmInfo"]

_MAX_AGE = 30.0
"""Seconds the union is reused for a prompt's checks; `/object_info` itself reads anew."""


class FarmInfo:
    """The farm's object_info, system stats and model lists, from the peers."""

    def __init__(self, service: DispatchService, uploads: Callable[[], list[str]]):
        self.service = service
        self.uploads = uploads
        self._union: dict[str, Any] = {}
        self._read_at = float("-inf")

    def servers(self) -> tuple[str, ...]:
        try:
            return self.service.config.servers_for("auto")
        except DispatchError:
            return ()

    async def _each(self, ask: Callable[[Any], Any]) -> dict[str, Any]:
        """Every enabled server's answer to `ask(peer)`; one that fails is left out."""
        dispatcher = await self.service.ready()
        names = self.servers()
        found = await asyncio.gather(
            *(ask(dispatcher.peer(name)) for name in names), return_exceptions=True
        )
        for answer in found:
            if isinstance(answer, BaseException) and not isinstance(answer, DispatchError):
                raise answer
        return {n: a for n, a in zip(names, found, strict=True) if not isinstance(a, BaseException)}

    async def object_info(self, *, fresh: bool = True, uploads: bool = True) -> dict[str, Any]:
        """The union, read anew (or reused when younger than `_MAX_AGE` and not `fresh`);
        with `uploads`, LoadImage's list is the gateway's (a prompt's checks skip it)."""
        if fresh or time.monotonic() - self._read_at > _MAX_AGE:
            answers = await self._each(lambda peer: peer.object_info())
            self._union = union(answers.values())
            self._read_at = time.monotonic()
        if not uploads:
            return self._union
        listed = await asyncio.to_thread(self.uploads)
        return _with_uploads(self._union, listed)

    def cached(self) -> dict[str, Any]:
        """The union as last read (empty before the first read)."""
        return self._union

    async def system_stats(self) -> dict[str, Any]:
        """The first server's `system` block, every server's devices (named by server)."""
        answers = await self._each(lambda peer: peer.system_stats())
        system: dict[str, Any] = {}
        devices = []
        for name, stats in answers.items():
            if not system and isinstance(stats.get("system"), Mapping):
                system = dict(stats["system"])
            for device in stats.get("devices") or []:
                if isinstance(device, Mapping):
                    devices.append({**device, "name": f"{name}: {device.get('name', '?')}"})
        system.setdefault("os", "farm")
        system["argv"] = ["comfyui-dispatch", "serve"]
        return {"system": system, "devices": devices}

    async def models(self, folder: str | None = None) -> list[str]:
        """`/models` (folder names) or `/models/{folder}` (files), over every server."""
        path = "/models" if folder is None else f"/models/{folder}"
        return _merged_lists((await self._each(lambda peer: _get_list(peer, path))).values())

    async def embeddings(self) -> list[str]:
        return _merged_lists(
            (await self._each(lambda peer: _get_list(peer, "/embeddings"))).values()
        )


async def _get_list(peer: Any, path: str) -> list[str]:
    answer = await peer.get_json(path)
    return [str(x) for x in answer] if isinstance(answer, list) else []


def _merged_lists(lists: Any) -> list[str]:
    seen: dict[str, None] = {}
    for items in lists:
        seen.update(dict.fromkeys(items))
    return list(seen)


def union(infos: Any) -> dict[str, Any]:
    """Node classes of every server; a class on several keeps the first one's spec with
    every server's list choices merged."""
    merged: dict[str, Any] = {}
    for info in infos:
        for kind, spec in info.items() if isinstance(info, Mapping) else ():
            if not isinstance(spec, Mapping):
                continue
            if kind not in merged:
                merged[kind] = copy.deepcopy(dict(spec))
            else:
                _merge_choices(merged[kind], spec)
    return merged


def _merge_choices(into: dict[str, Any], spec: Mapping[str, Any]) -> None:
    for section in ("required", "optional"):
        mine = ((into.get("input") or {}).get(section)) or {}
        theirs = ((spec.get("input") or {}).get(section)) or {}
        if not isinstance(mine, dict) or not isinstance(theirs, Mapping):
            continue
        for name, entry in theirs.items():
            own = mine.get(name)
            if isinstance(own, list) and _is_list_combo(own) and _is_list_combo(entry):
                own[0] = _merged_lists([own[0], [x for x in entry[0] if isinstance(x, str)]])


def _is_list_combo(entry: Any) -> bool:
    return isinstance(entry, list) and bool(entry) and isinstance(entry[0], list)


def _with_uploads(info: dict[str, Any], uploads: list[str]) -> dict[str, Any]:
    """LoadImage's list (any combo marked `image_upload`): the gateway's uploads."""
    out = dict(info)
    for kind, spec in info.items():
        required = (spec.get("input") or {}).get("required") or {}
        for name, entry in required.items() if isinstance(required, dict) else ():
            options = entry[1] if _is_list_combo(entry) and len(entry) > 1 else None
            if isinstance(options, Mapping) and options.get("image_upload"):
                spec = copy.deepcopy(spec)
                spec["input"]["required"][name][0] = list(uploads)
                out[kind] = spec
    return out
