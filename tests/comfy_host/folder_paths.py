"""Stand-in for ComfyUI's `folder_paths`: only the user directory."""

user_directory = "."


def get_user_directory() -> str:
    return user_directory
