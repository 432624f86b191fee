"""A peer may be hostile: every read from it is bounded and inert (THREATS.md, 2, 5 and 6).

Each table is one class of hostile peer; each case names what the peer does, and checks
what must be seen: the server offline with a reason in our words, a job's error without the
peer's bytes or our secrets, no redirect followed (the target sees nothing), a frame that
cannot be read dropped with the socket kept, a download refused while it streams.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from dispatch_core import (
    BadResponse,
    Config,
    Dispatcher,
    DispatchTimeout,
    ExecutionFailed,
    PeerUnreachable,
    PromptRejected,
    WorkflowBuilder,
)
from dispatch_core._peer_http import MASK, scrub, secrets_of, shown_url
from dispatch_core.config import ServerConfig
from dispatch_core.testing import BannerServer, FakePeer, HostilePeer
from dispatch_core.testing._png import Image, encode_png

import workflows

PNG = encode_png(Image.solid(8, 8, (200, 10, 10)))

TOKEN = "s3cr3t-t0ken-do-not-show"
KEY = "k3y-do-not-show"
PASSWORD = "pa55-w0rd-do-not-show"
BANNER = b"SSH-2.0-OpenSSH_9.6 secret-banner\r\n"
BASIC = base64.b64encode(f"user:{PASSWORD}".encode()).decode()
NEVER = (TOKEN, KEY, PASSWORD, BASIC, "secret-banner", "OpenSSH")
"""What no error, status or event may ever show."""
ECHOED = f"Authorization: Bearer {TOKEN}".encode()
REQUEST = 0.5
"""Seconds: `timeouts.request` in these tests, so that a drip fails fast."""


def assert_inert(*texts: object) -> None:
    for text in texts:
        shown = text if isinstance(text, str) else repr(text)
        leaked = [secret for secret in NEVER if secret in shown]
        assert not leaked, f"{leaked} shown in {shown[:500]!r}"


def config_for(
    url: str, *, job: float = 5.0, password: bool = False, request: float = REQUEST
) -> Config:
    """One server `gpu` with secrets to keep: headers, or (with `password`) URL credentials.

    The short request deadline is for the cases about deadlines; others may take a longer
    one, so that a busy machine does not turn a slow answer into a retry they do not test.
    """
    if password:
        url = url.replace("http://", f"http://user:{PASSWORD}@")
        headers = {"X-Api-Key": KEY}
    else:
        headers = {"Authorization": f"Bearer {TOKEN}", "X-Api-Key": KEY}
    config = Config.from_dict(
        {
            "servers": {"gpu": {"url": "http://placeholder", "headers": headers}},
            "routes": {"gen": "gpu"},
            "timeouts": {"request": request, "job": job, "poll_interval": 0.1},
        }
    )
    # A config file refuses URL credentials; a ServerConfig made in code can still hold
    # them, and the peer client must keep them out of everything it says.
    server = dataclasses.replace(config.servers["gpu"], url=url)
    return dataclasses.replace(config, servers={"gpu": server})


@pytest.fixture
async def hostile() -> AsyncIterator[HostilePeer]:
    async with HostilePeer() as peer:
        yield peer


@pytest.fixture
async def target() -> AsyncIterator[FakePeer]:
    """Where a hostile peer redirects: an internal service that must never hear from us."""
    async with FakePeer() as peer:
        yield peer


Setup = Callable[[HostilePeer, str], None]


def nested(path: str, depth: int) -> Setup:
    return lambda peer, _: peer.nested.update({path: depth})


def echo(path: str, status: int, form: str) -> Setup:
    return lambda peer, _: peer.echo_headers.update({path: (status, form)})


def redirect(path: str, status: int = 302) -> Setup:
    return lambda peer, url: peer.redirects.update({path: (status, url)})


def drip(path: str, seconds: float = 0.2) -> Setup:
    return lambda peer, _: peer.drips.update({path: seconds})


def raw(path: str, body: str | bytes, status: int = 200, kind: str = "application/json") -> Setup:
    data = body.encode() if isinstance(body, str) else body
    return lambda peer, _: peer.raw.update({path: (status, kind, data)})


def hang(peer: HostilePeer, _: str) -> None:
    peer.hang = True


# -- a server's status ------------------------------------------------------------------

STATUS: list[tuple[str, Setup, bool, str]] = [
    ("echoes our headers as text", echo("/system_stats", 200, "text"), False, "not JSON ("),
    ("echoes them in an HTML 502", echo("/system_stats", 502, "html"), False, "answered HTTP 502"),
    ("echoes them from /prompt", echo("/prompt", 200, "text"), False, "GET /prompt answered"),
    ("echoes them in JSON fields", echo("/system_stats", 200, "json"), True, ": ********"),
    ("redirects (302)", redirect("/system_stats"), False, "answered a redirect (HTTP 302)"),
    ("redirects (301)", redirect("/system_stats", 301), False, "redirects are not followed"),
    ("redirects (307)", redirect("/system_stats", 307), False, "answered a redirect (HTTP 307)"),
    ("redirects (308)", redirect("/system_stats", 308), False, "answered a redirect (HTTP 308)"),
    ("redirects /prompt", redirect("/prompt"), False, "GET /prompt answered a redirect"),
    ("nests JSON 100,000 deep", nested("/system_stats", 100_000), False, "deeper than 64"),
    ("nests JSON 65 deep", nested("/system_stats", 65), False, "nested deeper than 64 levels"),
    ("nests JSON in /prompt", nested("/prompt", 5_000), False, "GET /prompt answered JSON"),
    ("answers a 400-digit integer", raw("/system_stats", "1" * 400), False, "400 digits"),
    ("answers NaN", raw("/system_stats", '{"a": NaN}'), False, "NaN is not a JSON number"),
    ("answers binary bytes", raw("/system_stats", b"\xff\x00" * 64), False, "(128 bytes)"),
    ("drips a byte at a time", drip("/system_stats"), False, "no answer within 0.5 s"),
    ("drips /prompt", drip("/prompt"), False, "no answer within"),
    ("never answers", hang, False, "no answer within 0.5 s"),
    ("answers a list", raw("/system_stats", "[1, 2]"), False, "did not answer a JSON object"),
    ("answers fields of the wrong types", raw("/system_stats", '{"devices": 5}'), True, ""),
    ("answers devices of the wrong types", raw("/system_stats", '{"devices": [7]}'), True, ""),
    ("answers a list to /prompt", raw("/prompt", "[[[]]]"), True, ""),
]


@pytest.mark.parametrize(
    ("setup", "online", "words"), [c[1:] for c in STATUS], ids=[c[0] for c in STATUS]
)
async def test_a_hostile_server_is_shown_offline_in_our_words(
    hostile: HostilePeer, target: FakePeer, setup: Setup, online: bool, words: str
) -> None:
    setup(hostile, target.url + "/internal")
    async with Dispatcher(config_for(hostile.url)) as dispatcher:
        began = time.monotonic()
        states = await dispatcher.status()
        assert time.monotonic() - began < 10 * REQUEST  # a generous bound on the deadline
        tested = await dispatcher.server_status("gpu")
    for state in (states["gpu"], tested):
        assert state.online is online
        assert words in str(state.error if not online else state.comfyui_version)
        assert_inert(json.dumps(dataclasses.asdict(state)))
    assert target.requests == []


async def test_hostile_servers_neither_hold_up_nor_fail_the_round(
    hostile: HostilePeer, target: FakePeer
) -> None:
    hostile.drips["/system_stats"] = 0.2
    async with BannerServer() as banner:
        servers = {"drip": hostile.url, "banner": banner.url, "fine": target.url}
        config = Config.from_dict({"servers": servers, "timeouts": {"request": REQUEST}})
        async with Dispatcher(config) as dispatcher:
            began = time.monotonic()
            states = await dispatcher.status()
            assert time.monotonic() - began < 10 * REQUEST
    assert {n: s.online for n, s in states.items()} == {
        "drip": False,
        "banner": False,
        "fine": True,
    }
    assert "no answer within" in str(states["drip"].error)
    assert "did not answer HTTP" in str(states["banner"].error)


INVENTORIES: list[tuple[str, Setup]] = [
    ("specs of the wrong shape", raw("/object_info", '{"CheckpointLoaderSimple": {"input": [1]}}')),
    (
        "sections of the wrong shape",
        raw("/object_info", '{"LoraLoader": {"input": {"required": 7}}}'),
    ),
    ("JSON nested 100,000 deep", nested("/object_info", 100_000)),
    ("a redirect", redirect("/object_info")),
    ("our headers, echoed", echo("/object_info", 200, "text")),
]


@pytest.mark.parametrize("setup", [c[1] for c in INVENTORIES], ids=[c[0] for c in INVENTORIES])
async def test_a_hostile_inventory_is_left_out(
    hostile: HostilePeer, target: FakePeer, setup: Setup
) -> None:
    setup(hostile, target.url + "/internal")
    async with Dispatcher(config_for(hostile.url)) as dispatcher:
        assert await dispatcher.refresh_inventory() == {}
    assert target.requests == []


RAW_TCP: list[tuple[str, bytes, bool, str]] = [
    ("an SSH banner", BANNER, False, "did not answer HTTP: is this a ComfyUI server?"),
    ("an SSH banner, then a hang-up", BANNER, True, "did not answer HTTP"),
    ("binary bytes", b"\x00\xff\x16\x03" * 40, True, "did not answer HTTP"),
    (
        "a status reason quoting our token",
        f"HTTP/1.1 500 Bearer {TOKEN}\r\nContent-Length: 0\r\n\r\n".encode(),
        False,
        "GET /system_stats answered HTTP 500 (server",
    ),
    (
        "a body quoting our token",
        b"HTTP/1.1 200 OK\r\nContent-Length: 46\r\n\r\n" + ECHOED,
        False,
        "not JSON (46 bytes)",
    ),
    (
        "headers quoting our token, then a hang-up",
        b"HTTP/1.1 200 OK\r\nX-Echo: " + ECHOED + b"\r\n",
        True,
        "the server closed the connection before answering",
    ),
    (
        "a chunk size quoting our token",
        f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz{TOKEN}\r\n".encode(),
        True,
        "did not answer HTTP",
    ),
]


@pytest.mark.parametrize(
    ("payload", "close", "words"), [c[1:] for c in RAW_TCP], ids=[c[0] for c in RAW_TCP]
)
async def test_a_port_that_is_not_http_is_named_without_its_bytes(
    payload: bytes, close: bool, words: str
) -> None:
    async with (
        BannerServer(payload, close=close) as banner,
        Dispatcher(config_for(banner.url)) as dispatcher,
    ):
        state = (await dispatcher.status())["gpu"]
    assert not state.online and words in str(state.error)
    assert_inert(json.dumps(dataclasses.asdict(state)))


async def test_a_banner_port_fails_a_job_at_once_without_its_banner() -> None:
    async with BannerServer() as banner, Dispatcher(config_for(banner.url)) as dispatcher:
        with pytest.raises(BadResponse, match="did not answer HTTP") as caught:
            await dispatcher.run("gen", workflows.invert())
    assert_inert(str(caught.value), vars(caught.value))
    assert banner.connections >= 1


@pytest.mark.parametrize("form", ["text", "json"])
async def test_url_credentials_are_masked_in_status_and_echoes(
    hostile: HostilePeer, form: str
) -> None:
    hostile.echo_headers["/system_stats"] = (200, form)
    async with Dispatcher(config_for(hostile.url, password=True)) as dispatcher:
        state = (await dispatcher.status())["gpu"]
    assert state.url.startswith("http://user:********@127.0.0.1:")
    assert_inert(json.dumps(dataclasses.asdict(state)))


async def test_an_unreachable_server_with_url_credentials_is_named_masked() -> None:
    async with FakePeer() as gone:
        url = gone.url
    async with Dispatcher(config_for(url, password=True)) as dispatcher:
        state = (await dispatcher.status())["gpu"]
    assert "user:********@" in str(state.error) and "cannot connect" in str(state.error)
    assert_inert(str(state.error))


# -- a job on a hostile server ----------------------------------------------------------


def rejection(error: Any, node_errors: Any = None) -> Setup:
    body = json.dumps({"error": error, "node_errors": node_errors or {}})
    return raw("/prompt", body, status=400)


def failing_node(message: str) -> Setup:
    return lambda peer, _: peer.fail_nodes.update({"ImageInvert": message})


def failing_node_without_socket(message: str) -> Setup:
    """The error reaches us through /history only: the socket's handshake is redirected."""

    def setup(peer: HostilePeer, url: str) -> None:
        peer.fail_nodes["ImageInvert"] = message
        peer.redirects["/ws"] = (302, url)

    return setup


