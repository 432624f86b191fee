"""Hostile requests against the `/dispatch` routes and the standalone app, table-driven.

Each case is sent over a real loopback socket and must get a 4xx JSON answer
`{"error": ..., "field": ...}` naming the field at fault, with nothing changed: the
config file, the templates, `workers.json`, the config in use and the job list are the
same after the refusal as before (the threat model's "How we test it").
"""

from __future__ import annotations

import base64
import io
import json
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote

import aiohttp
import pytest
from aiohttp import web
from local_http import serve_routes, start
from multidict import CIMultiDictProxy
from yarl import URL

from dispatch_core.http import add_routes
from dispatch_core.http._guard import HostPolicy
from dispatch_core.http._serve_file import _disposition, content_type_for, stream_output
from dispatch_core.http.standalone import _session_value, create_app, serve
from dispatch_core.result import OutputFile
from dispatch_core.service import MASK, DispatchService
from dispatch_core.service._activity import Activity
from dispatch_core.service._job_table import JobTable
from dispatch_core.testing import FakePeer
from dispatch_core.testing._png import Image, encode_png

import workflows

MIB = 1024 * 1024
COMFYUI_MAX_BODY = 100 * MIB
"""ComfyUI's own `client_max_size` (`--max-upload-size`, 100 MB by default)."""
SECRET = "Bearer s3cret-header-value"
PASSWORD = "p4ssw0rd-in-url"
TOKEN = "t0ken-of-the-gateway"
EVIL = "evil.example:{port}"
NO_BODY: Any = object()
UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
}
BEARER = {"Authorization": f"Bearer {TOKEN}"}


# -- harness ------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    raw: bytes
    headers: CIMultiDictProxy[str]

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


@dataclass
class Api:
    """A client of one app over a loopback socket, and the folder of its service."""

    base: str
    port: int
    session: aiohttp.ClientSession
    service: DispatchService
    peers: dict[str, FakePeer]
    folder: Path
    answers: list[Answer] = field(default_factory=list)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = NO_BODY,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """`path` is sent as written (already percent-encoded); `{port}` in a header value
        is this app's port; bytes are sent as they are, anything else as JSON."""
        data: bytes | io.BytesIO | None = None
        if body is not NO_BODY:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            data = io.BytesIO(raw) if len(raw) > 2**19 else raw  # aiohttp warns on big bytes
        sent = {k: v.format(port=self.port) for k, v in (headers or {}).items()}
        url = URL(self.base + path, encoded=True)
        async with self.session.request(
            method, url, data=data, headers=sent, allow_redirects=False
        ) as response:
            answer = Answer(response.status, await response.read(), response.headers)
        self.answers.append(answer)
        return answer

    def state(self) -> dict[str, Any]:
        """What no refused request may change."""
        files = {
            str(p.relative_to(self.folder)): p.read_bytes()
            for p in sorted(self.folder.rglob("*"))
            if p.is_file() and ".sqlite" not in p.name
        }
        return {
            "files": files,
            "config": self.service.config.to_dict(),
            "version": self.service.config_version,
            "templates": self.service.templates.names(),
            "jobs": [r.id for r in self.service.jobs.activity.recent(1000)],
        }


def assert_refusal(answer: Answer, status: int, field: str | None) -> dict[str, Any]:
    """A 4xx JSON answer `{"error": text, "field": field}`."""
    shown = answer.raw[:300]
    assert answer.status == status, (answer.status, shown)
    assert answer.headers.get("Content-Type", "").startswith("application/json"), shown
    body = answer.json
    assert isinstance(body, dict) and {"error", "field"} <= set(body), shown
    assert isinstance(body["error"], str) and body["error"], shown
    assert body["field"] == field, (body["field"], shown)
    return body


def prepare(folder: Path, peers: dict[str, FakePeer]) -> None:
    """A config with a secret header on server a, a template, and a saved worker."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "servers": {
            "a": {"url": peers["a"].url, "headers": {"Authorization": SECRET}},
            "b": peers["b"].url,
        },
        "routes": {"gen": "a", "edit": ["a", "b"]},
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "workers.json").write_text(json.dumps({"w1": {"port": 8301, "gpu": 0}}) + "\n")


async def comfyui_like(
    service: DispatchService,
    policy: HostPolicy | None = None,
    client_max_size: int = COMFYUI_MAX_BODY,
) -> tuple[web.AppRunner, str]:
    """The routes on an app of their own, as ComfyUI's server holds them."""
    routes = web.RouteTableDef()
    add_routes(routes, service, policy=policy)
    app = web.Application(client_max_size=client_max_size)
    app.add_routes(routes)
    return await start(app)


@asynccontextmanager
async def open_api(
    tmp_path: Path,
    *,
    policy: HostPolicy | None = None,
    standalone: bool = False,
    token: str | None = None,
    default_limit: bool = False,
) -> AsyncIterator[Api]:
    async with AsyncExitStack() as stack:
        peers = {n: await stack.enter_async_context(FakePeer()) for n in ("a", "b")}
        folder = tmp_path / "dispatch"
        prepare(folder, peers)
        service = DispatchService(folder, status_interval=0)
        service.templates.save("inv", workflows.invert())
        if standalone:
            runner, base = await start(create_app(service, token=token, policy=policy))
        else:
            await stack.enter_async_context(service)
            if default_limit:
                runner, base = await serve_routes(service)
            else:
                runner, base = await comfyui_like(service, policy)
        stack.push_async_callback(runner.cleanup)
        session = await stack.enter_async_context(aiohttp.ClientSession())
        yield Api(base, URL(base).port or 0, session, service, peers, folder)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """The routes as inside ComfyUI on loopback: the default (loopback) Host policy."""
    async with open_api(tmp_path) as opened:
        yield opened


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Api]:
    """The standalone app with a token, on loopback."""
    async with open_api(tmp_path, standalone=True, token=TOKEN) as opened:
        yield opened


class Hostile(NamedTuple):
    id: str
    method: str
    path: str
    body: Any
    headers: Mapping[str, str]
    status: int
    field: str | None


def hostile(
    id: str,
    method: str,
    path: str,
    body: Any = NO_BODY,
    *,
    headers: Mapping[str, str] | None = None,
    status: int = 400,
    field: str | None,
) -> Hostile:
    return Hostile(id, method, path, body, dict(headers or {}), status, field)


async def refused_and_unchanged(api: Api, case: Hostile) -> dict[str, Any]:
    before = api.state()
    answer = await api.call(case.method, case.path, case.body, headers=case.headers)
    body = assert_refusal(answer, case.status, case.field)
    assert api.state() == before
    for secret in (SECRET, PASSWORD, TOKEN):
        assert secret.encode() not in answer.raw
    return body


def ids(table: list[Hostile]) -> list[str]:
    assert len({c.id for c in table}) == len(table), "case ids must be unique"
    return [c.id for c in table]


NEW_SERVER = {"name": "spy", "url": "http://127.0.0.1:9"}
SAVE_TEMPLATE = {"workflow": workflows.invert(), "overwrite": True}
RUN = {"route": "gen", "template": "inv"}

# -- 1. Host and DNS rebinding ------------------------------------------------------------


REBIND = {"Host": EVIL, "Origin": "http://" + EVIL}
"""What a browser sends to a hostile name that resolves to this machine."""


def rebinding(method: str, path: str, body: Any = NO_BODY) -> dict[str, Any]:
    return {"method": method, "path": path, "body": body, "headers": REBIND}


