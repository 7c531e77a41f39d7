"""The web UI's KV tab and key browser, in a real headless Chromium against a real Locust.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium``
package (the test extra). Without them the test skips, except when the
environment variable CI is set: there it fails, so CI cannot pass without it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.parse
import urllib.request
import zlib
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


# ---------------------------------------------------------------------------
# Screenshots of each KV page, and the start form.


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _png_colours(data: bytes) -> int:
    """Distinct pixels of a screenshot (8-bit RGB or RGBA, as Chromium writes them)."""
    width, _height = _png_size(data)
    depth, colour_type = data[24], data[25]
    assert depth == 8 and colour_type in (2, 6), (depth, colour_type)
    channels = 3 if colour_type == 2 else 4
    idat, offset = b"", 8
    while offset < len(data):
        length = int.from_bytes(data[offset:offset + 4], "big")
        kind = data[offset + 4:offset + 8]
        if kind == b"IDAT":
            idat += data[offset + 8:offset + 8 + length]
        offset += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + width * channels
    # Undo only the "none" and "sub" filters' rows exactly; other rows still count their own
    # distinct bytes, which is enough to tell a page from a blank one.
    pixels: set[bytes] = set()
    for start in range(0, len(raw), stride):
        row = bytearray(raw[start + 1:start + stride])
        if raw[start] == 1:
            for i in range(channels, len(row)):
                row[i] = (row[i] + row[i - channels]) & 0xFF
        pixels.update(bytes(row[i:i + channels]) for i in range(0, len(row), channels))
    return len(pixels)


def _screenshot(driver, path: Path) -> None:  # type: ignore[no-untyped-def]
    """Save a screenshot of the page as it is rendered, and check it is a picture of something."""
    assert driver.save_screenshot(str(path)), path
    data = path.read_bytes()
    width, height = _png_size(data)
    assert width >= 800 and height >= 600, (path.name, width, height)
    assert len(data) > 10_000, f"{path.name}: {len(data)} bytes, a blank page?"
    assert _png_colours(data) > 16, f"{path.name}: almost one colour"


def _cells(driver, xpath: str) -> list[str]:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    return [cell.text for cell in driver.find_elements(By.XPATH, xpath)]


@requires_disk
def test_screenshots_of_each_kv_page_with_timings_and_masked_values(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    locust = start_locust(
        "browse.py", "--web-host", "127.0.0.1", "--web-port", str(port), "--autostart", "-u", "2", "-r", "2",
        "--kv-path", str(tmp_path / "store.lmdb"), "--kv-report", "--kv-mask-prefix", "user:01,flag:",
        cwd=tmp_path,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    shots = tmp_path / "shots"
    shots.mkdir()
    driver, wait = browser, WebDriverWait(browser, WAIT)
    try:
        _wait_until_serving(base + "/", locust)
        driver.get(base + "/")
        # The KV tab.
        wait.until(until.element_to_be_clickable((By.XPATH, "//button[@role='tab'][normalize-space()='KV']"))).click()
        wait.until(lambda d: "121" in _cells(d, "//tr[td[1][normalize-space()='Keys']]/td[2]"))
        _screenshot(driver, shots / "kv-tab.png")
        # The timings tab, live: the users' reads, in microseconds.
        driver.find_element(By.XPATH, "//button[@role='tab'][normalize-space()='KV timings (microseconds)']").click()
        wait.until(lambda d: "get" in _cells(d, "//tr/td[1]"))
        headers = " ".join(_cells(driver, "//th")).lower()
        assert "avg µs" in headers and "99% µs" in headers, headers
        assert "\u039c" not in driver.find_element(By.TAG_NAME, "body").text  # no capital Mu anywhere
        count = int(_cells(driver, "//tr[td[1][normalize-space()='get']]/td[2]")[0])
        assert count > 0
        _screenshot(driver, shots / "kv-timings-tab.png")
        # The key browser, opened on a link with ?prefix= and ?key=; values under a masked prefix are hidden.
        driver.get(base + "/kv?prefix=user%3A00&key=user%3A0042")
        wait.until(lambda d: d.find_elements(By.ID, "lookup-value") and d.find_element(By.ID, "lookup-value").text)
        assert driver.find_element(By.ID, "lookup-value").text == '{"id":42}'
        wait.until(lambda d: d.find_element(By.ID, "scan-status").text.startswith("page 1,"))
        keys = _cells(driver, "//tbody[@id='scan-rows']/tr/td[1]")
        assert keys == [f"user:{i:04d}" for i in range(1, 50)] + ["user:0050"] or len(keys) == 50, keys
        assert _cells(driver, "//tbody[@id='scan-rows']/tr/td[2]")[0] == '{"id":1}'
        _screenshot(driver, shots / "kv-browser.png")
        driver.get(base + "/kv?prefix=user%3A01&key=flag%3Acheckout")
        wait.until(lambda d: d.find_elements(By.ID, "lookup-value") and d.find_element(By.ID, "lookup-value").text)
        assert "masked" in driver.find_element(By.ID, "lookup-value").text
        assert "enabled" not in driver.find_element(By.TAG_NAME, "body").text
        wait.until(lambda d: d.find_element(By.ID, "scan-status").text.endswith("(end)"))
        rows = list(zip(_cells(driver, "//tbody[@id='scan-rows']/tr/td[1]"),
                        _cells(driver, "//tbody[@id='scan-rows']/tr/td[2]")))  # fmt: skip
        assert [key for key, _ in rows] == [f"user:{i:04d}" for i in range(100, 121)], rows
        assert all("masked" in value and "id" not in value for _, value in rows), rows
        _screenshot(driver, shots / "kv-browser-masked.png")
    finally:
        locust.send_signal(signal.SIGTERM)
        (result,) = finish([locust])
    assert result.returncode == 0, describe(result)


def _post_swarm(base: str, **fields: str) -> dict[str, object]:
    body = urllib.parse.urlencode({"user_count": "1", "spawn_rate": "1", "host": "", **fields}).encode()
    with urllib.request.urlopen(urllib.request.Request(base + "/swarm", data=body), timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def _get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _stop(base: str) -> None:
    with urllib.request.urlopen(urllib.request.Request(base + "/stop", data=b""), timeout=10) as response:
        assert response.status == 200


@requires_disk
def test_start_form_fields_are_refused_with_a_catalogued_message_or_applied(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "snapshot.json").write_text("not a snapshot")
    locust = start_locust(
        "browse.py", "--web-host", "127.0.0.1", "--web-port", str(port), "--kv-path", "store.lmdb", cwd=tmp_path,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    refusals = {
        # The form's field as Locust's UI sends it -> the catalogued name and words of the message.
        "memory-with-a-path": ({"kv_backend": "memory", "kv_path": "store.lmdb"}, "KVOptionsConflictError", "--kv-backend 'memory'"),
        "another-path": ({"kv_path": "other.lmdb"}, "KVOptionsConflictError", "--kv-path 'other.lmdb'"),
        "redis-url": ({"kv_backend": "redis", "kv_redis_url": "redis://:pw@127.0.0.1:1/0"}, "KVOptionsConflictError", "--kv-redis-url (hidden)"),
        "serialization": ({"kv_serialization": "string"}, "KVOptionsConflictError", "--kv-serialization 'string'"),
        "restore": ({"kv_restore_from": "snapshot.json"}, "KVOptionsConflictError", "--kv-restore-from"),
        "unknown-backend": ({"kv_backend": "mongo"}, "InvalidBackendError", "'mongo'"),
        "unknown-serialization": ({"kv_serialization": "xml"}, "InvalidSerializationError", "'xml'"),
        "blank-number": ({"kv_restore_max_entries": ""}, "InvalidOptionsError", "--kv-restore-max-entries"),
        "bad-flag": ({"kv_clear": "maybe"}, "InvalidOptionsError", "--kv-clear"),
        "backup-over-the-store": ({"kv_backup_to": "store.lmdb"}, "Snapshot", ""),
    }
    try:
        _wait_until_serving(base + "/", locust)
        for name, (fields, error, words) in refusals.items():
            answer = _post_swarm(base, **fields)
            assert answer["success"] is False, (name, answer)
            message = str(answer["message"])
            assert message.startswith(error) and words in message, (name, message)
            assert "pw" not in message and "Traceback" not in message, (name, message)
        # Nothing started, and the seed is intact.
        assert _get_json(base + "/kv/api/summary")["keys"] == 121
        # The same store named differently (the absolute path; the form's blank fields) is accepted;
        # kv_clear and kv_mask_prefix are applied when the test starts.
        unchanged = {"kv_backend": "disk", "kv_redis_url": "", "kv_namespace": "", "kv_serialization": "json",
                     "kv_restore_from": "", "kv_restore_max_entries": "0", "kv_restore_max_bytes": "0", "kv_backup_to": ""}  # fmt: skip
        answer = _post_swarm(base, **unchanged, kv_path=str(tmp_path / "store.lmdb"), kv_clear="false", kv_mask_prefix="user:")
        assert answer["success"] is True, answer
        assert _get_json(base + "/kv/api/key?key=user%3A0001")["value"].startswith("••")  # type: ignore[union-attr]
        # While the test runs, kv_clear cannot act: the edit is refused, the test goes on.
        answer = _post_swarm(base, **unchanged, kv_path="store.lmdb", kv_clear="true")
        assert answer["success"] is False and str(answer["message"]).startswith("InvalidOptionsError"), answer
        assert "--kv-clear acts when a test starts" in str(answer["message"]), answer
        assert _get_json(base + "/kv/api/summary")["keys"] == 121
        _stop(base)
        # A new test with kv_clear: the store is cleared before its users start.
        answer = _post_swarm(base, **{**unchanged, "kv_backup_to": "after.json"}, kv_path="store.lmdb", kv_clear="true")
        assert answer["success"] is True, answer
        deadline = time.monotonic() + WAIT
        while _get_json(base + "/kv/api/summary")["keys"] != 0:
            assert time.monotonic() < deadline, "kv_clear did not clear the store"
            time.sleep(0.2)
    finally:
        locust.send_signal(signal.SIGTERM)
        (result,) = finish([locust])
    assert result.lines_with("cleared the store before this test"), describe(result)
    assert result.lines_with("the start form was refused: KVOptionsConflictError"), describe(result)
    # No option reached a test_start listener unchecked (its exception would be Locust's greenlet traceback).
    assert not result.lines_with("Unhandled exception in greenlet"), describe(result)
    assert (tmp_path / "after.json").exists(), describe(result)  # kv_backup_to from the form was applied
    assert not (tmp_path / "other.lmdb").exists()


def test_start_form_refusal_shows_in_the_browser(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    locust = start_locust(
        "browse.py", "--web-host", "127.0.0.1", "--web-port", str(port), "--kv-backend", "memory", cwd=tmp_path,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    driver, wait = browser, WebDriverWait(browser, WAIT)
    try:
        _wait_until_serving(base + "/", locust)
        driver.get(base + "/")
        wait.until(lambda d: d.find_elements(By.XPATH, "//*[normalize-space()='Custom parameters']"))[0].click()
        field = wait.until(lambda d: [e for e in d.find_elements(By.NAME, "kvPath") if e.is_displayed()])[0]
        field.send_keys("store.lmdb")
        driver.find_element(By.CSS_SELECTOR, "form button[type='submit']").click()
        alert = wait.until(lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, "[role='alert']") if e.text])[0]
        assert alert.text.startswith("InvalidOptionsError"), alert.text
        assert "path" in alert.text, alert.text
        _screenshot(driver, tmp_path / "start-form-refused.png")
        # Put the field back: the test starts, with kv_report from the form.
        field.clear()
        field.send_keys(" ")
        # The form names its fields in camelCase and posts them in snake_case (kv_report).
        # --kv-report lists its modes, so the form shows a (native) select.
        from selenium.webdriver.support.select import Select

        Select(driver.find_element(By.NAME, "kvReport")).select_by_value("kv")
        assert driver.find_element(By.NAME, "kvReport").get_attribute("value") == "kv"
        driver.find_element(By.CSS_SELECTOR, "form button[type='submit']").click()
        wait.until(lambda d: d.find_elements(By.XPATH, "//button[@role='tab'][normalize-space()='KV timings (microseconds)']"))
        driver.find_element(By.XPATH, "//button[@role='tab'][normalize-space()='KV timings (microseconds)']").click()
        wait.until(lambda d: "get" in _cells(d, "//tr/td[1]"))
    finally:
        locust.send_signal(signal.SIGTERM)
        (result,) = finish([locust])
    assert result.returncode == 0, describe(result)
    assert not result.lines_with("Traceback"), describe(result)
