"""The RemoteDispatchGroup node: a remote group's stand-in, which runs its nodes on a peer.

Never placed by hand: the prompt handler (`group_handler`) puts one where each remote group
was, with the group's plan (its sub-workflow and its edge) in the `group` input and the
values entering it on `in_0…`. Running it uploads those values, runs the sub-workflow
through the dispatcher like any job (routes, affinity, journal, progress, cancel), and
hands each value leaving the group to the nodes it fed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ..dispatch_core import (
    DispatchResult,
    InputError,
    JobSpec,
    Progress,
    RoutingError,
    WorkflowError,
)
from ..dispatch_core.groups import GroupPlan, Target, plan_from_json, refusal_of
from ..dispatch_core.workflow import WorkflowBuilder
from . import group_previews, host
from .group_values import (
    Upload,
    image_uploads,
    images_from,
    latent_from,
    latent_upload,
    latents_joined,
    mask_from,
    mask_upload,
    value_from,
)
from .own_server import own_servers, refusal
from .progress import ProgressRelay

MAX_INPUTS = 32
MAX_OUTPUTS = 32
_SEED_INPUTS = ("seed", "noise_seed")
Files = dict[str, list[tuple[str, bytes]]]
"""The files of one result that a group needs, by the node that made them."""


class _AnyType(str):
    """A socket type that matches every other, as ComfyUI's own `IO.ANY` does."""

    def __ne__(self, other: object) -> bool:
        return False

    __hash__ = str.__hash__


ANY = _AnyType("*")


class RemoteDispatchGroup:
    """Runs a remote group's nodes on another ComfyUI. Made when a graph with remote groups
    is queued: draw a group and pick Run on ▸ from its menu, rather than adding this node."""

    DESCRIPTION = __doc__
    CATEGORY = "dispatch"
    RETURN_TYPES = (ANY,) * MAX_OUTPUTS
    OUTPUT_NODE = True  # a group whose outputs feed nothing (a SaveImage inside) still runs
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "group": ("STRING", {"default": "", "tooltip": "The group's plan, as JSON."}),
                "target": ("STRING", {"default": "", "tooltip": "server:NAME, route:NAME…"}),
            },
            "optional": {f"in_{index}": (ANY, {}) for index in range(MAX_INPUTS)},
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, group: str) -> bool | str:
        """Refused at queueing: a graph that could not be cut, or a target that is gone.

        Only `group` is taken: ComfyUI repeats a refusal once for each input named here.
        """
        refused = refusal_of(group)
        if refused is not None:
            return refused
        if not group:
            return "this node is made when a remote group is queued: draw a group instead"
        try:
            plan = plan_from_json(group)
            _servers(plan.group.target)
        except InputError as error:
            return f"remote group: {error}"
        return True

    async def run(
        self, group: str, target: str, unique_id: str | None = None, **inputs: Any
    ) -> tuple[Any, ...]:
        plan = plan_from_json(group)
        specs = await asyncio.to_thread(_specs, plan, inputs)
        progress = ProgressRelay(unique_id, len(specs))
        wanted = {output.node for output in plan.outputs} | set(plan.group.nodes)

        def report(update: Progress) -> None:
            progress.report(update)
            if update.node in plan.group.nodes:  # the sub-workflow keeps the graph's ids
                host.send_node_progress(update.node, update.value, update.max)

        running = host.running_prompt_id()

        async def work() -> tuple[list[DispatchResult], list[Files]]:
            jobs = await _avoiding_here(specs, running)
            found = await host.service().jobs.run_many(jobs, on_progress=report)
            results = [r for r in found if isinstance(r, DispatchResult)]
            return results, [await _files(result, wanted) for result in results]

        results, files = await host.on_server_loop(work, on_tick=progress.show)
        values = await asyncio.to_thread(_outputs, plan, results, files)
        shown = await asyncio.to_thread(group_previews.show, plan, files)
        progress.finished(results, shown)
        return (*values, *([None] * (MAX_OUTPUTS - len(values))))


async def _avoiding_here(specs: list[JobSpec], running: str | None) -> list[JobSpec]:
    """The jobs kept off a server that is this ComfyUI, busy running this very node; a
    group whose only server is this ComfyUI is refused, saying why."""
    service = host.service()
    candidates = {
        name
        for spec in specs
        for name in service.config.servers_for(spec.route, server=spec.server)
    }
    own = await own_servers(service, sorted(candidates), running)
    if own and own >= candidates:
        raise refusal(service, sorted(own))
    return [dataclasses.replace(spec, avoid=own) for spec in specs]


def _servers(target: Target) -> tuple[str, ...]:
    """The servers the target names, checked against the config as it is now."""
    service = host.service()
    if service.config_error:
        raise RoutingError(f"the dispatch config could not be used: {service.config_error}")
    return service.config.servers_for(target.route, server=target.server)