HOST_CASES = [
    hostile(name, **route, status=403, field="Host")
    for name, route in [
        ("config", rebinding("GET", "/dispatch/config")),
        ("servers", rebinding("GET", "/dispatch/servers")),
        ("templates", rebinding("GET", "/dispatch/templates/inv")),
        ("jobs", rebinding("GET", "/dispatch/jobs")),
        ("add-server", rebinding("POST", "/dispatch/servers", NEW_SERVER)),
        ("settings", rebinding("PUT", "/dispatch/settings", {"timeouts": {"job": 9}})),
        ("del-route", rebinding("DELETE", "/dispatch/routes/gen")),
        ("save-template", rebinding("PUT", "/dispatch/templates/inv", SAVE_TEMPLATE)),
        ("run", rebinding("POST", "/dispatch/run", RUN)),
        ("start-worker", rebinding("POST", "/dispatch/workers/w1/start")),
        ("worker-per-gpu", rebinding("POST", "/dispatch/workers/per-gpu", {})),
        ("gpus", rebinding("GET", "/dispatch/gpus")),
        ("cancel-job", rebinding("DELETE", "/dispatch/jobs/jnope")),
    ]
] + [
    hostile(
        f"host-{host}",
        "POST",
        "/dispatch/servers",
        NEW_SERVER,
        headers=headers,
        status=403,
        field="Host",
    )
    for host, headers in [
        ("no-port", {"Host": "evil.example"}),
        ("upper-case-final-dot", {"Host": "EVIL.EXAMPLE.:{port}"}),
        ("loopback-prefix", {"Host": "127.0.0.1.evil.example:{port}"}),
        ("localhost-prefix", {"Host": "localhost.evil.example:{port}"}),
        ("userinfo-trick", {"Host": "127.0.0.1@evil.example:{port}"}),
        ("zero-address", {"Host": "0.0.0.0:{port}"}),
        ("lan-ip-on-loopback", {"Host": "192.168.1.20:{port}"}),
    ]
]


@pytest.mark.parametrize("case", HOST_CASES, ids=ids(HOST_CASES))
async def test_a_rebinding_host_is_refused_on_the_comfyui_routes(api: Api, case: Hostile) -> None:
    await refused_and_unchanged(api, case)


STANDALONE_HOST_CASES = [
    hostile(f"gateway-{n}", m, p, b, headers={**h, **BEARER}, status=403, field="Host")
    for n, (m, p, b, h) in {
        "config": ("GET", "/dispatch/config", NO_BODY, REBIND),
        "add-server": ("POST", "/dispatch/servers", NEW_SERVER, REBIND),
        "ws": ("GET", "/dispatch/ws", NO_BODY, {**REBIND, **UPGRADE}),
        "ui": ("GET", "/dispatch/ui/", NO_BODY, REBIND),
        "ui-script": ("GET", "/dispatch/ui/panel.js", NO_BODY, {"Host": EVIL}),
        "root": ("GET", "/", NO_BODY, {"Host": EVIL}),
        "session": ("POST", "/dispatch/session", NO_BODY, REBIND),
    }.items()
]


@pytest.mark.parametrize("case", STANDALONE_HOST_CASES, ids=ids(STANDALONE_HOST_CASES))
async def test_a_rebinding_host_is_refused_by_the_gateway(gateway: Api, case: Hostile) -> None:
    body = await refused_and_unchanged(gateway, case)
    assert "DISPATCH_ALLOWED_HOSTS" in body["error"]


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}"])
async def test_loopback_names_are_answered(api: Api, host: str) -> None:
    answer = await api.call("GET", "/dispatch/config", headers={"Host": host})
    assert answer.status == 200, answer.raw[:200]
    same_origin = {"Host": host, "Origin": "http://" + host}
    body = {"name": "c", "url": api.peers["b"].url}
    answer = await api.call("POST", "/dispatch/servers", body, headers=same_origin)
    assert answer.status == 201, answer.raw[:200]
    assert "c" in api.service.config.servers


async def test_the_gateway_answers_loopback_names(gateway: Api) -> None:
    for host in ("127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}"):
        answer = await gateway.call("GET", "/dispatch/config", headers={"Host": host, **BEARER})
        assert answer.status == 200, (host, answer.raw[:200])
        answer = await gateway.call("GET", "/dispatch/ui/", headers={"Host": host})
        assert answer.status == 200, (host, answer.raw[:200])


async def test_a_lan_policy_answers_ip_literals_but_not_dns_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISPATCH_ALLOWED_HOSTS", raising=False)
    policy = HostPolicy.for_listen("0.0.0.0")
    assert not policy.loopback_only
    async with open_api(tmp_path, policy=policy) as lan:
        for host in ("192.168.1.20:{port}", "10.0.0.7", "[fe80::1]:{port}", "127.0.0.1:{port}"):
            answer = await lan.call("GET", "/dispatch/config", headers={"Host": host})
            assert answer.status == 200, (host, answer.raw[:200])
        own = socket.gethostname() + ":{port}"
        assert (await lan.call("GET", "/dispatch/config", headers={"Host": own})).status == 200
        for host in (EVIL, "printer.lan:{port}", "192.168.1.20.evil.example"):
            case = hostile(
                host,
                "POST",
                "/dispatch/servers",
                NEW_SERVER,
                headers={"Host": host, "Origin": "http://" + host},
                status=403,
                field="Host",
            )
            await refused_and_unchanged(lan, case)


@pytest.mark.parametrize("how", ["environment", "extra"])
async def test_an_allowed_host_name_is_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.delenv("DISPATCH_ALLOWED_HOSTS", raising=False)
    if how == "environment":
        monkeypatch.setenv("DISPATCH_ALLOWED_HOSTS", "gpu-box.lan, Studio.Example.")
        policy = HostPolicy.for_listen("127.0.0.1")
    else:
        policy = HostPolicy.for_listen("127.0.0.1", extra=["gpu-box.lan", "Studio.Example."])
    async with open_api(tmp_path, policy=policy) as named:
        for host in ("gpu-box.lan:{port}", "studio.example:{port}", "STUDIO.example."):
            headers = {"Host": host, "Origin": "http://" + host}
            answer = await named.call("PUT", "/dispatch/settings", {}, headers=headers)
            assert answer.status == 200, (host, answer.raw[:200])
        case = hostile(
            "evil", "GET", "/dispatch/config", headers={"Host": EVIL}, status=403, field="Host"
        )
        await refused_and_unchanged(named, case)


# -- 2. Another site -----------------------------------------------------------------------

