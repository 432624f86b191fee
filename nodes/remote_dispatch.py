"""The Remote Dispatch nodes: run a saved template on another ComfyUI, get its images back.

Classic (V1) node classes with an `async` FUNCTION: ComfyUI 0.3.45 and later run it on
the prompt's loop and start other ready nodes meanwhile, so two Remote Dispatch nodes in
one graph keep two GPUs busy at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from ..dispatch_core import (
    DispatchError,
    DispatchResult,
    RoutingError,
    Template,
    WorkflowError,
)
from ..dispatch_core.service import DispatchService, fan_out_seeds
from . import host
from .images import to_png
from .own_server import own_servers, refusal
from .params import ParamInputs, param_values
from .progress import ProgressRelay as _ProgressRelay
from .results import OUTPUTS, Fetched, node_output, read_outputs, wanted_outputs

_ROUTE_DEFAULT = "(route's servers)"
_NO_TEMPLATE = "(no template saved yet)"
_NO_ROUTE = "(no route configured)"
_MAX_SEED = 0xFFFFFFFFFFFFFFFF


def _template_input() -> tuple[list[str], dict[str, Any]]:
    names = host.service().templates.names() or [_NO_TEMPLATE]
    return names, {"tooltip": "A saved API-format workflow: save one from the Dispatch panel."}


def _route_input() -> tuple[list[str], dict[str, Any]]:
    routes = list(host.service().config.routes) or [_NO_ROUTE]
    return routes, {"tooltip": "The workflow type: which server (or pool) runs it."}


def _shared_inputs() -> dict[str, Any]:
    return {
        "overrides": (
            "STRING",
            {
                "multiline": True,
                "default": "{}",
                "tooltip": 'JSON: {"6.text": "a cat", "Positive Prompt.text": "…", "steps": 30}'
                " — NODE.INPUT by node id or title, or a parameter name of the template.",
            },
        ),
        "seed": (
            "INT",
            {
                "default": 0,
                "min": 0,
                "max": _MAX_SEED,
                "control_after_generate": True,
                "tooltip": "Sets the template's 'seed' parameter, if it has one.",
            },
        ),
        "timeout": (
            "INT",
            {
                "default": 0,
                "min": 0,
                "max": 7 * 24 * 3600,
                "tooltip": "Seconds to wait for the result; 0 uses the config's job timeout.",
            },
        ),
    }


def _optional_inputs() -> dict[str, Any]:
    return ParamInputs(
        {
            "prompt": ("STRING", {"forceInput": True, "tooltip": "Sets the 'prompt' parameter."}),
            "image": ("IMAGE", {"tooltip": "Uploaded to the peer into the 'image' parameter."}),
            "output_node": (
                "STRING",
                {"default": "", "tooltip": "Return only this node's images (id or title)."},
            ),
            "save_output": (
                "BOOLEAN",
                {
                    "default": False,
                    "tooltip": "Also save the returned files into this ComfyUI's output folder, "
                    "named as the template's save node named them; off: only previewed here.",
                },
            ),
        }
    )


class _RemoteNode:
    CATEGORY = "dispatch"
    RETURN_TYPES = ("IMAGE", "STRING", "MASK", "LATENT", "VIDEO", "AUDIO")
    RETURN_NAMES = OUTPUTS
    OUTPUT_TOOLTIPS = (
        "Every image the peer returned, as one batch.",
        "JSON: server, prompt id, timings, and every output file with its URL.",
        "The images' masks, as LoadImage makes them (1 - alpha; zeros without alpha).",
        "The latent a SaveLatent node of the template wrote.",
        "The video a SaveVideo or SaveWEBM node of the template wrote (the first one).",
        "The audio a SaveAudio node of the template wrote (the first one).",
    )
    FUNCTION = "dispatch"
    OUTPUT_NODE = True
    """Its images are previewed in place, so that the node alone is a valid prompt."""
    SEARCH_ALIASES = (
        "remote",
        "multi gpu",
        "distributed",
        "dispatch",
        "render farm",
        "another server",
    )
    """Read by ComfyUI after 0.3.64 (`search_aliases` in `/object_info`)."""

    @classmethod
    def IS_CHANGED(cls, template: str = "", **_: Any) -> str:
        """Cached while inputs and the template file are unchanged; re-run when it changes."""
        return host.service().templates.fingerprint(template) if template != _NO_TEMPLATE else ""


class RemoteDispatch(_RemoteNode):
    """Run a saved template on the server its route names, and return that server's images."""

    DESCRIPTION = __doc__

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        servers = [_ROUTE_DEFAULT, *host.service().config.servers]
        return {
            "required": {
                "template": _template_input(),
                "route": _route_input(),
                "server": (servers, {"tooltip": "Send to this server instead of the route's."}),
                **_shared_inputs(),
            },
            "optional": _optional_inputs(),
            "hidden": {"unique_id": "UNIQUE_ID", "graph": "PROMPT"},
        }

    async def dispatch(
        self,
        template: str,
        route: str,
        server: str,
        overrides: str,
        seed: int,
        timeout: int,
        prompt: str | None = None,
        image: Any = None,
        output_node: str = "",
        save_output: bool = False,
        unique_id: str | None = None,
        graph: Any = None,
        **params: Any,
    ) -> dict[str, Any]:
        service = host.service()
        chosen, values = _values(service, template, route, overrides, prompt, seed, params)
        uploads: list[bytes | None] = [None]
        if image is not None:
            uploads = [to_png(image[i]) for i in range(image.shape[0])]
        progress = _ProgressRelay(unique_id, len(uploads))
        specs = [
            service.jobs.spec(
                route,
                template=chosen,
                values=values | ({"image": png} if png is not None else {}),
                server=None if server == _ROUTE_DEFAULT else server,
                timeout=timeout or None,
                output_node=output_node.strip() or None,
            )
            for png in uploads
        ]

        running = host.running_prompt_id()
        wanted = wanted_outputs(graph, unique_id)
        candidates = service.config.servers_for(route, server=specs[0].server)

        async def work() -> tuple[list[DispatchResult], list[Fetched]]:
            own = await own_servers(service, candidates, running)
            if own and own >= set(candidates):
                raise refusal(service, sorted(own))
            avoiding = [dataclasses.replace(spec, avoid=own) for spec in specs]
            found = await service.jobs.run_many(avoiding, on_progress=progress.report)
            results = [r for r in found if isinstance(r, DispatchResult)]
            return results, await read_outputs(results, wanted=wanted, every=save_output)

        results, files = await host.on_server_loop(work, on_tick=progress.show)
        summary = results[0].to_dict() if len(results) == 1 else {"jobs": []}
        if len(results) > 1:
            summary["jobs"] = [r.to_dict() for r in results]
        output = await asyncio.to_thread(
            partial(node_output, keep=save_output, wanted=wanted, where=f"template {template!r}"),
            files,
            summary,
        )
        progress.finished(results, summary["images"])
        return output