NODE_ERRORS = {
    "2": {
        "class_type": f"Invert {TOKEN}",
        "errors": [
            {
                "type": "value_not_valid",
                "message": f"Bearer {TOKEN}",
                "details": f"key={KEY}",
                "extra_info": {"received_value": [TOKEN, {"k": KEY}]},
            }
        ],
    }
}

JOBS: list[tuple[str, Setup, type[BaseException] | None, str]] = [
    ("POST /prompt echoes our headers", echo("/prompt", 200, "text"), BadResponse, "not JSON"),
    (
        "POST /prompt echoes them as a rejection",
        echo("/prompt", 400, "json"),
        PromptRejected,
        "Authorization: ********",
    ),
    (
        "POST /prompt echoes them in an HTML 502",
        echo("/prompt", 502, "html"),
        DispatchTimeout,
        "POST /prompt answered HTTP 502",
    ),
    (
        "a node's exception quotes our token",
        failing_node(f"refused Bearer {TOKEN} and {KEY}"),
        ExecutionFailed,
        "RuntimeError: refused ******** and ********",
    ),
    (
        "a node's exception is a megabyte long",
        failing_node("x" * 1_000_000),
        ExecutionFailed,
        "more characters)",
    ),
    (
        "a node's exception comes from /history only",
        failing_node_without_socket(f"token {TOKEN}"),
        ExecutionFailed,
        "RuntimeError: token ********",
    ),
    (
        "a rejection's node_errors quote our secrets",
        rejection({"type": "prompt_outputs_failed_validation", "message": "bad"}, NODE_ERRORS),
        PromptRejected,
        "node 2 (Invert ********): ********: key=********",
    ),
    (
        "a rejection's details quote our token",
        rejection({"type": "x", "message": "no", "details": TOKEN}),
        PromptRejected,
        "no: ********",
    ),
    (
        "a rejection that is not ComfyUI's object",
        rejection([TOKEN, 1]),
        PromptRejected,
        "without ComfyUI's error object",
    ),
    ("POST /prompt redirects", redirect("/prompt", 307), BadResponse, "(HTTP 307); redirects"),
    ("POST /prompt nests JSON", nested("/prompt", 100_000), BadResponse, "deeper than 64"),
    (
        "POST /prompt answers a 400-digit id",
        raw("/prompt", '{"prompt_id": ' + "9" * 400 + "}"),
        BadResponse,
        "integer of 400 digits is too large",
    ),
    ("POST /prompt drips", drip("/prompt"), DispatchTimeout, "no answer within 0.5 s"),
    ("GET /history redirects: the frames stand", redirect("/history/*"), None, ""),
]


