"""Pages in a real browser: Debian's headless Chromium driven by Playwright (its Python package only, pointed at
/usr/bin/chromium; .ci/run installs both). Tests skip, printing why, where either is missing."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def _chromium() -> str | None:
    for path in (os.environ.get("AUTOMOT_CHROMIUM"), *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if path and Path(path).is_file():
            return path
    return None


def _skip(reason: str) -> None:
    print(f"SKIPPED browser test: {reason}", file=sys.stderr)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    if exe is None:
        _skip("chromium not installed (apt-get install -y chromium; .ci/run does it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip("the playwright Python package is not installed (pip install -e .[dev])")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()
