"""Stand-in for ComfyUI's `comfy_extras` package (see `nodes_audio`)."""
