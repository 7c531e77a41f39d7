"""The web UI's KV tab and key browser, in a real headless Chromium against a real Locust.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium``
package (the test extra). Without them the test skips, except when the
environment variable CI is set: there it fails, so CI cannot pass without it.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .plugin_helpers import describe, finish, free_port, requires_disk, start_locust

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT = 30.0
"""Seconds the browser may take to show something; generous for a loaded 2-core machine."""


def _require_browser() -> None:
    missing = []
    if CHROMIUM is None:
        missing.append("chromium")
    if CHROMEDRIVER is None:
        missing.append("chromedriver (Debian package chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[test]')")
    if missing:
        reason = "headless browser test needs " + ", ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set, so this is an error, not a skip)")
        pytest.skip(reason)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_until_serving(url: str, process) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("locust exited before serving its web UI:\n" + describe(*finish([process])))
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{url} did not answer")


def _check_tab_and_browser(driver, base: str, backend: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, WAIT)

    # The KV tab of Locust's own (React) UI.
    driver.get(base + "/")
    wait.until(until.element_to_be_clickable((By.XPATH, "//button[@role='tab'][normalize-space()='KV']"))).click()
    # The titles as rendered (Locust upper-cases tabs with CSS; a µ would become a Greek capital Mu).
    titles = [tab.text for tab in driver.find_elements(By.XPATH, "//button[@role='tab']")]
    assert "KV TIMINGS (MICROSECONDS)" in [t.upper() for t in titles], titles
    assert not any("\u039c" in t for t in titles), titles

    def row(field: str) -> str:
        cells = driver.find_elements(By.XPATH, f"//tr[td[1][normalize-space()='{field}']]/td[2]")
        return cells[0].text if cells else ""

    wait.until(lambda _: row("Keys") == "121")
    assert row("Backend") == backend
    assert row("Serialization") == "json"
    assert row("Key browser") == base + "/kv"

    # The key browser, linked from the Download Data tab.
    driver.find_element(By.XPATH, "//button[@role='tab'][normalize-space()='Download Data']").click()
    link = wait.until(until.element_to_be_clickable((By.PARTIAL_LINK_TEXT, "KV store browser")))
    link.click()
    wait.until(lambda d: d.find_element(By.ID, "keys").text == "121")
    assert driver.find_element(By.ID, "backend").text == backend

    driver.find_element(By.ID, "lookup-key").send_keys("user:0042")
    driver.find_element(By.ID, "lookup").click()
    wait.until(lambda d: d.find_elements(By.ID, "lookup-value") and d.find_element(By.ID, "lookup-value").text)
    assert driver.find_element(By.ID, "lookup-value").text == '{"id":42}'

    driver.find_element(By.ID, "scan-prefix").send_keys("user:")
    driver.find_element(By.ID, "scan").click()
    seen: list[str] = []
    for page, expected in enumerate((50, 50, 20), start=1):
        wait.until(lambda d, p=page: d.find_element(By.ID, "scan-status").text.startswith(f"page {p},"))
        keys = [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, "#scan-rows td.key")]
        assert len(keys) == expected
        seen += keys
        if page < 3:
            driver.find_element(By.ID, "next-page").click()
    assert seen == [f"user:{i:04d}" for i in range(1, 121)]  # every key once, in order
    assert not driver.find_element(By.ID, "next-page").is_enabled()
    assert driver.find_element(By.ID, "scan-status").text.endswith("(end)")
    # The page's URL now names the last lookup and scan.
    assert "key=user%3A0042" in driver.current_url and "prefix=user%3A" in driver.current_url

    # A link with ?prefix= and ?key= opens the browser on them.
    driver.get(base + "/kv?prefix=user%3A011&key=user%3A0007")
    wait.until(lambda d: d.find_elements(By.ID, "lookup-value") and d.find_element(By.ID, "lookup-value").text)
    assert driver.find_element(By.ID, "lookup-value").text == '{"id":7}'
    assert driver.find_element(By.ID, "scan-prefix").get_attribute("value") == "user:011"
    wait.until(lambda d: d.find_element(By.ID, "scan-status").text.endswith("(end)"))
    keys = [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, "#scan-rows td.key")]
    assert keys == [f"user:{i:04d}" for i in range(110, 120)]


@pytest.mark.parametrize("backend", ["memory", pytest.param("disk", marks=requires_disk)])
def test_kv_tab_and_key_browser_in_a_headless_browser(browser, tmp_path: Path, backend: str) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    store = ["--kv-path", str(tmp_path / "store.lmdb")] if backend == "disk" else []
    locust = start_locust(
        "browse.py", "--web-host", "127.0.0.1", "--web-port", str(port), "--autostart", "-u", "2", "-r", "2",
        "--kv-backend", backend, *store, cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(base + "/", locust)
        _check_tab_and_browser(browser, base, backend)
    finally:
        locust.send_signal(signal.SIGTERM)
        (result,) = finish([locust])
    assert result.returncode == 0, describe(result)