OTHER = {"Origin": "http://other:1"}
CROSS_SITE_CASES = (
    [
        hostile(
            f"cross-site-{m}-{p}",
            m,
            p,
            b,
            headers={"Sec-Fetch-Site": "cross-site"},
            status=403,
            field="Sec-Fetch-Site",
        )
        for m, p, b in [
            ("GET", "/dispatch/config", NO_BODY),
            ("GET", "/dispatch/templates/inv", NO_BODY),
            ("GET", "/dispatch/jobs", NO_BODY),
            ("POST", "/dispatch/servers", NEW_SERVER),
            ("PUT", "/dispatch/settings", {"cache": {"enabled": False}}),
            ("DELETE", "/dispatch/templates/inv", NO_BODY),
            ("POST", "/dispatch/workers/per-gpu", {}),
            ("DELETE", "/dispatch/jobs/jnope", NO_BODY),
        ]
    ]
    + [
        hostile(
            f"same-site-{m}-{p}",
            m,
            p,
            b,
            headers={"Sec-Fetch-Site": "same-site"},
            status=403,
            field="Sec-Fetch-Site",
        )
        for m, p, b in [
            ("POST", "/dispatch/servers", NEW_SERVER),
            ("POST", "/dispatch/run", RUN),
            ("DELETE", "/dispatch/routes/gen", NO_BODY),
        ]
    ]
    + [
        hostile(f"origin-{name}-{m}-{p}", m, p, b, headers=h, status=403, field="Origin")
        for name, h in [
            ("other", OTHER),
            ("null", {"Origin": "null"}),
            ("other-port", {"Origin": "http://127.0.0.1:1"}),
            ("suffix", {"Origin": "http://127.0.0.1:{port}.evil.example"}),
            ("other-loopback-name", {"Origin": "http://localhost:{port}"}),
        ]
        for m, p, b in [
            ("POST", "/dispatch/servers", NEW_SERVER),
            ("PUT", "/dispatch/servers/b", {"url": "http://127.0.0.1:9"}),
            ("DELETE", "/dispatch/servers/b", NO_BODY),
        ]
    ]
    + [
        hostile(
            "origin-other-PUT-template",
            "PUT",
            "/dispatch/templates/inv",
            SAVE_TEMPLATE,
            headers=OTHER,
            status=403,
            field="Origin",
        ),
        hostile(
            "origin-other-POST-run",
            "POST",
            "/dispatch/run",
            RUN,
            headers=OTHER,
            status=403,
            field="Origin",
        ),
        hostile(
            "origin-null-POST-rename",
            "POST",
            "/dispatch/templates/inv/rename",
            {"name": "x"},
            headers={"Origin": "null"},
            status=403,
            field="Origin",
        ),
        hostile(
            "origin-other-POST-per-gpu",
            "POST",
            "/dispatch/workers/per-gpu",
            {},
            headers=OTHER,
            status=403,
            field="Origin",
        ),
        hostile(
            "origin-other-POST-disable",
            "POST",
            "/dispatch/servers/b/disable",
            headers=OTHER,
            status=403,
            field="Origin",
        ),
    ]
)


@pytest.mark.parametrize("case", CROSS_SITE_CASES, ids=ids(CROSS_SITE_CASES))
async def test_a_request_from_another_site_is_refused(api: Api, case: Hostile) -> None:
    await refused_and_unchanged(api, case)


GATEWAY_CROSS_SITE_CASES = [
    hostile(
        "ws-other-origin",
        "GET",
        "/dispatch/ws",
        headers={**UPGRADE, **OTHER, **BEARER},
        status=403,
        field="Origin",
    ),
    hostile(
        "ws-cross-site",
        "GET",
        "/dispatch/ws",
        headers={**UPGRADE, "Sec-Fetch-Site": "cross-site", **BEARER},
        status=403,
        field="Sec-Fetch-Site",
    ),
    hostile(
        "session-other-origin",
        "POST",
        "/dispatch/session",
        headers={**OTHER, **BEARER},
        status=403,
        field="Origin",
    ),
    hostile(
        "add-server-null-origin",
        "POST",
        "/dispatch/servers",
        NEW_SERVER,
        headers={"Origin": "null", **BEARER},
        status=403,
        field="Origin",
    ),
    hostile(
        "ui-cross-site",
        "GET",
        "/dispatch/ui/",
        headers={"Sec-Fetch-Site": "cross-site"},
        status=403,
        field="Sec-Fetch-Site",
    ),
]


@pytest.mark.parametrize("case", GATEWAY_CROSS_SITE_CASES, ids=ids(GATEWAY_CROSS_SITE_CASES))
async def test_the_gateway_refuses_another_site(gateway: Api, case: Hostile) -> None:
    await refused_and_unchanged(gateway, case)


async def test_same_origin_and_plain_requests_are_answered(api: Api) -> None:
    same = {"Origin": "http://127.0.0.1:{port}"}
    answer = await api.call(
        "POST", "/dispatch/servers", {"name": "c", "url": api.peers["b"].url}, headers=same
    )
    assert answer.status == 201, answer.raw[:200]
    for site in ("same-origin", "none"):
        answer = await api.call("PUT", "/dispatch/settings", {}, headers={"Sec-Fetch-Site": site})
        assert answer.status == 200, (site, answer.raw[:200])
    for site in ("same-site", "none"):  # reading is harmless, and a browser hides the answer
        answer = await api.call("GET", "/dispatch/config", headers={"Sec-Fetch-Site": site})
        assert answer.status == 200, (site, answer.raw[:200])


# -- 3. Tokens ------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "   ", "\t\n"], ids=["empty", "spaces", "whitespace"])
async def test_a_blank_token_is_refused_at_start(tmp_path: Path, token: str) -> None:
    service = DispatchService(tmp_path, status_interval=0)
    try:
        with pytest.raises(SystemExit) as exited:
            create_app(service, token=token)
        assert "token is empty" in str(exited.value)
        with pytest.raises(SystemExit):
            await serve(config=tmp_path / "config.json", port=0, token=token)
    finally:
        await service.close()
    assert not (tmp_path / "config.json").exists()


TOKEN_CASES = [
    hostile("no-token", "GET", "/dispatch/config", status=401, field="token"),
    hostile("token-in-url", "GET", f"/dispatch/config?token={TOKEN}", status=401, field="token"),
    hostile(
        "token-in-url-post",
        "POST",
        f"/dispatch/servers?token={TOKEN}",
        NEW_SERVER,
        status=401,
        field="token",
    ),
    hostile(
        "wrong-bearer",
        "GET",
        "/dispatch/config",
        headers={"Authorization": "Bearer nope"},
        status=401,
        field="token",
    ),
    hostile(
        "longer-bearer",
        "POST",
        "/dispatch/servers",
        NEW_SERVER,
        headers={"Authorization": f"Bearer {TOKEN}x"},
        status=401,
        field="token",
    ),
    hostile(
        "prefix-bearer",
        "PUT",
        "/dispatch/settings",
        {},
        headers={"Authorization": f"Bearer {TOKEN[:-1]}"},
        status=401,
        field="token",
    ),
    hostile(
        "basic-auth",
        "GET",
        "/dispatch/config",
        headers={"Authorization": "Basic " + base64.b64encode(TOKEN.encode()).decode()},
        status=401,
        field="token",
    ),
    hostile(
        "empty-bearer",
        "GET",
        "/dispatch/config",
        headers={"Authorization": "Bearer "},
        status=401,
        field="token",
    ),
    hostile(
        "forged-cookie",
        "GET",
        "/dispatch/config",
        headers={"Cookie": "dispatch_session=0123456789abcdef"},
        status=401,
        field="token",
    ),
    hostile(
        "token-as-cookie",
        "PUT",
        "/dispatch/settings",
        {},
        headers={"Cookie": f"dispatch_session={TOKEN}"},
        status=401,
        field="token",
    ),
    hostile(
        "cookie-of-another-token",
        "GET",
        "/dispatch/config",
        headers={"Cookie": f"dispatch_session={_session_value('other')}"},
        status=401,
        field="token",
    ),
    hostile(
        "empty-cookie",
        "GET",
        "/dispatch/jobs",
        headers={"Cookie": "dispatch_session="},
        status=401,
        field="token",
    ),
    hostile("ws-without-token", "GET", "/dispatch/ws", headers=UPGRADE, status=401, field="token"),
    hostile(
        "ws-token-in-url",
        "GET",
        f"/dispatch/ws?token={TOKEN}",
        headers=UPGRADE,
        status=401,
        field="token",
    ),
    hostile("session-without-token", "POST", "/dispatch/session", status=401, field="token"),
    hostile(
        "session-wrong-token",
        "POST",
        "/dispatch/session",
        headers={"Authorization": "Bearer nope"},
        status=401,
        field="token",
    ),
    hostile(
        "session-token-in-url",
        "POST",
        f"/dispatch/session?token={TOKEN}",
        status=401,
        field="token",
    ),
    hostile("run-without-token", "POST", "/dispatch/run", RUN, status=401, field="token"),
]


