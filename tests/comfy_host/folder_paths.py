"""Stand-in for ComfyUI's `folder_paths`: the user directory, and its system users.

`get_system_user_directory` exists in ComfyUI after 0.3.64 only; a test deletes it to
stand for older versions.
"""

import os

user_directory = "."


def get_user_directory() -> str:
    return user_directory


def get_system_user_directory(name: str = "system") -> str:
    """`<user dir>/__<name>`, which ComfyUI's user-data routes never serve."""
    if not name or name.startswith("_") or not name.replace("_", "").isalnum():
        raise ValueError(f"Invalid system user name: {name!r}")
    return os.path.join(get_user_directory(), "__" + name)
