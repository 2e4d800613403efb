"""A real headless Chromium driven by Selenium, against a real `notrace serve` on loopback.

Runs in the test process. The browser is Debian's `chromium` with its `chromium-driver`
(/usr/bin/chromedriver), both installed by .ci/provision-browser; Selenium is given the
driver's path and SE_OFFLINE, so Selenium Manager never looks for (or downloads) a browser
or a driver. Where no browser can start, the tests are skipped with the reason; with
NOTRACE_REQUIRE_BROWSER=1 (CI: .ci/run) they fail instead.

One server and one browser per test module (the browser quits before other modules run,
so nothing of it runs during tests/service's zero-trace checks); its profile and its
temporary files (TMPDIR) are in pytest's tmp dir, never /tmp. Each test gets a fresh page
(`page`) with its own download directory under pytest's tmp_path.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.required import Requirement
from tests.service.server import Server

BROWSER = Requirement("NOTRACE_REQUIRE_BROWSER",
                      "browser tests need chromium, chromium-driver and selenium",
                      "run .ci/provision-browser and install '.[test]'")
CHROMIUM = os.environ.get("NOTRACE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("NOTRACE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
#: How long a test waits for something to appear in the page (a result, a problem).
WAIT_S = 30


@pytest.fixture(scope="module")
def web_server():
    server = Server().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    """This module's headless Chromium (no network use: only the loopback server)."""
    from selenium import webdriver   # importable: test_page.py checked
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            BROWSER.unavailable(f"{path} is missing")
    os.environ["SE_OFFLINE"] = "true"   # never let Selenium Manager reach out
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --no-sandbox: Chromium's own sandbox refuses to run as root (CI runs as root).
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1000,1200",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.prompt_for_download": False,
                                              "safebrowsing.enabled": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    scratch = tmp_path_factory.mktemp("chromium-tmp")
    service = Service(executable_path=CHROMEDRIVER, log_output=os.devnull,
                      env={**os.environ, "TMPDIR": str(scratch)})
    try:
        browser = webdriver.Chrome(service=service, options=options)
    except WebDriverException as exc:
        BROWSER.unavailable(f"chromium did not start ({exc.msg or exc})")
    browser.set_page_load_timeout(WAIT_S)
    browser.set_script_timeout(WAIT_S)
    yield browser
    browser.quit()


@pytest.fixture
def downloads(tmp_path) -> Path:
    path = tmp_path / "downloads"
    path.mkdir()
    return path


@pytest.fixture
def page(driver, web_server, downloads):
    """The page freshly loaded, downloads going to this test's own directory."""
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads),
                            "eventsEnabled": False})
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    driver.get(f"http://127.0.0.1:{web_server.port}/")
    driver.get_log("browser")  # start each test with an empty console log
    return driver