@pytest.mark.parametrize("case", TOKEN_CASES, ids=ids(TOKEN_CASES))
async def test_the_gateway_needs_its_token(gateway: Api, case: Hostile) -> None:
    before = gateway.state()
    answer = await gateway.call(case.method, case.path, case.body, headers=case.headers)
    body = assert_refusal(answer, case.status, case.field)
    assert gateway.state() == before
    assert "Set-Cookie" not in answer.headers
    assert ("URL" in body["error"]) == ("token=" in case.path)


async def test_the_session_cookie_works_and_is_not_the_token(gateway: Api) -> None:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.post(gateway.base + "/dispatch/session", headers=BEARER) as response:
            assert response.status == 200
            cookie = response.headers["Set-Cookie"]
        assert TOKEN not in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        (kept,) = list(jar)
        assert kept.key == "dispatch_session" and kept.value != TOKEN
        assert TOKEN not in kept.value and len(kept.value) >= 32
        async with browser.get(gateway.base + "/dispatch/config") as response:
            assert response.status == 200
            assert SECRET not in await response.text()
        async with browser.ws_connect(gateway.base + "/dispatch/ws") as events:
            assert not events.closed
    answer = await gateway.call("GET", "/dispatch/config", headers=BEARER)
    assert answer.status == 200


# -- 4. Versions ---------------------------------------------------------------------------

STALE = {"If-Match": '"0000"'}
EDITS: list[tuple[str, str, str, Any]] = [
    ("config", "PUT", "/dispatch/config", {"config": {"servers": {}, "routes": {}}}),
    ("settings", "PUT", "/dispatch/settings", {"timeouts": {"job": 10}}),
    ("add-server", "POST", "/dispatch/servers", {"name": "c", "url": "http://127.0.0.1:9"}),
    ("update-server", "PUT", "/dispatch/servers/b", {"weight": 2}),
    ("remove-server", "DELETE", "/dispatch/servers/b", NO_BODY),
    ("enable", "POST", "/dispatch/servers/b/enable", NO_BODY),
    ("disable", "POST", "/dispatch/servers/b/disable", NO_BODY),
    ("put-route", "PUT", "/dispatch/routes/gen", {"servers": ["b"]}),
    ("delete-route", "DELETE", "/dispatch/routes/edit", NO_BODY),
]
VERSION_CASES = (
    [
        hostile(f"stale-if-match-{n}", m, p, b, headers=STALE, status=409, field="version")
        for n, m, p, b in EDITS
    ]
    + [
        hostile(
            f"stale-body-{n}",
            m,
            p,
            {**(b if b is not NO_BODY else {}), "version": "0000"},
            status=409,
            field="version",
        )
        for n, m, p, b in EDITS
    ]
    + [
        hostile(
            f"version-{kind}-{n}",
            m,
            p,
            {**(b if b is not NO_BODY else {}), "version": v},
            field="version",
        )
        for n, m, p, b in EDITS
        for kind, v in [("number", 5), ("list", ["0000"]), ("object", {"v": 1}), ("true", True)]
    ]
    + [
        hostile("config-version-alone", "PUT", "/dispatch/config", {"version": 5}, field="version"),
        hostile(
            "config-stale-version-alone",
            "PUT",
            "/dispatch/config",
            {"version": "0000"},
            status=409,
            field="version",
        ),
    ]
)


@pytest.mark.parametrize("case", VERSION_CASES, ids=ids(VERSION_CASES))
async def test_a_stale_or_mistyped_version_changes_nothing(api: Api, case: Hostile) -> None:
    body = await refused_and_unchanged(api, case)
    assert set(api.service.config.servers) == {"a", "b"}
    if case.status == 409:
        assert body["current_version"] == api.service.config_version


TEMPLATE_VERSION_CASES = [
    hostile(
        "overwrite-stale",
        "PUT",
        "/dispatch/templates/inv",
        SAVE_TEMPLATE,
        headers=STALE,
        status=409,
        field="version",
    ),
    hostile(
        "rename-stale",
        "POST",
        "/dispatch/templates/inv/rename",
        {"name": "moved"},
        headers=STALE,
        status=409,
        field="version",
    ),
    hostile(
        "delete-stale",
        "DELETE",
        "/dispatch/templates/inv",
        headers=STALE,
        status=409,
        field="version",
    ),
    hostile(
        "overwrite-stale-body",
        "PUT",
        "/dispatch/templates/inv",
        {**SAVE_TEMPLATE, "version": "0000"},
        status=409,
        field="version",
    ),
    hostile(
        "rename-version-number",
        "POST",
        "/dispatch/templates/inv/rename",
        {"name": "moved", "version": 5},
        field="version",
    ),
    hostile(
        "delete-version-list",
        "DELETE",
        "/dispatch/templates/inv",
        {"version": ["x"]},
        field="version",
    ),
]


@pytest.mark.parametrize("case", TEMPLATE_VERSION_CASES, ids=ids(TEMPLATE_VERSION_CASES))
async def test_a_stale_template_edit_changes_nothing(api: Api, case: Hostile) -> None:
    body = await refused_and_unchanged(api, case)
    if case.status == 409:
        assert body["current_version"] == api.service.templates.fingerprint("inv")


async def test_the_current_template_version_is_accepted(api: Api) -> None:
    current = {"If-Match": f'"{api.service.templates.fingerprint("inv")}"'}
    answer = await api.call("PUT", "/dispatch/templates/inv", SAVE_TEMPLATE, headers=current)
    assert answer.status == 200, answer.raw[:200]


# -- 5. Secrets -----------------------------------------------------------------------------

