"""The ComfyUI side: the Remote Dispatch nodes, and the routes registered on ComfyUI's server.

Thin by design: the nodes turn ComfyUI's inputs into a `DispatchService` call and the
result into tensors; everything else is `dispatch_core`.
"""

from .host import install
from .remote_dispatch import RemoteDispatch, RemoteDispatchFanOut

NODE_CLASS_MAPPINGS = {
    "RemoteDispatch": RemoteDispatch,
    "RemoteDispatchFanOut": RemoteDispatchFanOut,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "RemoteDispatch": "Remote Dispatch",
    "RemoteDispatchFanOut": "Remote Dispatch (fan-out)",
}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "install"]