@pytest.mark.parametrize(
    ("setup", "error", "words"), [c[1:] for c in JOBS], ids=[c[0] for c in JOBS]
)
async def test_a_jobs_error_names_the_fault_without_the_peers_bytes(
    hostile: HostilePeer,
    target: FakePeer,
    setup: Setup,
    error: type[BaseException] | None,
    words: str,
) -> None:
    setup(hostile, target.url + "/internal")
    async with Dispatcher(config_for(hostile.url, job=2.0)) as dispatcher:
        if error is None:
            result = await dispatcher.run("gen", workflows.invert())
            assert len(result.images) == 1
        else:
            with pytest.raises(error) as caught:
                await dispatcher.run("gen", workflows.invert())
            assert words in str(caught.value)
            assert_inert(str(caught.value), vars(caught.value))
            assert len(str(caught.value)) < 3 * 2000
    assert target.requests == []


@pytest.mark.parametrize("path", ["/upload/image", "/view"])
async def test_a_redirect_on_a_file_route_is_never_followed(
    hostile: HostilePeer, target: FakePeer, path: str
) -> None:
    hostile.redirects[path] = (302, target.url + "/internal")
    builder = WorkflowBuilder(workflows.load_invert()).set_image("Input", PNG)
    async with Dispatcher(config_for(hostile.url)) as dispatcher:
        with pytest.raises(BadResponse, match=r"answered a redirect \(HTTP 302\)") as caught:
            result = await dispatcher.run("gen", builder)
            await result.images[0].read()
    assert caught.value.status == 302 and target.requests == []
    assert_inert(str(caught.value))