MOVED = "http://127.0.0.1:1"
SECRET_CASES = (
    [
        hostile(
            "moved-url-with-mask",
            "PUT",
            "/dispatch/servers/a",
            {"url": MOVED, "headers": {"Authorization": MASK}},
            field="servers.a.headers.Authorization",
        ),
        hostile(
            "moved-url-renamed-with-mask",
            "PUT",
            "/dispatch/servers/a",
            {"url": MOVED, "name": "z", "headers": {"Authorization": MASK}},
            field="servers.a.headers.Authorization",
        ),
        hostile(
            "mask-without-stored-value",
            "PUT",
            "/dispatch/servers/b",
            {"headers": {"Authorization": MASK}},
            field="servers.b.headers.Authorization",
        ),
        hostile(
            "new-server-with-mask",
            "POST",
            "/dispatch/servers",
            {"name": "c", "url": MOVED, "headers": {"Authorization": MASK}},
            field="servers.c.headers.Authorization",
        ),
        hostile(
            "config-moved-url-with-mask",
            "PUT",
            "/dispatch/config",
            {
                "config": {
                    "servers": {
                        "a": {"url": MOVED, "headers": {"Authorization": MASK}},
                        "b": "http://127.0.0.1:2",
                    },
                    "routes": {"gen": "a", "edit": ["a", "b"]},
                }
            },
            field="servers.a.headers.Authorization",
        ),
        hostile(
            "config-rename-grafts-mask",
            "PUT",
            "/dispatch/config",
            {"config": {"servers": {"z": {"url": MOVED, "headers": {"Authorization": MASK}}}}},
            field="servers.z.headers.Authorization",
        ),
        hostile(
            "config-mask-on-other-server",
            "PUT",
            "/dispatch/config",
            {
                "config": {
                    "servers": {
                        "a": "http://127.0.0.1:1",
                        "b": {"url": "http://127.0.0.1:2", "headers": {"Authorization": MASK}},
                    }
                }
            },
            field="servers.b.headers.Authorization",
        ),
    ]
    + [
        hostile(f"credentials-{how}-{n}", m, p, body(url), field=f)
        for how, url in [
            ("user-password", f"http://u:{PASSWORD}@127.0.0.1:1"),
            ("https", f"https://u:{PASSWORD}@gpu.example"),
            ("password-only", f"http://:{PASSWORD}@127.0.0.1:1"),
            ("user-only", f"http://{PASSWORD}@127.0.0.1:1"),
            ("with-path", f"http://u:{PASSWORD}@127.0.0.1:1/comfy/"),
            ("bad-port", f"http://u:{PASSWORD}@127.0.0.1:99999"),
            ("not-http", f"ftp://u:{PASSWORD}@gpu.example"),
            ("no-host", f"http://u:{PASSWORD}@/"),
        ]
        for n, m, p, body, f in [
            (
                "add",
                "POST",
                "/dispatch/servers",
                lambda u: {"name": "c", "url": u},
                "servers.c.url",
            ),
            ("update", "PUT", "/dispatch/servers/b", lambda u: {"url": u}, "servers.b.url"),
        ]
    ]
    + [
        hostile(
            "credentials-config-object",
            "PUT",
            "/dispatch/config",
            {"config": {"servers": {"a": {"url": f"http://u:{PASSWORD}@127.0.0.1:1"}}}},
            field="servers.a.url",
        ),
        hostile(
            "credentials-config-string",
            "PUT",
            "/dispatch/config",
            {"config": {"servers": {"a": f"http://u:{PASSWORD}@127.0.0.1:1"}}},
            field="servers.a",
        ),
    ]
)


@pytest.mark.parametrize("case", SECRET_CASES, ids=ids(SECRET_CASES))
async def test_secrets_are_never_moved_shown_or_echoed(api: Api, case: Hostile) -> None:
    await refused_and_unchanged(api, case)  # also: no secret, password or token in it
    for path in ("/dispatch/config", "/dispatch/servers", "/dispatch/routes"):
        answer = await api.call("GET", path)
        assert answer.status == 200
        assert SECRET.encode() not in answer.raw and PASSWORD.encode() not in answer.raw


async def test_changing_only_the_url_drops_the_headers(api: Api) -> None:
    answer = await api.call("PUT", "/dispatch/servers/a", {"url": api.peers["b"].url})
    assert answer.status == 200, answer.raw[:300]
    assert answer.json["config"]["servers"]["a"]["headers"] == {}
    view = (await api.call("GET", "/dispatch/config")).json
    assert view["config"]["servers"]["a"]["headers"] == {}
    assert api.service.config.servers["a"].headers == {}
    assert SECRET not in api.service.config_path.read_text()
    # the same URL again, with the mask: nothing is stored any more to keep
    case = hostile(
        "mask-after-drop",
        "PUT",
        "/dispatch/servers/a",
        {"headers": {"Authorization": MASK}},
        field="servers.a.headers.Authorization",
    )
    await refused_and_unchanged(api, case)


async def test_no_answer_shows_a_header_value(api: Api) -> None:
    answer = await api.call(
        "PUT", "/dispatch/servers/a", {"headers": {"Authorization": MASK, "X-Team": "blue-team"}}
    )
    assert answer.status == 200, answer.raw[:300]
    assert api.service.config.servers["a"].headers["Authorization"] == SECRET
    for path in ("/dispatch/config", "/dispatch/servers", "/dispatch/status", "/dispatch/routes"):
        answer = await api.call("GET", path)
        assert answer.status == 200, (path, answer.raw[:200])
    for answer in api.answers:
        assert SECRET.encode() not in answer.raw and b"blue-team" not in answer.raw


# -- 6. Templates ---------------------------------------------------------------------------

TEMPLATE_NAME_CASES = [
    hostile(f"{how}-{label}", m, p.format(name=name), b, status=400, field="name")
    for how, name in [
        ("encoded-slash", "..%2Fx"),
        ("encoded-dots", "%2e%2e"),
        ("encoded-dots-slash", "%2e%2e%2fconfig"),
        ("double-encoded", "%252e%252e%252fconfig"),
        ("backslash", "..%5Cx"),
        ("nul", "x%00"),
        ("nul-json", "inv%00.json"),
        ("absolute", "%2Fetc%2Fpasswd"),
        ("windows-absolute", "C%3A%5Cwin.ini"),
        ("crlf", "x%0D%0AY"),
        ("hidden", ".inv"),
        ("double-json", "inv.json.json"),
        ("json-only", ".json"),
        ("4k-name", "a" * 4000),
    ]
    for label, m, p, b in [
        ("read", "GET", "/dispatch/templates/{name}", NO_BODY),
        ("save", "PUT", "/dispatch/templates/{name}", SAVE_TEMPLATE),
        ("delete", "DELETE", "/dispatch/templates/{name}", NO_BODY),
        ("rename", "POST", "/dispatch/templates/{name}/rename", {"name": "moved"}),
    ]
] + [
    hostile(
        f"rename-to-{how}",
        "POST",
        "/dispatch/templates/inv/rename",
        {"name": new},
        status=400,
        field="name",
    )
    for how, new in [
        ("traversal", "../x"),
        ("backslash", "..\\x"),
        ("absolute", "/etc/passwd"),
        ("nul", "x\x00"),
        ("double-json", "inv.json.json"),
        ("10k-name", "a" * 10_000),
        ("list", ["a"]),
        ("number", 5),
        ("missing", None),
    ]
]


@pytest.mark.parametrize("case", TEMPLATE_NAME_CASES, ids=ids(TEMPLATE_NAME_CASES))
async def test_a_template_name_never_leaves_the_folder(api: Api, case: Hostile) -> None:
    await refused_and_unchanged(api, case)
    assert sorted(p.name for p in (api.folder / "templates").iterdir()) == ["inv.json"]
    assert not (api.folder / "x").exists() and not (api.folder / "moved.json").exists()


async def test_a_10k_name_in_the_url_is_refused_before_any_route(api: Api) -> None:
    before = api.state()
    answer = await api.call("PUT", "/dispatch/templates/" + "a" * 10_000, SAVE_TEMPLATE)
    assert answer.status == 400  # aiohttp's request line limit (8190): plain text
    assert api.state() == before


@pytest.mark.parametrize("name", ["inv", "big"])
async def test_a_template_over_8_mib_is_refused_and_the_old_one_still_loads(
    api: Api, name: str
) -> None:
    workflow = workflows.invert()
    workflow["1"]["inputs"]["note"] = "x" * 9_000_000
    case = hostile(
        "9mb",
        "PUT",
        f"/dispatch/templates/{name}",
        {"workflow": workflow, "overwrite": True},
        field="workflow",
    )
    await refused_and_unchanged(api, case)
    answer = await api.call("GET", "/dispatch/templates/inv")
    assert answer.status == 200 and answer.json["nodes"] == 3
    assert api.service.templates.load("inv").workflow == workflows.invert()


