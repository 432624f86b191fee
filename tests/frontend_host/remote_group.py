"""Remote groups on the page's ComfyUI, as ComfyUI runs them with this package, torch aside.

The prompt handler is the package's own (`nodes.group_handler.cut_remote_groups`; the
package is loaded by `our_nodes` as ComfyUI loads a custom node). The node that takes each
group's place is played by a FakePeer custom node over the fake's images: it runs the
group's sub-workflow on the group's server through the page's DispatchService. The real
node, which turns tensors into PNGs and back, runs in `tests/test_group_node.py`.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

from our_nodes import node_info

from dispatch_core import JobSpec, WorkflowBuilder
from dispatch_core.errors import InputError
from dispatch_core.groups import GroupPlan, plan_from_json, refusal_of
from dispatch_core.service import DispatchService
from dispatch_core.testing import CustomNode, FakePeer, PromptHandler
from dispatch_core.testing._png import Image, encode_png, read_png


def prompt_handler(package: ModuleType, host: FakePeer) -> PromptHandler:
    cut = package.nodes.group_handler.cut_remote_groups
    return functools.partial(cut, object_info=host.object_info)


def group_node(package: ModuleType, service: DispatchService) -> CustomNode:
    info = node_info(package, "RemoteDispatchGroup")

    def validate(group: str) -> bool | str:
        refused = refusal_of(group)
        if refused is not None:
            return refused
        try:
            target = plan_from_json(group).group.target
            service.config.servers_for(target.route, server=target.server)
        except InputError as error:
            return f"remote group: {error}"
        return True

    async def run(inputs: dict[str, Any]) -> tuple[tuple[Any, ...], None]:
        plan = plan_from_json(inputs["group"])
        result = await service.jobs.run(_spec(plan, inputs))
        outputs = []
        for output in plan.outputs:
            files = [f for f in result.files if f.node_id == output.node]
            outputs.append([read_png(await f.read())[0] for f in files])
        return tuple(outputs), None

    return CustomNode(info, run, validate, validates=("group",))


def _spec(plan: GroupPlan, inputs: dict[str, Any]) -> JobSpec:
    """One job on the group's server or route: images and values filled in."""
    builder = WorkflowBuilder(plan.workflow)
    for boundary in plan.inputs:
        value = inputs[boundary.name]
        if boundary.kind == "image":
            first: Image = value[0]
            builder.set_image(boundary.fills[0][0], encode_png(first))
        else:
            for node, name in boundary.fills:
                builder.set(node, name, value)
    target = plan.group.target
    return JobSpec(target.route, workflow=builder, server=target.server)
