"""Stand-in for ComfyUI's `comfy.cli_args`: the parsed flags the package reads, as
ComfyUI 0.3.64 parses them with none given (tests set the ones they need)."""

import argparse

args = argparse.Namespace(
    listen="127.0.0.1",
    base_directory=None,
    extra_model_paths_config=None,  # `nargs="+", action="append"`: a list of lists
    windows_standalone_build=False,
    preview_size=512,
)
