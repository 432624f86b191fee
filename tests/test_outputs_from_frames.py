"""A job whose whole run the WebSocket saw takes its outputs from the `executed` frames:
no `/history` request. A cached run, or one after a reconnect, still asks `/history`."""

from __future__ import annotations

from dispatch_core import Config, Dispatcher
from dispatch_core.testing import FakePeer

import workflows


def history_requests(peer: FakePeer) -> int:
    return sum(1 for _, path in peer.requests if path.startswith("/history"))


async def test_a_fresh_run_needs_no_history_request() -> None:
    async with FakePeer() as peer, Dispatcher(Config.single(peer.url)) as dispatcher:
        result = await dispatcher.run("default", workflows.invert(0x102030))
        assert history_requests(peer) == 0
        pixels = await result.files[0].read()
        entry = await dispatcher.peer("local").history(result.prompt_id)
    assert entry is not None and pixels
    outputs = {n: o for n, o in entry["outputs"].items() if o}
    assert result.outputs == outputs  # what the frames said is what the history says
    assert result.timings.started is not None


async def test_a_cached_run_asks_the_history() -> None:
    async with FakePeer() as peer, Dispatcher(Config.single(peer.url)) as dispatcher:
        first = await dispatcher.run("default", workflows.invert(0x405060))
        before = history_requests(peer)
        again = await dispatcher.run("default", workflows.invert(0x405060))
        assert history_requests(peer) == before + 1
    assert [f.filename for f in again.files] == [f.filename for f in first.files]