async def test_a_deeply_nested_workflow_is_refused_and_templates_still_work(api: Api) -> None:
    nested = b"[" * 900 + b"]" * 900
    case = hostile(
        "900-deep",
        "PUT",
        "/dispatch/templates/deep",
        b'{"workflow": ' + nested + b', "overwrite": true}',
        field="workflow" + ".0" * 36,  # the first 80 characters of the place
    )
    await refused_and_unchanged(api, case)
    node = b'{"1": {"class_type": "EmptyImage", "inputs": {"width": 1, "deep": ' + nested + b"}}}"
    case = case._replace(
        id="900-deep-input",
        path="/dispatch/templates/inv",
        body=b'{"workflow": ' + node + b', "overwrite": true}',
        field="workflow.1.inputs.deep" + ".0" * 29,
    )
    await refused_and_unchanged(api, case)
    answer = await api.call("GET", "/dispatch/templates")
    assert answer.status == 200 and [t["name"] for t in answer.json] == ["inv"]
    answer = await api.call("PUT", "/dispatch/templates/other", {"workflow": workflows.invert()})
    assert answer.status == 201, answer.raw[:300]
    assert api.service.templates.names() == ["inv", "other"]


# -- 7. Bodies and numbers ------------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
BIG_INT = b'{"name": "c", "url": "http://127.0.0.1:9", "weight": ' + b"9" * 400 + b"}"
BODY_ROUTES = [
    ("config", "PUT", "/dispatch/config"),
    ("settings", "PUT", "/dispatch/settings"),
    ("add-server", "POST", "/dispatch/servers"),
    ("update-server", "PUT", "/dispatch/servers/b"),
    ("route", "PUT", "/dispatch/routes/x"),
    ("run", "POST", "/dispatch/run"),
    ("template", "PUT", "/dispatch/templates/x"),
    ("rename", "POST", "/dispatch/templates/inv/rename"),
]
BODY_CASES = [
    hostile(f"{what}-{n}", m, p, raw, field="body")
    for what, raw in [
        ("100k-deep-list", DEEP),
        ("100k-deep-object", DEEP_OBJECT),
        ("400-digits", BIG_INT),
        ("nan", b'{"name": "c", "url": "http://127.0.0.1:9", "weight": NaN}'),
        ("infinity", b'{"timeouts": {"job": Infinity}, "route": "gen"}'),
        ("minus-infinity", b'{"weight": -Infinity}'),
        ("not-utf8", b'{"name": "\xff\xfe", "url": "http://127.0.0.1:9"}'),
        ("truncated", b'{"name": "c", "url": "http://12'),
        ("a-list", b'[{"name": "c"}]'),
        ("a-string", b'"servers"'),
        ("empty", b""),
    ]
    for n, m, p in BODY_ROUTES
    if what in ("100k-deep-list", "400-digits", "not-utf8", "a-list") or n in ("config", "run")
]
VALUE_CASES = (
    [
        hostile("config-list", "PUT", "/dispatch/config", {"config": [1]}, field="config"),
        hostile(
            "servers-list",
            "PUT",
            "/dispatch/config",
            {"config": {"servers": [["a"]]}},
            field="servers",
        ),
        hostile(
            "settings-timeouts-list",
            "PUT",
            "/dispatch/settings",
            {"timeouts": [1]},
            field="timeouts",
        ),
        hostile("settings-cache-text", "PUT", "/dispatch/settings", {"cache": "on"}, field="cache"),
        hostile(
            "name-list", "POST", "/dispatch/servers", {"name": ["a"], "url": MOVED}, field="name"
        ),
        hostile(
            "name-object",
            "POST",
            "/dispatch/servers",
            {"name": {"a": 1}, "url": MOVED},
            field="name",
        ),
        hostile(
            "name-number", "POST", "/dispatch/servers", {"name": 5, "url": MOVED}, field="name"
        ),
        hostile(
            "name-blank", "POST", "/dispatch/servers", {"name": "  ", "url": MOVED}, field="name"
        ),
        hostile("rename-server-list", "PUT", "/dispatch/servers/b", {"name": ["x"]}, field="name"),
        hostile(
            "route-servers-nested",
            "PUT",
            "/dispatch/routes/x",
            {"servers": [["a"]]},
            field="servers",
        ),
        hostile(
            "route-servers-object",
            "PUT",
            "/dispatch/routes/x",
            {"servers": {"a": 1}},
            field="servers",
        ),
        hostile(
            "route-servers-mixed",
            "PUT",
            "/dispatch/routes/x",
            {"servers": ["a", 1]},
            field="servers",
        ),
        hostile(
            "route-name-slash", "PUT", "/dispatch/routes/a%2Fb", {"servers": "a"}, field="routes"
        ),
        hostile(
            "route-name-65", "PUT", "/dispatch/routes/" + "r" * 65, {"servers": "a"}, field="routes"
        ),
        hostile(
            "crlf-header-name-add",
            "POST",
            "/dispatch/servers",
            {"name": "c", "url": MOVED, "headers": {"X\r\nY": "1"}},
            field="servers.c.headers",
        ),
        hostile(
            "crlf-header-name-update",
            "PUT",
            "/dispatch/servers/b",
            {"headers": {"X\r\nY": "1"}},
            field="servers.b.headers",
        ),
        hostile(
            "colon-header-name",
            "PUT",
            "/dispatch/servers/b",
            {"headers": {"X:Y": "1"}},
            field="servers.b.headers",
        ),
        hostile(
            "empty-header-name",
            "PUT",
            "/dispatch/servers/b",
            {"headers": {"": "1"}},
            field="servers.b.headers.",
        ),
        hostile(
            "crlf-header-value",
            "PUT",
            "/dispatch/servers/b",
            {"headers": {"X-Y": "1\r\nHost: evil"}},
            field="servers.b.headers.X-Y",
        ),
        hostile(
            "nul-header-value",
            "PUT",
            "/dispatch/servers/b",
            {"headers": {"X-Y": "1\x00"}},
            field="servers.b.headers.X-Y",
        ),
        hostile(
            "long-header-value",
            "PUT",
            "/dispatch/servers/b",
            {"headers": {"X-Y": "v" * 9000}},
            field="servers.b.headers.X-Y",
        ),
        hostile(
            "number-header-value",
            "PUT",
            "/dispatch/servers/b",
            {"headers": {"X-Y": 5}},
            field="servers.b.headers.X-Y",
        ),
        hostile(
            "headers-list",
            "PUT",
            "/dispatch/servers/b",
            {"headers": ["X-Y: 1"]},
            field="servers.b.headers",
        ),
        hostile(
            "10k-server-name",
            "POST",
            "/dispatch/servers",
            {"name": "n" * 10_000, "url": MOVED},
            field="servers",
        ),
        hostile(
            "10k-server-rename",
            "PUT",
            "/dispatch/servers/b",
            {"name": "n" * 10_000},
            field="servers",
        ),
        hostile(
            "server-name-slash",
            "POST",
            "/dispatch/servers",
            {"name": "a/b", "url": MOVED},
            field="servers",
        ),
        hostile(
            "server-name-percent",
            "POST",
            "/dispatch/servers",
            {"name": "a%2F", "url": MOVED},
            field="servers",
        ),
        hostile(
            "server-name-control",
            "POST",
            "/dispatch/servers",
            {"name": "a\x1b[2J", "url": MOVED},
            field="servers",
        ),
        hostile(
            "server-name-auto",
            "POST",
            "/dispatch/servers",
            {"name": "auto", "url": MOVED},
            field="servers.auto",
        ),
        hostile(
            "max-in-flight-1e308",
            "PUT",
            "/dispatch/servers/b",
            {"max_in_flight": 1e308},
            field="servers.b.max_in_flight",
        ),
        hostile(
            "max-in-flight-1e400",
            "PUT",
            "/dispatch/servers/b",
            b'{"max_in_flight": 1e400}',
            field="servers.b.max_in_flight",
        ),
        hostile(
            "max-in-flight-fraction",
            "PUT",
            "/dispatch/servers/b",
            {"max_in_flight": 1.5},
            field="servers.b.max_in_flight",
        ),
        hostile(
            "max-in-flight-true",
            "PUT",
            "/dispatch/servers/b",
            {"max_in_flight": True},
            field="servers.b.max_in_flight",
        ),
        hostile(
            "weight-1e308",
            "POST",
            "/dispatch/servers",
            {"name": "c", "url": MOVED, "weight": 1e308},
            field="servers.c.weight",
        ),
        hostile(
            "weight-negative",
            "PUT",
            "/dispatch/servers/b",
            {"weight": -1},
            field="servers.b.weight",
        ),
        hostile(
            "enabled-text",
            "PUT",
            "/dispatch/servers/b",
            {"enabled": "yes"},
            field="servers.b.enabled",
        ),
        hostile(
            "job-timeout-1e308",
            "PUT",
            "/dispatch/settings",
            {"timeouts": {"job": 1e308}},
            field="timeouts.job",
        ),
        hostile(
            "request-timeout-zero",
            "PUT",
            "/dispatch/settings",
            {"timeouts": {"request": 0}},
            field="timeouts.request",
        ),
        hostile(
            "cache-entries-1e308",
            "PUT",
            "/dispatch/settings",
            {"cache": {"max_entries": 1e308}},
            field="cache.max_entries",
        ),
        hostile(
            "cache-distance-text",
            "PUT",
            "/dispatch/settings",
            {"cache": {"max_distance": "3"}},
            field="cache.max_distance",
        ),
    ]
    + [
        hostile(
            f"run-timeout-{how}",
            "POST",
            "/dispatch/run",
            {**RUN, "timeout": value},
            field="timeout",
        )
        for how, value in [
            ("true", True),
            ("negative", -5),
            ("zero", 0),
            ("1e308", 1e308),
            ("text", "10"),
            ("list", [10]),
            ("eight-days", 8 * 86400),
            ("object", {"s": 1}),
        ]
    ]
    + [
        hostile(
            "run-timeout-1e400",
            "POST",
            "/dispatch/run",
            b'{"route": "gen", "template": "inv", "timeout": 1e400}',
            field="timeout",
        ),
        hostile(
            "run-unknown-output-node",
            "POST",
            "/dispatch/run",
            {**RUN, "output_node": "Nope"},
            field="Nope",
        ),
        hostile(
            "run-output-node-number",
            "POST",
            "/dispatch/run",
            {**RUN, "output_node": 3},
            field="output_node",
        ),
        hostile(
            "run-route-list",
            "POST",
            "/dispatch/run",
            {"route": ["gen"], "template": "inv"},
            field="route",
        ),
        hostile("run-values-list", "POST", "/dispatch/run", {**RUN, "values": [1]}, field="values"),
        hostile(
            "run-workflow-list",
            "POST",
            "/dispatch/run",
            {"route": "gen", "workflow": [1]},
            field="workflow",
        ),
        hostile(
            "run-template-traversal",
            "POST",
            "/dispatch/run",
            {"route": "gen", "template": "../config"},
            field="name",
        ),
        hostile(
            "run-server-list", "POST", "/dispatch/run", {**RUN, "server": ["a"]}, field="server"
        ),
        hostile(
            "run-unknown-server", "POST", "/dispatch/run", {**RUN, "server": "zz"}, field="server"
        ),
        hostile(
            "run-unknown-field", "POST", "/dispatch/run", {**RUN, "command": "rm"}, field="command"
        ),
        hostile(
            "run-unknown-value", "POST", "/dispatch/run", {**RUN, "values": {"9.x": 1}}, field="9"
        ),
        hostile(
            "template-description-list",
            "PUT",
            "/dispatch/templates/x",
            {"workflow": workflows.invert(), "description": ["x"]},
            field="description",
        ),
        hostile(
            "template-overwrite-text",
            "PUT",
            "/dispatch/templates/x",
            {"workflow": workflows.invert(), "overwrite": "yes"},
            field="overwrite",
        ),
    ]
)
INPUT_CASES = BODY_CASES + VALUE_CASES


