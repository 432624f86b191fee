"""Remote groups: run part of a graph on another ComfyUI, cut out of the prompt at queue time.

A group of the UI workflow whose title ends with a target marker (`Upscale [server: gpu-b]`,
`[route: upscale]`, `[fan-out: generate]`) runs elsewhere. Two pure functions, no ComfyUI:

    groups = remote_groups(extra_pnginfo["workflow"])      # which prompt ids, which target
    rewrite = rewrite_prompt(prompt, groups, object_info=object_info)
    rewrite.prompt        # the local prompt: one RemoteDispatchGroup node per group
    rewrite.plans[0]      # its sub-workflow for the peer, and its boundary

Both raise GroupError (a WorkflowError) for what cannot be cut, with one line per problem
saying which node to move. Only images, masks (as PNG), latents (as `.latent` files) and
plain values (inlined) cross a group's edge.
"""

from ._membership import NODE_TITLE_HEIGHT, remote_groups
from ._model import (
    BoundaryInput,
    BoundaryKind,
    BoundaryOutput,
    GroupPlan,
    RemoteGroup,
    Rewrite,
    Source,
    Target,
    TargetKind,
    parse_title,
    titled,
)
from ._plan_json import (
    REPLACEMENT_CLASS,
    plan_from_json,
    plan_to_json,
    refusal_node,
    refusal_of,
    replacement_node,
)
from ._rewrite import rewrite_prompt

__all__ = [
    "NODE_TITLE_HEIGHT",
    "REPLACEMENT_CLASS",
    "BoundaryInput",
    "BoundaryKind",
    "BoundaryOutput",
    "GroupPlan",
    "RemoteGroup",
    "Rewrite",
    "Source",
    "Target",
    "TargetKind",
    "parse_title",
    "plan_from_json",
    "plan_to_json",
    "refusal_node",
    "refusal_of",
    "remote_groups",
    "replacement_node",
    "rewrite_prompt",
    "titled",
]
