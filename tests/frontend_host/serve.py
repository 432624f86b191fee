"""ComfyUI's real frontend with this extension loaded, served without ComfyUI.

    python tests/frontend_host/fetch.py 1.58.1
    python tests/frontend_host/serve.py \
        --frontend test-output/frontend/1.58.1/comfyui_frontend_package/static --port 8188

The page's server is a FakePeer (ComfyUI's peer API: `/ws` with its status frame,
`/object_info`, `/system_stats`, `/queue`, `/history`, `/features`, ...) with what else the
page asks its server for, as recorded from a real ComfyUI 0.3.64 in
`tests/protocol/frontend_requests_*.json`: the frontend's files at `/`, this repository's
`web/` at `/extensions/ComfyUI-Dispatch/` and listed by `/api/extensions`, settings, users,
userdata, i18n and the model folders. Our `/dispatch/*` routes come from a DispatchService
whose config names two more fake peers, `gpu-a` and `gpu-b`; its events reach the page
over `/ws`, as ComfyUI's `send_sync` sends them. Remote groups run as with the package in
ComfyUI (`remote_group.py`). It prints its URL, then serves until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: dispatch_core from this checkout
    sys.path.insert(0, str(ROOT))

import host_cli  # noqa: E402  (beside this file)
import remote_group  # noqa: E402
from our_nodes import load_package, node_defs  # noqa: E402

from dispatch_core.http import add_routes  # noqa: E402
from dispatch_core.service import DispatchService  # noqa: E402
from dispatch_core.testing import FakePeer  # noqa: E402
from dispatch_core.testing._info import MODEL_FOLDERS  # noqa: E402

EXTENSION = "ComfyUI-Dispatch"
"""The folder name under custom_nodes/, which ComfyUI serves the WEB_DIRECTORY under."""
WEB = ROOT / "web"
SERVERS = ("gpu-a", "gpu-b")
MORE_NODES = json.loads((Path(__file__).with_name("object_info_more.json")).read_text())
"""Core nodes FakePeer's subset lacks that the page looks up at start: the loaders its
model library maps model folders to (1.27.10 fails on a missing one) and those of 1.58.1's
default graph (else it reports missing node packs). Written to ComfyUI 0.3.64's shapes."""


