"""The panel in headless Chromium: runs tests/browser/ (Node's test runner, playwright-core).

Needs Node.js, Debian's chromium and `npm ci --prefix tests/browser`; `.ci/run` installs
them. Elsewhere the test is skipped, saying what is missing; in CI it fails instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BROWSER_TESTS = ROOT / "tests" / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.mark.timeout(300)
def test_panel_in_a_real_browser() -> None:
    needs = {
        "node": shutil.which("node") is not None,
        f"chromium at {CHROMIUM} (apt-get install chromium)": Path(CHROMIUM).exists(),
        "playwright-core (npm ci --prefix tests/browser)": (
            BROWSER_TESTS / "node_modules" / "playwright-core"
        ).is_dir(),
    }
    missing = [what for what, present in needs.items() if not present]
    if missing:
        message = "the browser tests need " + ", ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    screenshots = ROOT / "test-output" / "browser"
    done = subprocess.run(
        ["node", "--test", "--test-reporter=spec", str(BROWSER_TESTS)],
        cwd=ROOT,
        env=os.environ | {"PYTHON": sys.executable, "SCREENSHOTS": str(screenshots)},
        capture_output=True,
        text=True,
        timeout=280,
    )
    screenshots.mkdir(parents=True, exist_ok=True)
    (screenshots / "node-test.log").write_text(done.stdout + done.stderr)  # for a CI failure
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-4000:]