@pytest.mark.parametrize("case", INPUT_CASES, ids=ids(INPUT_CASES))
async def test_hostile_bodies_and_numbers_are_refused(api: Api, case: Hostile) -> None:
    await refused_and_unchanged(api, case)


async def test_a_50_mb_server_name_is_refused_with_comfyuis_body_limit(api: Api) -> None:
    case = hostile(
        "50mb",
        "POST",
        "/dispatch/servers",
        {"name": "n" * (50 * MIB), "url": MOVED},
        field="servers",
    )
    await refused_and_unchanged(api, case)
    assert len(api.answers[-1].raw) < 10_000  # the name is not echoed back


async def test_a_body_over_the_apps_limit_is_a_413_not_a_500(tmp_path: Path) -> None:
    async with open_api(tmp_path, default_limit=True) as small:  # aiohttp's 1 MiB default
        case = hostile(
            "2mb",
            "POST",
            "/dispatch/servers",
            {"name": "n" * (2 * MIB), "url": MOVED},
            status=413,
            field="body",
        )
        await refused_and_unchanged(small, case)


# -- 8. Jobs --------------------------------------------------------------------------------

JOB_CASES = [
    hostile("unknown-id", "GET", "/dispatch/jobs/jnope", status=404, field="id"),
    hostile("cancel-unknown-id", "DELETE", "/dispatch/jobs/jnope", status=404, field="id"),
    hostile("cancel-long-id", "DELETE", "/dispatch/jobs/" + "j" * 4000, status=404, field="id"),
    hostile(
        "cancel-traversal-id",
        "DELETE",
        "/dispatch/jobs/..%2F..%2Fjobs.sqlite",
        status=404,
        field="id",
    ),
    hostile("long-id", "GET", "/dispatch/jobs/" + "j" * 4000, status=404, field="id"),
    hostile("traversal-id", "GET", "/dispatch/jobs/..%2F..%2Fjobs.sqlite", status=404, field="id"),
    hostile("files-of-unknown-id", "GET", "/dispatch/jobs/jnope/files/0", status=404, field="id"),
    hostile("limit-400-digits", "GET", "/dispatch/jobs?limit=" + "9" * 400, field="limit"),
    hostile("limit-negative", "GET", "/dispatch/jobs?limit=-1", field="limit"),
    hostile("limit-exponent", "GET", "/dispatch/jobs?limit=1e3", field="limit"),
    hostile("limit-over-maximum", "GET", "/dispatch/jobs?limit=1001", field="limit"),
    hostile("limit-superscript-digit", "GET", "/dispatch/jobs?limit=%C2%B2", field="limit"),
    hostile(
        "file-index-400-digits", "GET", "/dispatch/jobs/jnope/files/" + "9" * 400, field="index"
    ),
    hostile("file-index-negative", "GET", "/dispatch/jobs/jnope/files/-1", field="index"),
    hostile("file-index-superscript", "GET", "/dispatch/jobs/jnope/files/%C2%B2", field="index"),
    hostile(
        "worker-log-lines-400-digits",
        "GET",
        "/dispatch/workers/w1/log?lines=" + "9" * 400,
        field="lines",
    ),
]


@pytest.mark.parametrize("case", JOB_CASES, ids=ids(JOB_CASES))
async def test_hostile_job_requests_are_refused(api: Api, case: Hostile) -> None:
    body = await refused_and_unchanged(api, case)
    assert len(body["error"]) < 500


