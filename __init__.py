"""ComfyUI-Dispatch, as ComfyUI loads it from `custom_nodes/`.

Classic node mappings (not the V3 `comfy_entrypoint`): see the README's "Why classic nodes".
Importing this registers the `/dispatch/*` routes on ComfyUI's server; it reads no peer and
never raises over a bad config, which the node and the panel report instead.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, install

WEB_DIRECTORY = "./web"

install()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
