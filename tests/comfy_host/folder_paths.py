"""Stand-in for ComfyUI's `folder_paths`: the base, user, output and temp directories, and
its system users.

`base_path` is, as in ComfyUI, this file's folder unless `--base-directory` gave another
(tests set it). `get_system_user_directory` exists in ComfyUI after 0.3.64 only; a test
deletes it to stand for older versions.
"""

import os

base_path = os.path.dirname(os.path.realpath(__file__))
user_directory = "."
output_directory = "."
temp_directory = "."


def get_user_directory() -> str:
    return user_directory


def get_output_directory() -> str:
    return output_directory


def get_temp_directory() -> str:
    return temp_directory


def get_system_user_directory(name: str = "system") -> str:
    """`<user dir>/__<name>`, which ComfyUI's user-data routes never serve."""
    if not name or name.startswith("_") or not name.replace("_", "").isalnum():
        raise ValueError(f"Invalid system user name: {name!r}")
    return os.path.join(get_user_directory(), "__" + name)