class FrontendHost(FakePeer):
    """The page's own ComfyUI: a FakePeer plus the routes only the frontend uses."""

    def __init__(self, frontend: Path, service: DispatchService, **kwargs: Any):
        super().__init__(**kwargs)
        self.frontend = frontend
        self.service = service
        self.settings: dict[str, Any] = {}
        self.userdata: dict[str, bytes] = {}
        service.notify = self.send_sync
        self.package = load_package(service)

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        """ComfyUI's PromptServer.send_sync: to one client, or to every socket."""
        self._hub.send(sid, event, data)

    def object_info(self) -> dict[str, Any]:
        return {**super().object_info(), **copy.deepcopy(MORE_NODES), **node_defs(self.package)}

    def _routes(self) -> list[tuple[str, str, Any]]:
        """Route definitions: ComfyUI answers each under `/path` and `/api/path`."""
        dispatch = web.RouteTableDef()  # as ComfyUI's PromptServer.routes holds them
        add_routes(dispatch, self.service)
        return [
            *super()._routes(),
            ("GET", "/", self._index),
            ("GET", "/extensions", self._extensions),
            ("GET", "/users", self._users),
            ("GET", "/settings", self._get_settings),
            ("POST", "/settings", self._post_settings),
            ("GET", "/settings/{id}", self._get_setting),
            ("POST", "/settings/{id}", self._post_setting),
            ("GET", "/userdata", self._list_userdata),
            ("GET", "/userdata/{file}", self._get_userdata),
            ("POST", "/userdata/{file}", self._post_userdata),
            ("GET", "/i18n", self._i18n),
            ("GET", "/experiment/models", self._experiment_models),
            *((r.method, r.path, r.handler) for r in dispatch if isinstance(r, web.RouteDef)),
        ]

    def _app(self) -> web.Application:
        app = super()._app()
        # Static folders and the internal routes: no /api alias, as in ComfyUI.
        app.router.add_get("/internal/folder_paths", self._folder_paths)
        app.router.add_static(f"/extensions/{EXTENSION}", WEB)
        app.router.add_static("/", self.frontend)
        return app

    # -- the page --------------------------------------------------------------------

    async def _index(self, _: web.Request) -> web.StreamResponse:
        response = web.FileResponse(self.frontend / "index.html")
        response.headers["Cache-Control"] = "no-cache"
        return response

    async def _extensions(self, _: web.Request) -> web.Response:
        """Every .js of the frontend's extensions/ and of our WEB_DIRECTORY, recursively."""
        core = sorted(self.frontend.glob("extensions/**/*.js"))
        ours = sorted(WEB.glob("**/*.js"))
        return web.json_response(
            [f"/{p.relative_to(self.frontend).as_posix()}" for p in core]
            + [f"/extensions/{EXTENSION}/{p.relative_to(WEB).as_posix()}" for p in ours]
        )

    async def _i18n(self, _: web.Request) -> web.Response:
        return web.json_response({})  # no custom node of ours has locales/

    # -- one user's settings and files (app/user_manager.py, app/app_settings.py) ---

    async def _users(self, _: web.Request) -> web.Response:
        return web.json_response({"storage": "server", "migrated": True})

    async def _get_settings(self, _: web.Request) -> web.Response:
        return web.json_response(self.settings)

    async def _post_settings(self, request: web.Request) -> web.Response:
        self.settings.update(await request.json())
        return web.Response()

    async def _get_setting(self, request: web.Request) -> web.Response:
        return web.json_response(self.settings.get(request.match_info["id"]))

    async def _post_setting(self, request: web.Request) -> web.Response:
        self.settings[request.match_info["id"]] = await request.json()
        return web.Response()

    async def _list_userdata(self, request: web.Request) -> web.Response:
        """The stored files under `dir`; 404 when there are none, as for a missing dir."""
        folder = request.query.get("dir", "").strip("/")
        if not folder:
            return web.Response(status=400, text="dir is required")
        found = sorted(n for n in self.userdata if n.startswith(folder + "/"))
        if not found:
            return web.Response(status=404)
        names = [n[len(folder) + 1 :] for n in found]
        if request.query.get("full_info") == "true":
            return web.json_response(
                [
                    {"path": name, "size": len(self.userdata[path]), "modified": 0, "created": 0}
                    for name, path in zip(names, found, strict=True)
                ]
            )
        return web.json_response(names)

    async def _get_userdata(self, request: web.Request) -> web.Response:
        body = self.userdata.get(request.match_info["file"])
        if body is None:
            return web.Response(status=404)
        return web.Response(body=body)

    async def _post_userdata(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if request.query.get("overwrite") == "false" and name in self.userdata:
            return web.Response(status=409)
        self.userdata[name] = await request.read()
        return web.json_response(name)

    # -- model folders ----------------------------------------------------------------

    def _folders(self) -> dict[str, list[str]]:
        return {name: [f"/fake/models/{name}"] for name in MODEL_FOLDERS}

    async def _experiment_models(self, _: web.Request) -> web.Response:
        skip = ("configs", "custom_nodes")
        return web.json_response(
            [{"name": n, "folders": f} for n, f in self._folders().items() if n not in skip]
        )

    async def _folder_paths(self, _: web.Request) -> web.Response:
        return web.json_response(self._folders())


async def serve(frontend: Path, port: int, stop: asyncio.Event) -> None:
    folder = Path(tempfile.mkdtemp(prefix="dispatch-frontend-host-"))
    try:
        async with contextlib.AsyncExitStack() as stack:
            peers = [await stack.enter_async_context(FakePeer(job_seconds=0.3)) for _ in SERVERS]
            config = {"servers": {n: p.url for n, p in zip(SERVERS, peers, strict=True)}}
            config["routes"] = {"default": SERVERS[0], "pool": list(SERVERS)}
            (folder / "config.json").write_text(json.dumps(config))
            service = DispatchService(folder, status_interval=0.5)
            stack.push_async_callback(service.close)
            models = {"checkpoints": ["sd15.safetensors"]}
            host = FrontendHost(frontend, service, port=port, job_seconds=0.3, models=models)
            group_node = remote_group.group_node(host.package, service)
            host.custom_nodes["RemoteDispatchGroup"] = group_node
            host.prompt_handlers.append(remote_group.prompt_handler(host.package, host))
            await stack.enter_async_context(host)
            print(f"frontend host on {host.url}/ (frontend {frontend})", flush=True)
            await stop.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    host_cli.main(__doc__.split("\n")[0], serve)