# -- WebSocket frames -------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000
FRAMES: list[tuple[str, list[str], int]] = [
    ("an array nested 100,000 deep", [DEEP], 1),
    ("data nested 65 deep", ['{"type": "status", "data": ' + "[" * 65 + "]" * 65 + "}"], 1),
    ("data nested 65 deep in an object", ['{"type": "x", "data": {"a": ' + DEEP[:130] + "}}"], 1),
    ("not JSON", ["not json {"], 1),
    ("control characters", ["\u0000\u001b[31m"], 1),
    ("a frame without data", ['{"type": "executing"}'], 1),
    ("data that is a list", ['{"type": "progress", "data": [1]}'], 1),
    ("a type that is a number", ['{"type": 5, "data": {}}'], 1),
    ("a bare array", ["[1, 2, 3]"], 1),
    ("a bare string", ['"status"'], 1),
    ("a 400-digit number", ['{"type": "status", "data": {"n": 1' + "0" * 400 + "}}"], 1),
    ("NaN", ['{"type": "status", "data": {"n": NaN}}'], 1),
    ("a status of the wrong shape", ['{"type": "status", "data": {"status": [5]}}'], 0),
    ("another client's prompt", ['{"type": "executing", "data": {"prompt_id": "z"}}'], 0),
    ("all the bad ones at once", [DEEP, "not json {", '{"type": 5, "data": {}}', DEEP], 4),
]


