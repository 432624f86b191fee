"""The panel in headless Chromium: runs tests/browser/ (Node's test runner, playwright-core).

`panel.test.mjs`: the panel against the standalone server and fake peers.
`frontend.test.mjs`: the Dispatch tab in ComfyUI's real frontend, one test per version of
`tests/frontend_host/versions.json`, served by `tests/frontend_host/serve.py`.
`gateway_page.test.mjs`: ComfyUI's frontend served by the gateway itself over two fake
peers (`tests/frontend_host/gateway.py`), a graph queued from the page; the newest version
only here, to keep the suite short (alone, the .mjs runs every version).
`node.test.mjs`: the Remote Dispatch node there: a template's parameters as widgets.

Needs Node.js, Debian's chromium, `npm ci --prefix tests/browser`, and for the frontend the
wheels that `python tests/frontend_host/fetch.py` downloads; `.ci/run` installs them all.
Elsewhere a test is skipped, saying what is missing; in CI it fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BROWSER_TESTS = ROOT / "tests" / "browser"
FRONTEND_HOST = ROOT / "tests" / "frontend_host"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "test-output" / "browser"
FRONTENDS = json.loads((FRONTEND_HOST / "versions.json").read_text())


def _require(needs: dict[str, bool]) -> None:
    missing = [what for what, present in needs.items() if not present]
    if missing:
        message = "the browser tests need " + ", ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _browser() -> dict[str, bool]:
    return {
        "node": shutil.which("node") is not None,
        f"chromium at {CHROMIUM} (apt-get install chromium)": Path(CHROMIUM).exists(),
        "playwright-core (npm ci --prefix tests/browser)": (
            BROWSER_TESTS / "node_modules" / "playwright-core"
        ).is_dir(),
    }


def _run(test_file: str, log: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        ["node", "--test", "--test-reporter=spec", str(BROWSER_TESTS / test_file)],
        cwd=ROOT,
        env=os.environ | {"PYTHON": sys.executable, "SCREENSHOTS": str(SCREENSHOTS)} | (env or {}),
        capture_output=True,
        text=True,
        timeout=400,
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / log).write_text(done.stdout + done.stderr)  # for a CI failure
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-4000:]
    assert "ℹ skipped 0" in done.stdout, done.stdout[-4000:]


def _frontend(version: str) -> dict[str, bool]:
    """What the tests of ComfyUI's real frontend need beyond a browser: its wheel unpacked."""
    static = ROOT / "test-output" / "frontend" / version / "comfyui_frontend_package" / "static"
    fetch = f"comfyui-frontend-package {version} (python tests/frontend_host/fetch.py)"
    return {fetch: (static / "index.html").is_file()}


@pytest.mark.timeout(300)
def test_panel_in_a_real_browser() -> None:
    _require(_browser())
    _run("panel.test.mjs", "node-test.log")


@pytest.mark.timeout(840)  # two files in a row, each bounded by _run
@pytest.mark.parametrize("version", FRONTENDS)
def test_panel_in_comfyui_frontend(version: str) -> None:
    _require(_browser() | _frontend(version))
    _run("frontend.test.mjs", f"frontend-{version}.log", {"FRONTENDS": version})
    _run("node.test.mjs", f"node-{version}.log", {"FRONTENDS": version})


@pytest.mark.timeout(180)
def test_comfyui_page_from_the_gateway() -> None:
    version = FRONTENDS[-1]
    _require(_browser() | _frontend(version))
    _run("gateway_page.test.mjs", f"gateway-page-{version}.log", {"FRONTENDS": version})