def _specs(plan: GroupPlan, inputs: Mapping[str, Any]) -> list[JobSpec]:
    """One job, or one per server of a fan-out (server i with every seed + i)."""
    target, name = plan.group.target, plan.group.title
    builder = _builder(plan, inputs)
    if target.kind == "fan-out":
        return [
            JobSpec("fan-out", workflow=_seeded(builder, index), server=server, name=name)
            for index, server in enumerate(_servers(target))
        ]
    return [JobSpec(target.route, workflow=builder, server=target.server, name=name)]


def _builder(plan: GroupPlan, inputs: Mapping[str, Any]) -> WorkflowBuilder:
    """The sub-workflow with the values entering the group set, files to upload included."""
    workflow = {node_id: dict(node) for node_id, node in plan.workflow.items()}
    images: dict[str, Upload] = {}
    for boundary in plan.inputs:
        value = inputs.get(boundary.name)
        if value is None:
            raise WorkflowError(
                f"remote group {plan.group.label}: no value reached its input "
                f"{boundary.name} ({boundary.type})"
            )
        if boundary.kind == "image":
            loader = boundary.fills[0][0]
            uploads = image_uploads(value)
            images.update(zip(_batch_loaders(workflow, loader, len(uploads)), uploads, strict=True))
    builder = WorkflowBuilder(workflow)
    for boundary in plan.inputs:
        _fill(builder, boundary.kind, boundary.fills, inputs[boundary.name])
    for loader, upload in images.items():
        builder.set_image(loader, upload.data, filename=upload.filename)
    return builder


def _fill(
    builder: WorkflowBuilder, kind: str, fills: Sequence[tuple[str, str]], value: Any
) -> None:
    if kind == "value":
        for node, name in fills:
            builder.set(node, name, value)
    elif kind in ("mask", "latent"):
        upload = mask_upload(value) if kind == "mask" else latent_upload(value)
        node, name = fills[0]
        builder.set_image(node, upload.data, input=name, filename=upload.filename)


def _batch_loaders(workflow: dict[str, Any], loader: str, count: int) -> list[str]:
    """LoadImage loads one image: a batch of N crosses as N loaders joined by ImageBatch."""
    ids = [loader] + [_fresh(workflow, f"{loader}_{index}") for index in range(1, count)]
    if count <= 1:
        return ids
    joined = [loader, 0]
    users = [node for node_id, node in workflow.items() if node_id != loader]
    additions: dict[str, Any] = {}
    for index, extra in enumerate(ids[1:], start=1):
        additions[extra] = {"class_type": "LoadImage", "inputs": {"image": None}}
        batch = _fresh(workflow, f"{loader}_batch_{index}", additions)
        additions[batch] = {"class_type": "ImageBatch", "inputs": {"image1": joined}}
        additions[batch]["inputs"]["image2"] = [extra, 0]
        joined = [batch, 0]
    for node in users:
        node["inputs"] = {
            name: joined if value == [loader, 0] else value
            for name, value in node.get("inputs", {}).items()
        }
    workflow.update(additions)
    return ids


def _fresh(workflow: Mapping[str, Any], base: str, more: Mapping[str, Any] = {}) -> str:
    candidate, n = base, 1
    while candidate in workflow or candidate in more:
        n += 1
        candidate = f"{base}_{n}"
    return candidate


def _seeded(builder: WorkflowBuilder, offset: int) -> WorkflowBuilder:
    """A copy with every sampler seed of the group moved on by `offset`."""
    seeded = builder.copy()
    for node_id, node in builder.view().items():
        for name in _SEED_INPUTS:
            value = (node.get("inputs") or {}).get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                seeded.set(node_id, name, (value + offset) % 2**64)
    return seeded


async def _files(result: DispatchResult, nodes: set[str]) -> Files:
    """The bytes of the result's files made by `nodes`, read on the server's loop."""
    found: Files = {}
    for file in result.files:
        if file.node_id in nodes:
            label = f"{result.server}: node {file.node_id} {file.filename}"
            found.setdefault(file.node_id, []).append((label, await file.read()))
    return found


def _outputs(
    plan: GroupPlan, results: Sequence[DispatchResult], files: Sequence[Files]
) -> list[Any]:
    """Each value leaving the group, decoded; every server's part of a fan-out, in order."""
    values = []
    for output in plan.outputs:
        made = [item for per_result in files for item in per_result.get(output.node, [])]
        if output.kind == "value":
            texts = results[0].outputs.get(output.node, {}).get("text") if results else None
            if not isinstance(texts, list) or not texts or not isinstance(texts[0], str):
                raise WorkflowError(_missing(plan, output.index, output.type))
            values.append(value_from(texts[0], output.type))
            continue
        if not made:
            raise WorkflowError(_missing(plan, output.index, output.type))
        if output.kind == "image":
            values.append(images_from(made))
        elif output.kind == "mask":
            values.append(mask_from(made))
        else:
            values.append(latents_joined([latent_from(label, data) for label, data in made]))
    return values


def _missing(plan: GroupPlan, index: int, type_: str) -> str:
    return (
        f"remote group {plan.group.label}: the peer returned no {type_} for its output "
        f"{index}; see the peer's log"
    )