@pytest.mark.parametrize(("frames", "dropped"), [c[1:] for c in FRAMES], ids=[c[0] for c in FRAMES])
async def test_a_frame_we_cannot_read_is_dropped_and_the_socket_kept(
    hostile: HostilePeer, frames: list[str], dropped: int
) -> None:
    hostile.on_connect.extend(frames)
    async with Dispatcher(config_for(hostile.url, request=10.0, job=30.0)) as dispatcher:
        result = await dispatcher.run("gen", workflows.invert())
        peer = dispatcher.peer("gpu")
        state = await dispatcher.server_status("gpu")
    assert len(result.images) == 1 and result.outputs
    assert peer.dropped_frames == dropped and state.dropped_frames == dropped
    # One socket throughout, and the job followed over it: no polling of /queue.
    assert hostile.sockets_opened == 1 and ("GET", "/queue") not in hostile.requests


async def test_a_progress_callback_that_raises_does_not_end_the_socket(
    hostile: HostilePeer,
) -> None:
    def broken(_: Any) -> None:
        raise ValueError(f"a bug of the caller's {TOKEN}")

    async with Dispatcher(config_for(hostile.url)) as dispatcher:
        first = await dispatcher.run("gen", workflows.invert(1), on_progress=broken)
        second = await dispatcher.run("gen", workflows.invert(2))
        dropped = dispatcher.peer("gpu").dropped_frames
    assert first.images and second.images and dropped >= 1
    assert hostile.sockets_opened == 1


