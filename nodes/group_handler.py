"""Remote groups at queue time: ComfyUI's prompt handler that cuts them out of the prompt.

ComfyUI passes every `POST /prompt` body through its prompt handlers before validating it
(`PromptServer.add_on_prompt_handler`). The frontend sends the UI workflow beside the API
prompt (`extra_data.extra_pnginfo.workflow`); its groups say which nodes run where. This
handler puts one RemoteDispatchGroup node in each remote group's place.

ComfyUI logs a handler's exception and queues the prompt as it was, which would run a
remote group here. So the handler never raises: a graph it cannot cut (or a failure of its
own) becomes a prompt that fails validation with the reason, under the node to fix.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ..dispatch_core.errors import GroupError
from ..dispatch_core.groups import (
    Rewrite,
    refusal_node,
    remote_groups,
    rewrite_prompt,
)
from .remote_group import MAX_INPUTS, MAX_OUTPUTS

_log = logging.getLogger("ComfyUI-Dispatch")
_REFUSED_ID = "remote_groups"
"""The refusal's node id when no node of the graph is to blame."""


def on_prompt(json_data: dict[str, Any]) -> dict[str, Any]:
    """ComfyUI's prompt handler: the body with its remote groups cut out; never raises."""
    return cut_remote_groups(json_data, local_object_info)


def cut_remote_groups(
    json_data: dict[str, Any], object_info: Callable[[], Mapping[str, Any]]
) -> dict[str, Any]:
    """The body of `POST /prompt` with each remote group replaced; never raises.

    `object_info` gives what each node class outputs, asked only when there are groups.
    """
    try:
        return _rewritten(json_data, object_info)
    except GroupError as error:
        return _refused(json_data, str(error), error.node)
    except Exception as error:  # a bug of ours must not run the groups here instead
        _log.exception("ComfyUI-Dispatch: could not cut the remote groups out of a prompt")
        return _refused(json_data, f"remote groups could not be prepared: {error}", None)


def _rewritten(
    json_data: dict[str, Any], object_info: Callable[[], Mapping[str, Any]]
) -> dict[str, Any]:
    prompt = json_data.get("prompt")
    workflow = _ui_workflow(json_data)
    if not isinstance(prompt, dict) or workflow is None:
        return json_data  # a script's bare API prompt: nothing says where groups are
    groups = remote_groups(workflow)
    if not groups:
        return json_data
    rewrite = rewrite_prompt(prompt, groups, object_info=object_info())
    _check_sizes(rewrite)
    return {**json_data, "prompt": rewrite.prompt}


def _ui_workflow(json_data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    extra = json_data.get("extra_data")
    pnginfo = extra.get("extra_pnginfo") if isinstance(extra, Mapping) else None
    workflow = pnginfo.get("workflow") if isinstance(pnginfo, Mapping) else None
    return workflow if isinstance(workflow, Mapping) else None


def _check_sizes(rewrite: Rewrite) -> None:
    """The replacement node has a fixed number of sockets; a larger cut is refused."""
    for plan in rewrite.plans:
        for what, count, most in (
            ("entering", len(plan.inputs), MAX_INPUTS),
            ("leaving", len(plan.outputs), MAX_OUTPUTS),
        ):
            if count > most:
                raise GroupError(
                    f"remote group {plan.group.label} has {count} values {what} it, and at "
                    f"most {most} can; move some of the nodes at its edge into it or out",
                    group=plan.group.key,
                )


def _refused(json_data: dict[str, Any], message: str, node: str | None) -> dict[str, Any]:
    return {**json_data, "prompt": {node or _REFUSED_ID: refusal_node(message)}}


def local_object_info() -> dict[str, Any]:
    """What each local node class outputs, in `/object_info`'s shape: all a cut needs.

    Read from ComfyUI's own `nodes` module (loaded by ComfyUI before any prompt), without
    building the whole `/object_info`, which asks every node for its input lists.
    """
    comfy_nodes = sys.modules.get("nodes")
    classes = getattr(comfy_nodes, "NODE_CLASS_MAPPINGS", {})
    info: dict[str, Any] = {}
    for name, cls in classes.items():
        try:
            outputs = list(getattr(cls, "RETURN_TYPES", ()))
        except Exception:  # a custom node's property may raise: its outputs stay unknown
            continue
        info[name] = {"output": outputs}
    return info
