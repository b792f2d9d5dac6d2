"""Headless Debian Chromium driven by its own chromedriver (Selenium), for the browser tests
and the README screenshot. Never downloads a browser or a driver: both come from apt.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

INSTALL_HINT = "apt-get install -y chromium chromium-driver"
# Flags that work as root on a closed network (no sandbox, no background fetches).
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1100,700",
]


def chromium_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver), from RELAY_TEST_CHROMIUM / RELAY_TEST_CHROMEDRIVER or PATH."""
    browser = os.environ.get("RELAY_TEST_CHROMIUM") or shutil.which("chromium")
    driver = os.environ.get("RELAY_TEST_CHROMEDRIVER") or shutil.which("chromedriver")
    if browser and driver and os.access(browser, os.X_OK) and os.access(driver, os.X_OK):
        return browser, driver
    return None


def start_chromium(browser: str, driver: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='relay-chromium-')}")
    # Keep the page's console, to show it when a test fails.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


def wait_for(
    driver: webdriver.Chrome, condition: Callable[[webdriver.Chrome], Any], what: str, timeout=30
) -> Any:
    """Poll a DOM condition until it holds, or fail after `timeout` seconds saying what."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)
    except TimeoutException as error:
        state = driver.execute_script("return JSON.stringify(window.relayDemo ?? null)")
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}; page: {state}"
        ) from error


def status(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.ID, "status").get_attribute("data-status") or ""


def event_ids(driver: webdriver.Chrome) -> list[str]:
    """The event ids of the page's message nodes, in the order the page shows them."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#messages li[data-event-id]')]"
        ".map(node => node.dataset.eventId)"
    )


def demo_state(driver: webdriver.Chrome) -> dict:
    return driver.execute_script(
        "const d = window.relayDemo;"
        "return {statuses: d.statuses, updates: d.updates, resets: d.resets, errors: d.errors}"
    )