async def test_an_oversize_frame_is_refused_and_the_peer_reconnected(
    hostile: HostilePeer,
) -> None:
    hostile.on_connect.append('{"type": "status", "data": {"pad": "' + "x" * 5000 + '"}}')
    async with Dispatcher(config_for(hostile.url)) as dispatcher:
        peer = dispatcher.peer("gpu")
        peer.max_frame_bytes = 4096
        await peer.start()
        await hostile.opened_sockets(2)
        result = await dispatcher.run("gen", workflows.invert())
    assert result.images and peer.dropped_frames == 1


# -- downloads --------------------------------------------------------------------------

SCRIPT = b"<html><script>fetch('/dispatch/config')</script></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
LIMIT = 1000


async def streamed(peer: Any, filename: str) -> tuple[str, int | None, bytes]:
    """The content type, declared size and body `open_view` gives, chunk by chunk."""
    received = bytearray()
    async with peer.open_view(filename) as download:
        async for chunk in download.chunks():
            received += chunk
    return download.content_type, download.size, bytes(received)


DOWNLOADS: list[tuple[str, str, str, bytes, bool, type[Exception] | None, str]] = [
    # id, filename, content type, body, chunked, error, words
    ("an HTML page, as given", "x.html", "text/html", SCRIPT, False, None, "text/html"),
    ("an SVG with a script", "x.svg", "image/svg+xml", SVG, False, None, "image/svg+xml"),
    ("a chunked HTML page", "y.html", "text/html", SCRIPT, True, None, "text/html"),
    (
        "a declared length over the limit",
        "big.png",
        "image/png",
        b"\x89" * (LIMIT + 1),
        False,
        BadResponse,
        f"{LIMIT + 1} bytes is over the {LIMIT} byte limit",
    ),
    (
        "a chunked body over the limit",
        "big.bin",
        "application/octet-stream",
        b"\x00" * (LIMIT * 200),
        True,
        BadResponse,
        f"GET /view: over the {LIMIT} byte limit",
    ),
    ("a file the peer does not have", "nope.png", "", b"", False, BadResponse, "has no file"),
]


@pytest.mark.parametrize(
    ("filename", "content_type", "body", "chunked", "error", "words"),
    [c[1:] for c in DOWNLOADS],
    ids=[c[0] for c in DOWNLOADS],
)
async def test_a_download_streams_inert_and_bounded(
    hostile: HostilePeer,
    filename: str,
    content_type: str,
    body: bytes,
    chunked: bool,
    error: type[Exception] | None,
    words: str,
) -> None:
    if content_type:
        hostile.view_files[filename] = (content_type, body)
    hostile.stream_views = chunked
    async with Dispatcher(config_for(hostile.url)) as dispatcher:
        peer = dispatcher.peer("gpu")
        peer.max_download_bytes = LIMIT
        if error is None:
            kind, size, data = await streamed(peer, filename)
            assert (kind, data) == (words, body)
            assert size == (None if chunked else len(body))
            assert await peer.view(filename) == body
        else:
            with pytest.raises(error, match=words) as caught:
                await streamed(peer, filename)
            assert_inert(str(caught.value))


async def test_a_download_stops_at_the_limit_while_streaming(hostile: HostilePeer) -> None:
    hostile.view_files["big.bin"] = ("application/octet-stream", b"\x00" * (LIMIT * 200))
    hostile.stream_views = True
    received = 0
    async with Dispatcher(config_for(hostile.url)) as dispatcher:
        peer = dispatcher.peer("gpu")
        peer.max_download_bytes = LIMIT
        with pytest.raises(BadResponse, match="over the 1000 byte limit"):
            async with peer.open_view("big.bin") as download:
                async for chunk in download.chunks():
                    received += len(chunk)
    assert received <= LIMIT


