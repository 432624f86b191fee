"""The ComfyUI side: the Remote Dispatch nodes, and the routes registered on ComfyUI's server.

Thin by design: the nodes turn ComfyUI's inputs into a `DispatchService` call and the
result into tensors; everything else is `dispatch_core`.
"""

from . import host
from .group_handler import on_prompt
from .remote_dispatch import RemoteDispatch, RemoteDispatchFanOut
from .remote_group import RemoteDispatchGroup

NODE_CLASS_MAPPINGS = {
    "RemoteDispatch": RemoteDispatch,
    "RemoteDispatchFanOut": RemoteDispatchFanOut,
    "RemoteDispatchGroup": RemoteDispatchGroup,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "RemoteDispatch": "Remote Dispatch",
    "RemoteDispatchFanOut": "Remote Dispatch (fan-out)",
    "RemoteDispatchGroup": "Remote Dispatch (group)",
}


def install() -> None:
    """Hook into ComfyUI's server: the routes, and the cut of remote groups at queue time."""
    host.install(prompt_handlers=[on_prompt])


__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "install"]
