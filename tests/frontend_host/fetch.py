"""Download ComfyUI's frontend wheels the browser tests load, and unpack them.

    python tests/frontend_host/fetch.py            # every version in versions.json
    python tests/frontend_host/fetch.py 1.60.0     # another one, to try it

Each `comfyui-frontend-package` wheel comes from the package index through pip and is
unpacked into `test-output/frontend/<version>/` (gitignored); a version already there is
left alone. `.ci/run` runs this before the tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "test-output" / "frontend"
VERSIONS: list[str] = json.loads((Path(__file__).with_name("versions.json")).read_text())
"""The versions tested: the one ComfyUI 0.3.64 pins, and the newest one tried."""
_DONE = ".unpacked"


def static_folder(version: str) -> Path:
    """Where the unpacked frontend's files are: what ComfyUI serves at `/`."""
    return CACHE / version / "comfyui_frontend_package" / "static"


def present(version: str) -> bool:
    return (CACHE / version / _DONE).is_file() and (static_folder(version) / "index.html").is_file()


def fetch(version: str) -> Path:
    """Download and unpack one version, unless it is there already; its static folder."""
    if present(version):
        return static_folder(version)
    target = CACHE / version
    with tempfile.TemporaryDirectory() as download:
        subprocess.run(
            [
                sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                f"comfyui-frontend-package=={version}", "-d", download,
            ],
            check=True,
        )  # fmt: skip
        (wheel,) = Path(download).glob("comfyui_frontend_package-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(target)
    (target / _DONE).write_text(wheel.name + "\n")
    return static_folder(version)


def main(argv: list[str]) -> None:
    for version in argv or VERSIONS:
        print(f"comfyui-frontend-package {version}: {fetch(version)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
