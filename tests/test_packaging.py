"""The package as users get it: a wheel that carries its panel, and the registry's archive.

The wheel is built from a copy of the files it is made of, installed into a fresh venv
(which borrows aiohttp and rapidfuzz from this interpreter, so nothing is downloaded), and
its console script serves the panel: no source tree on the path, as after
`pip install comfyui-dispatch`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

import dispatch_core.http.standalone as standalone

ROOT = Path(__file__).resolve().parents[1]
BUILT_FROM = ("pyproject.toml", "README.md", "LICENSE", "dispatch_core", "web")
"""What the wheel is made of: the rest of the checkout must not matter to it."""
PANEL = ("standalone.html", "panel.js", "panel.css", "dispatch.js", "panel/api.js")
pytestmark = pytest.mark.timeout(180)


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    def bin(self, name: str) -> Path:
        return self.venv / ("Scripts" if os.name == "nt" else "bin") / name


def _run(
    *argv: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=150, env=env, cwd=cwd
    )
    assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
    return done


def _clean_env() -> dict[str, str]:
    """This environment without PYTHONPATH, which would put the source tree first."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in BUILT_FROM:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=junk)
        else:
            shutil.copy2(ROOT / name, source / name)
    # setuptools as installed here (no download); it needs to know SPDX licenses (>= 77)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run(*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", work / "dist", source)
    (wheel,) = (work / "dist").glob("comfyui_dispatch-*.whl")
    venv = work / "venv"
    _run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv)
    found = Installed(wheel, venv)
    python = found.bin("python")
    # --ignore-installed: this interpreter may hold an editable install of the project
    _run(*pip, "--python", python, "install", "-q", "--no-deps", "--ignore-installed", wheel)
    yield found


def test_the_wheel_holds_every_module_and_the_panel(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    modules = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "dispatch_core").rglob("*")
        if p.suffix in (".py", ".json", ".typed") and "__pycache__" not in p.parts
    }
    assert modules - names == set()  # a new subpackage must be listed in pyproject.toml
    panel = {
        "dispatch_core/web/" + p.relative_to(ROOT / "web").as_posix()
        for p in (ROOT / "web").rglob("*")
        if p.is_file()
    }
    assert panel - names == set()
    assert not [n for n in names if n.startswith(("tests/", "web/", "nodes/"))]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_the_installed_package_is_the_wheel_and_its_script_names_itself(
    installed: Installed, tmp_path: Path
) -> None:
    where = _run(
        installed.bin("python"),
        "-c",
        "import dispatch_core.http.standalone as s; print(s.__file__); print(s.panel_folder())",
        env=_clean_env(),
        cwd=tmp_path,
    ).stdout.split()
    assert all(Path(p).is_relative_to(installed.venv) for p in where), where
    assert where[1].endswith(os.path.join("dispatch_core", "web"))
    usage = _run(installed.bin("comfyui-dispatch"), "--help", env=_clean_env(), cwd=tmp_path)
    assert usage.stdout.startswith("usage: comfyui-dispatch")
    assert "python -m" not in usage.stdout


async def test_the_installed_script_serves_the_whole_panel(
    installed: Installed, tmp_path: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        installed.bin("comfyui-dispatch"),
        *["serve", "--config", str(tmp_path / "config.json"), "--port", "0"],
        *["--status-every", "0"],
        stderr=asyncio.subprocess.PIPE,
        env=_clean_env(),
        cwd=tmp_path,
    )
    assert process.stderr is not None
    try:
        line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
        assert "panel on http://127.0.0.1:" in line, line
        panel = line.split(" on ", 1)[1].split()[0]
        async with aiohttp.ClientSession() as session:
            async with session.get(panel) as response:
                assert response.status == 200
                assert "createPanel" in await response.text()
            for name in PANEL:
                async with session.get(panel + name) as response:
                    assert response.status == 200, name
                    assert len(await response.read()) > 100, name
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_serve_refuses_to_announce_a_panel_it_cannot_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    places = (tmp_path / "installed" / "web", tmp_path / "checkout" / "web")
    monkeypatch.setattr(standalone, "_PANEL_PLACES", places)
    announced: list[str] = []
    with pytest.raises(SystemExit) as refused:
        await standalone.serve(config=tmp_path / "config.json", port=0, ready=announced.append)
    assert announced == []
    message = str(refused.value)
    assert all(str(place) in message for place in places), message
    assert not (tmp_path / "config.json").exists()