class RemoteDispatchFanOut(_RemoteNode):
    """Run one template on several servers at once, server i with seed + i; every image
    comes back as one batch, in server order."""

    DESCRIPTION = __doc__

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "template": _template_input(),
                "route": _route_input(),
                "servers": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "Comma-separated server names; empty: every enabled "
                        "server of the route.",
                    },
                ),
                "on_error": (
                    ["fail", "partial"],
                    {
                        "tooltip": "partial: a failing server is reported, the others' images "
                        "still come back."
                    },
                ),
                **_shared_inputs(),
            },
            "optional": _optional_inputs(),
            "hidden": {"unique_id": "UNIQUE_ID", "graph": "PROMPT"},
        }

    async def dispatch(
        self,
        template: str,
        route: str,
        servers: str,
        on_error: str,
        overrides: str,
        seed: int,
        timeout: int,
        prompt: str | None = None,
        image: Any = None,
        output_node: str = "",
        save_output: bool = False,
        unique_id: str | None = None,
        graph: Any = None,
        **params: Any,
    ) -> dict[str, Any]:
        service = host.service()
        chosen, values = _values(service, template, route, overrides, prompt, None, params)
        names = _fan_out_servers(service, route, servers)
        if image is not None:
            if image.shape[0] != 1:
                raise WorkflowError("fan-out sends one image to every server: give it a batch of 1")
            values["image"] = to_png(image[0])
        varied_seed = seed if "seed" in chosen.parameters else None
        progress = _ProgressRelay(unique_id, len(names))

        spec = service.jobs.spec(
            route,
            template=chosen,
            values=values,
            timeout=timeout or None,
            output_node=output_node.strip() or None,
        )

        running = host.running_prompt_id()
        wanted = wanted_outputs(graph, unique_id)

        async def work() -> tuple[list[DispatchResult | DispatchError], list[Fetched]]:
            own = await own_servers(service, names, running)
            if own and (servers.strip() or own >= set(names)):
                raise refusal(service, sorted(own))  # named, or the route has no other
            names[:] = [name for name in names if name not in own]
            outcomes = await service.jobs.fan_out(
                names,
                spec,
                seed=varied_seed,
                partial=on_error == "partial",
                on_progress=progress.report,
            )
            done = [o for o in outcomes if isinstance(o, DispatchResult)]
            return outcomes, await read_outputs(done, wanted=wanted, every=save_output)

        outcomes, files = await host.on_server_loop(work, on_tick=progress.show)
        failures = [
            (n, o)
            for n, o in zip(names, outcomes, strict=True)
            if not isinstance(o, DispatchResult)
        ]
        if len(failures) == len(names):
            raise failures[0][1]
        done = [o for o in outcomes if isinstance(o, DispatchResult)]
        summary: dict[str, Any] = {
            "jobs": [o.to_dict() for o in done],
            "failed": [{"server": n, "error": str(e)} for n, e in failures],
            "seeds": fan_out_seeds(varied_seed, names),
        }
        output = await asyncio.to_thread(
            partial(node_output, keep=save_output, wanted=wanted, where=f"template {template!r}"),
            files,
            summary,
        )
        progress.finished(done, summary["images"])
        return output


