"""A real headless Chromium (the system's ``chromium`` package) driven by Playwright.

The tests skip when no browser is installed on a developer's machine and fail under
``CI=true`` (``scripts/test`` installs the browser there). Screenshots go to an artifacts
directory printed at the start of the run (``BATCHYARD_TEST_ARTIFACTS`` to choose it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import emulator_factory, pg_database  # noqa: F401  (fixtures)

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"]


def chromium_path() -> str | None:
    """The system Chromium, if installed."""
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if os.path.exists(candidate):
            return candidate
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots and downloads of this run go."""
    path = Path(os.environ.get("BATCHYARD_TEST_ARTIFACTS")
                or tempfile.mkdtemp(prefix="batchyard-browser-"))
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser test artifacts: {path}")
    return path


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium for one test module. Playwright's sync API keeps an asyncio loop
    running in the main thread while it is open, so it must be closed before other modules'
    tests call ``asyncio.run``."""
    executable = chromium_path()
    if executable is None:
        message = "no chromium installed (apt-get install -y chromium)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{message}; CI=true: browser tests must not be skipped")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=BROWSER_ARGS)
        yield browser
        browser.close()
