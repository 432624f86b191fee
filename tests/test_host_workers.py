"""Workers started inside ComfyUI run the ComfyUI that hosts them, as it was started.

The stand-in host modules (`tests/comfy_host/`) are copied into a Desktop-style layout: the
ComfyUI Desktop app runs ComfyUI from its resources folder, with `--base-directory` (and an
extra model paths config) pointing at the user's own folder, so `folder_paths.base_path`
has no `main.py`. The package is loaded the way ComfyUI's `load_custom_node` loads it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
from test_workers import free_port

from dispatch_core.service._workers import WorkerSpec

ROOT = Path(__file__).resolve().parent.parent
HOST = Path(__file__).resolve().parent / "comfy_host"
PACKAGE = "ComfyUI-Dispatch"
MAIN = """\
# ComfyUI's main.py, standing in: says how it was started
import os, sys
print("cwd", os.getcwd())
print("argv", sys.argv[1:])
"""


@dataclass
class Desktop:
    install: Path
    """`<resources>/ComfyUI`: main.py, folder_paths.py, comfy/."""
    data: Path
    """The user's folder: `--base-directory`."""
    extra: Path
    """The app's extra model paths config."""


def _load_package() -> ModuleType:
    spec = importlib.util.spec_from_file_location(PACKAGE, ROOT / "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    spec.loader.exec_module(module)
    return module


def _forget_host_modules() -> None:
    for name in [n for n in sys.modules if n.split(".")[0] in (PACKAGE, "server", "comfy")]:
        del sys.modules[name]
    sys.modules.pop("folder_paths", None)


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[Desktop]:
    install = tmp_path / "Programs" / "ComfyUI" / "resources" / "ComfyUI"
    shutil.copytree(HOST, install, ignore=shutil.ignore_patterns("__pycache__"))
    (install / "main.py").write_text(MAIN)
    data = tmp_path / "Documents" / "ComfyUI"
    (data / "user").mkdir(parents=True)
    (data / "models" / "checkpoints").mkdir(parents=True)
    extra = tmp_path / "AppData" / "extra_models_config.yaml"
    extra.parent.mkdir()
    extra.write_text(f"comfyui:\n  base_path: {data}\n  checkpoints: models/checkpoints/\n")
    sys.path.insert(0, str(install))
    try:
        import comfy.cli_args
        import folder_paths

        # as ComfyUI sets them from `main.py --base-directory DATA --extra-model-paths-config X`
        folder_paths.base_path = str(data)
        folder_paths.user_directory = str(data / "user")
        comfy.cli_args.args.base_directory = str(data)
        comfy.cli_args.args.extra_model_paths_config = [[str(extra)]]
        yield Desktop(install, data, extra)
    finally:
        sys.path.remove(str(install))
        _forget_host_modules()


def test_the_desktop_layout_has_no_main_py_in_its_base_path(desktop: Desktop) -> None:
    import folder_paths

    assert not (Path(folder_paths.base_path) / "main.py").exists()


async def test_workers_run_the_hosts_comfyui_with_its_base_and_model_paths(
    desktop: Desktop,
) -> None:
    package = _load_package()
    service = package.nodes.host.service()
    try:
        manager = service.fleet.manager
        assert manager.comfyui == desktop.install
        argv, cwd = manager.command(WorkerSpec("gpu0", 8200, args=("--lowvram",)))
        assert cwd == desktop.install
        assert argv[argv.index("main.py") + 1 :][:4] == [
            "--base-directory",
            str(desktop.data),
            "--extra-model-paths-config",
            str(desktop.extra),
        ]
        # the worker's own folders come after, and win over the base directory's
        home = str(service.folder / "workers" / "gpu0")
        assert argv.index("--user-directory") > argv.index("--base-directory")
        assert argv[argv.index("--user-directory") + 1] == str(Path(home) / "user")
        assert argv[-1] == "--lowvram"
    finally:
        await service.close()


async def test_the_hosts_flags_reach_a_started_workers_command_line(desktop: Desktop) -> None:
    import comfy.cli_args

    comfy.cli_args.args.windows_standalone_build = True
    package = _load_package()
    service = package.nodes.host.service()
    try:
        worker = await service.fleet.start("gpu0", {"port": free_port(), "gpu": "0"})
        manager = service.fleet.manager
        await asyncio.wait_for(manager.workers["gpu0"].process.wait(), 20)
        log = manager.log("gpu0")
        assert f"cwd {desktop.install}" in log
        started = next(line for line in log.splitlines() if line.startswith("argv"))
        for part in (
            f"'--base-directory', '{desktop.data}'",
            f"'--extra-model-paths-config', '{desktop.extra}'",
            "'--windows-standalone-build', '--disable-auto-launch'",  # no browser per worker
            f"'--port', '{worker['port']}'",
        ):
            assert part in started
    finally:
        await service.close()


def test_relative_paths_are_made_absolute_for_a_worker_elsewhere(
    desktop: Desktop, monkeypatch: pytest.MonkeyPatch
) -> None:
    import comfy.cli_args

    monkeypatch.chdir(desktop.extra.parent)
    comfy.cli_args.args.extra_model_paths_config = [["a.yaml", "b.yaml"], ["c.yaml"]]
    host = _load_package().nodes.host
    flags = host.worker_flags()
    folder = desktop.extra.parent
    assert flags[2:] == (
        "--extra-model-paths-config",
        str(folder / "a.yaml"),
        str(folder / "b.yaml"),
        "--extra-model-paths-config",
        str(folder / "c.yaml"),
    )


def test_without_the_hosts_flags_module_workers_get_none(
    desktop: Desktop, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = _load_package().nodes.host
    monkeypatch.setitem(sys.modules, "comfy.cli_args", None)  # an import of it now fails
    assert host.worker_flags() == ()


@pytest.mark.parametrize(
    "layout",
    ["checkout", "desktop", "main only", "none"],
)
def test_the_comfyui_folder_is_where_main_py_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    """`folder_paths.py`, then `comfy/cli_args.py`, then the script started, beside main.py."""
    host = _load_package().nodes.host
    try:
        checkout = tmp_path / "ComfyUI"
        (checkout / "comfy").mkdir(parents=True)
        elsewhere = tmp_path / "launcher"
        elsewhere.mkdir()
        if layout != "none":
            (checkout / "main.py").write_text("")
        modules = {
            "folder_paths": checkout / "folder_paths.py",
            "comfy.cli_args": checkout / "comfy" / "cli_args.py",
            "__main__": checkout / "main.py",
        }
        if layout == "main only":  # modules found elsewhere, as a launcher might load them
            modules["folder_paths"] = elsewhere / "folder_paths.py"
            modules["comfy.cli_args"] = elsewhere / "comfy" / "cli_args.py"
        if layout == "desktop":
            modules["__main__"] = elsewhere / "run.py"
        for name, path in modules.items():
            monkeypatch.setitem(sys.modules, name, SimpleNamespace(__file__=str(path)))
        expected = None if layout == "none" else checkout
        assert host.comfyui_folder() == expected
    finally:
        monkeypatch.undo()
        _forget_host_modules()