def _values(
    service: DispatchService,
    template: str,
    route: str,
    overrides: str,
    prompt: str | None,
    seed: int | None,
    params: Mapping[str, Any],
) -> tuple[Template, dict[str, Any]]:
    """The template, read once, and its values from the node's inputs: its parameter
    widgets, the seed and prompt inputs, then the JSON overrides, which win."""
    if template == _NO_TEMPLATE:
        raise WorkflowError(
            "no template is saved yet: open the Dispatch panel and save a workflow as a template"
        )
    if route == _NO_ROUTE:
        raise RoutingError("no route is configured: add a server and a route in the Dispatch panel")
    if service.config_error:
        raise RoutingError(f"the dispatch config could not be used: {service.config_error}")
    try:
        parsed = json.loads(overrides or "{}")
    except json.JSONDecodeError as error:
        raise WorkflowError(
            f"overrides: not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None
    if not isinstance(parsed, Mapping):
        raise WorkflowError('overrides must be a JSON object, such as {"6.text": "a cat"}')
    values: dict[str, Any] = param_values(params)
    chosen = service.templates.load(template)
    if seed is not None and "seed" in chosen.parameters:
        values["seed"] = seed
    if prompt is not None:
        values["prompt"] = prompt
    return chosen, values | dict(parsed)


def _fan_out_servers(service: DispatchService, route: str, servers: str) -> list[str]:
    """The servers named, each checked; none named: every enabled server of the route."""
    config = service.config
    names = [name.strip() for name in servers.split(",") if name.strip()]
    if not names:
        return list(config.servers_for(route))
    return [name for given in names for name in config.servers_for(route, server=given)]


async def _read_images(results: Sequence[DispatchResult]) -> list[tuple[str, bytes]]:
    files = [(r, f) for r in results for f in r.images]
    data = await asyncio.gather(*(f.read() for _, f in files))
    return [
        (f"{r.server}: node {f.node_id} {f.filename}", d)
        for (r, f), d in zip(files, data, strict=True)
    ]
