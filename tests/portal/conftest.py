"""The portal in a real browser: Debian's chromium through chromedriver, driven by selenium,
against the shared end-to-end platform (`tests/conftest.py`). Screenshots of every page go to
`$PORTAL_SCREENSHOTS` (default `$TMPDIR/portal-screenshots`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    where = Path(
        os.environ.get("PORTAL_SCREENSHOTS") or Path(tempfile.gettempdir()) / "portal-screenshots"
    )
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    return where


@pytest.fixture
def browser_factory(tmp_path: Path) -> Iterator[Callable[..., webdriver.Chrome]]:
    """New browsers (each its own profile, so its own cookies); all quit at the end.
    `start(logs=True)` records the browser's console and network log (`driver.get_log`)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("chromium and chromium-driver are missing: bash scripts/install-test-peers.sh")
    started: list[webdriver.Chrome] = []

    def start(logs: bool = False) -> webdriver.Chrome:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in FLAGS:
            options.add_argument(flag)
        profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument("--lang=en-US")
        if logs:
            options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        driver = webdriver.Chrome(
            service=Service(executable_path=str(CHROMEDRIVER)), options=options
        )
        driver.set_page_load_timeout(60)
        started.append(driver)
        return driver

    try:
        yield start
    finally:
        for driver in started:
            driver.quit()