async def test_a_dripping_download_fails_at_the_read_deadline(hostile: HostilePeer) -> None:
    hostile.drips["/view"] = 2 * REQUEST
    async with Dispatcher(config_for(hostile.url)) as dispatcher:
        with pytest.raises(PeerUnreachable, match=r"GET /view to .*: no answer within 0.5 s"):
            await streamed(dispatcher.peer("gpu"), "x.png")


async def test_hostile_output_names_stay_the_peers_words(hostile: HostilePeer) -> None:
    names = ["../../etc/passwd", "x.html", "/abs/olute.png", "a\r\nSet-Cookie: x=1.png"]
    hostile.extra_outputs["99"] = {
        "images": [{"filename": n, "subfolder": "", "type": "output"} for n in names]
    }
    hostile.view_files["x.html"] = ("text/html", SCRIPT)
    async with Dispatcher(config_for(hostile.url)) as dispatcher:
        await dispatcher.run("gen", workflows.invert())
        # again: a cached run's outputs come from /history, where the hostile names are
        result = await dispatcher.run("gen", workflows.invert())
        files = {f.filename: f for f in result.files if f.node_id == "99"}
        async with files["x.html"].open() as download:
            page = b"".join([chunk async for chunk in download.chunks()])
        with pytest.raises(BadResponse) as refused:
            await files["../../etc/passwd"].read()
    assert sorted(files) == sorted(names)
    assert all(f.url.startswith(hostile.url + "/view?filename=") for f in files.values())
    assert "\n" not in files[names[3]].url and files["x.html"].kind == "file"
    assert (download.content_type, page) == ("text/html", SCRIPT)
    assert refused.value.status == 400  # the peer's own check, on the peer's own files


# -- the one scrub ----------------------------------------------------------------------

SERVER = ServerConfig(
    name="s",
    url=f"http://user:{PASSWORD.replace('-', '%2D')}@h:1",
    headers={"X-Api-Key": KEY, "X-Other": f"Token {TOKEN}"},
)
SCRUBS: list[tuple[str, str, int, str]] = [
    ("a header value", f"key {KEY}!", 2000, f"key {MASK}!"),
    ("a credential after its scheme", f"was {TOKEN}", 2000, f"was {MASK}"),
    ("a whole header value", f"Token {TOKEN}", 2000, MASK),
    ("a URL password, decoded", f"p={PASSWORD}", 2000, f"p={MASK}"),
    ("a URL password, as written", PASSWORD.replace("-", "%2D"), 2000, MASK),
    ("basic credentials from the URL", f"Basic {BASIC}", 2000, f"Basic {MASK}"),
    ("control characters", "a\x1b[31mb\x00c\nd", 2000, "a[31mbc\nd"),
    ("a long text", "y" * 30, 10, "y" * 10 + "… (20 more characters)"),
    ("a secret across the cut", "y" * 8 + KEY, 10, "y" * 8 + "**… (6 more characters)"),
]


@pytest.mark.parametrize(
    ("text", "limit", "expected"), [c[1:] for c in SCRUBS], ids=[c[0] for c in SCRUBS]
)
def test_a_peers_text_is_scrubbed_and_bounded(text: str, limit: int, expected: str) -> None:
    assert scrub(text, secrets_of(SERVER), limit) == expected


def test_urls_are_shown_without_their_password() -> None:
    assert shown_url(SERVER.url) == f"http://user:{MASK}@h:1"
    assert shown_url("https://h:8188/comfy") == "https://h:8188/comfy"


async def test_any_failure_of_a_status_probe_is_an_offline_server(
    hostile: HostilePeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(_: Any) -> dict[str, Any]:
        raise RecursionError(f"deep {TOKEN}")

    async with Dispatcher(config_for(hostile.url)) as dispatcher:
        monkeypatch.setattr(type(dispatcher.peer("gpu")), "system_stats", broken)
        state = (await dispatcher.status())["gpu"]
    assert not state.online
    assert state.error == "its answer could not be read (RecursionError)"
