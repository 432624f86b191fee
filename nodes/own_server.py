"""Is a configured server this very ComfyUI? Then a node's job sent there would never run.

ComfyUI runs one prompt at a time: a Remote Dispatch node waiting for a job queued on its
own ComfyUI waits behind itself until the job's timeout. So before anything is queued, each
server the job may go to is asked for its queue (`GET /queue`, stock ComfyUI): the one
whose running prompt is the prompt running this node is this ComfyUI, however its address
is written (loopback, a LAN name, a proxy). Such a server is avoided when the route has
others, and refused with the reason when it is the only one.

An answer is kept per URL for the life of the process (a URL that is this ComfyUI stays
so); a server that does not answer within a few seconds is taken as another one, and asked
again next time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ..dispatch_core import DispatchError, RoutingError
from ..dispatch_core.service import DispatchService

__all__ = ["own_servers", "refusal"]

PROBE_SECONDS = 3.0
"""How long a server may take to show its queue before it is taken as another ComfyUI."""
_answered: dict[str, bool] = {}
"""URL → whether it is this ComfyUI, for the URLs that answered."""


async def own_servers(
    service: DispatchService, names: Sequence[str], prompt_id: str | None
) -> frozenset[str]:
    """The servers among `names` that are this ComfyUI (none if no prompt is running)."""
    if prompt_id is None:
        return frozenset()
    found = await asyncio.gather(*(_is_own(service, name, prompt_id) for name in names))
    return frozenset(name for name, own in zip(names, found, strict=True) if own)


async def _is_own(service: DispatchService, name: str, prompt_id: str) -> bool:
    url = service.config.servers[name].url
    if url in _answered:
        return _answered[url]
    dispatcher = await service.ready()
    try:
        async with asyncio.timeout(PROBE_SECONDS):
            queue = await dispatcher.peer(name).queue()
    except (DispatchError, TimeoutError):
        return False  # offline or slow: not us, since we answer at once; asked again later
    _answered[url] = prompt_id in queue.running
    return _answered[url]


def refusal(service: DispatchService, names: Sequence[str]) -> RoutingError:
    """Why a job whose only servers are this ComfyUI is refused, and what to do."""
    shown = ", ".join(f"{n!r} ({service.config.servers[n].url})" for n in names)
    return RoutingError(
        f"server {shown} is this ComfyUI itself, which is busy running this node: a job "
        "queued there would wait behind the node waiting for it. Send it to another "
        "server, or add these nodes to this graph instead",
        field="server",
    )
