"""Headless Chromium for the browser tests: Debian's chromium + chromium-driver, found once and started one way."""
from __future__ import annotations

import os
import shutil

CHROMIUM = os.environ.get("CHROMIUM_BINARY") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
MISSING = "headless Chromium not found: apt-get install chromium chromium-driver (.ci/run does this as root)"
# Without the background-networking flags Chromium keeps calling out of this machine's closed network.
ARGUMENTS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
             "--disable-background-networking")


def start_chromium(webdriver, window: str, *extra: str):
    """A Chromium driver with the page's console kept (goog:loggingPrefs); webdriver is selenium.webdriver, which the
    caller imports with pytest.importorskip."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (*ARGUMENTS, f"--window-size={window}", *extra):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