def test_a_small_keep_never_evicts_unfinished_records(tmp_path: Path) -> None:
    activity = Activity(keep=2, table=JobTable(tmp_path / "jobs.sqlite"))
    queued = activity.start("t", "gen")
    running = activity.start("t", "gen")
    activity.running(running, "a", "p-running")
    finished = []
    for _ in range(5):
        record = activity.start("t", "gen")
        activity.failed(record, RuntimeError("boom"))
        finished.append(record)
        activity.start("t", "gen")  # another unfinished one: an eviction round
    kept = {r.id for r in activity.recent(1000)}
    assert queued.id in kept and running.id in kept
    assert [r.id for r in finished if r.id in kept] == [finished[-2].id, finished[-1].id]
    assert len([r for r in activity.recent(1000) if not r.terminal]) == 7
    activity.close()
    again = Activity(keep=2, table=JobTable(tmp_path / "jobs.sqlite"))
    try:
        restored = {r.id: r for r in again.recent(1000)}
        assert queued.id in restored and running.id in restored
        assert restored[running.id].state == "failed"
        assert (restored[running.id].error or "").startswith("lost:")
        assert "p-running" in (restored[running.id].error or "")
    finally:
        again.close()


async def test_a_job_unfinished_at_a_restart_is_reported_lost(tmp_path: Path) -> None:
    folder = tmp_path / "dispatch"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"servers": {"a": MOVED}}))
    first = DispatchService(folder, status_interval=0)
    record = first.jobs.activity.start("inv", "gen", "a")
    first.jobs.activity.running(record, "a", "prompt-7")
    await first.close()  # the process stops: the job never finishes
    async with DispatchService(folder, status_interval=0) as second:
        runner, base = await comfyui_like(second)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{base}/dispatch/jobs/{record.id}") as response:
                    assert response.status == 200
                    job = await response.json()
                async with session.get(f"{base}/dispatch/jobs") as response:
                    listed = await response.json()
        finally:
            await runner.cleanup()
    assert job["state"] == "failed" and job["error"].startswith("lost:")
    assert "prompt-7" in job["error"] and job["finished_at"] is not None
    assert [j["id"] for j in listed] == [record.id]


# -- 9. Served files ------------------------------------------------------------------------

INLINE = [
    ("x.png", "image/png"),
    ("x.PNG", "image/png"),
    ("x.html.png", "image/png"),
    ("x.webp", "image/webp"),
    ("x.mp4", "video/mp4"),
    ("x.flac", "audio/flac"),
]
ATTACHED = [
    "x.html",
    "x.HTM",
    "x.svg",
    "x.xhtml",
    "x.js",
    "x.png.html",
    "x.xml",
    "x.pdf",
    "x",
    "x.",
    ".png",
    "x.svgz",
    "x.png\r\nSet-Cookie: a=b",
]


@pytest.mark.parametrize(("filename", "kind"), INLINE, ids=[n for n, _ in INLINE])
def test_media_is_served_inline_with_our_own_type(filename: str, kind: str) -> None:
    assert content_type_for(filename) == (kind, True)


@pytest.mark.parametrize("filename", ATTACHED, ids=[repr(n) for n in ATTACHED])
def test_everything_else_is_an_attachment(filename: str) -> None:
    assert content_type_for(filename) == ("application/octet-stream", False)


HOSTILE_FILENAMES = [
    'x".png',
    'x"; filename="evil.html',
    "x.png\r\nSet-Cookie: a=b",
    "x\n.png",
    "../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "/abs/path.png",
    "sub/",
    "",
    "ü😀.png",
    "a" * 500 + ".html",
    "x%0d%0a.png",
    "x\x00.png",
]


@pytest.mark.parametrize(
    "filename", HOSTILE_FILENAMES, ids=[repr(n)[:40] for n in HOSTILE_FILENAMES]
)
@pytest.mark.parametrize("inline", [True, False], ids=["inline", "attachment"])
def test_a_hostile_filename_cannot_break_content_disposition(filename: str, inline: bool) -> None:
    header = _disposition(filename, inline)
    assert header.isascii() and header.isprintable()
    how, plain, extended = header.split("; ")
    assert how == ("inline" if inline else "attachment")
    assert plain.startswith('filename="') and plain.endswith('"')
    shown = plain[len('filename="') : -1]
    assert shown and '"' not in shown and "/" not in shown and "\\" not in shown
    assert len(shown) <= 120 and shown not in ("..", ".")
    assert extended.startswith("filename*=UTF-8''")
    decoded = unquote(extended.removeprefix("filename*=UTF-8''"))
    assert "/" not in decoded and "\\" not in decoded and len(decoded) <= 120
    assert decoded not in ("..", ".")


class _Download:
    def __init__(self, data: bytes):
        self.data = data

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self.data[:3]
        yield self.data[3:]


@asynccontextmanager
async def _opened(data: bytes) -> AsyncIterator[_Download]:
    yield _Download(data)


SERVED = [(n, k, True) for n, k in INLINE[:2]] + [
    (n, "application/octet-stream", False)
    for n in ("x.html", "x.svg", "x.js", "x.png\r\nSet-Cookie: a=b", "../../x.html")
]


@pytest.mark.parametrize(("filename", "kind", "inline"), SERVED, ids=[repr(s[0]) for s in SERVED])
async def test_stream_output_serves_inert_answers(filename: str, kind: str, inline: bool) -> None:
    data = b"<svg onload=alert(1)><script>alert(1)</script>"

    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream_output(request, _opened(data), filename)

    app = web.Application()
    app.router.add_get("/file", handler)
    runner, base = await start(app)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/file") as response:
                assert response.status == 200 and await response.read() == data
                headers = response.headers
    finally:
        await runner.cleanup()
    assert_inert(headers, kind, inline)


def assert_inert(headers: CIMultiDictProxy[str], kind: str, inline: bool) -> None:
    assert headers["Content-Type"].split(";")[0] == kind
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert headers["Content-Disposition"].startswith("inline;" if inline else "attachment;")
    assert "Set-Cookie" not in headers


PEER_FILES = [
    ("x.html", b"<script>alert(document.domain)</script>", "application/octet-stream", False),
    (
        "x.svg",
        b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
        "application/octet-stream",
        False,
    ),
    ("x.png", encode_png(Image.solid(2, 2, (1, 2, 3))), "image/png", True),
]


@pytest.mark.parametrize(
    ("filename", "data", "kind", "inline"), PEER_FILES, ids=[f[0] for f in PEER_FILES]
)
async def test_a_peer_file_is_served_inert(
    api: Api, filename: str, data: bytes, kind: str, inline: bool
) -> None:
    api.peers["a"].files.upload("output", "", filename, data, True)
    record = api.service.jobs.activity.start("inv", "gen", "a")
    record.state = "done"
    record.files = (OutputFile(filename, "", "output", "", server="a", node_id="3"),)
    answer = await api.call("GET", f"/dispatch/jobs/{record.id}/files/0")
    assert answer.status == 200, answer.raw[:300]
    assert answer.raw == data
    assert_inert(answer.headers, kind, inline)
    assert "Cross-Origin-Resource-Policy" in answer.headers


def test_there_are_at_least_seventy_hostile_cases() -> None:
    tables = [
        HOST_CASES,
        STANDALONE_HOST_CASES,
        CROSS_SITE_CASES,
        GATEWAY_CROSS_SITE_CASES,
        TOKEN_CASES,
        VERSION_CASES,
        TEMPLATE_VERSION_CASES,
        SECRET_CASES,
        TEMPLATE_NAME_CASES,
        INPUT_CASES,
        JOB_CASES,
    ]
    assert sum(len(t) for t in tables) >= 70
