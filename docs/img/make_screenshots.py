"""Regenerate the docs' screenshots of the web UI: ``python docs/img/make_screenshots.py``.

Runs the test suite's web-UI locustfile (tests/locustfiles/browse.py) with
``--kv-report`` in a temporary directory, lets its users read for a few
seconds, and saves, with headless Chromium (Debian's ``chromium`` and
``chromium-driver``, and the ``selenium`` package):

- docs/img/kv-tab.png: the KV timings (microseconds) tab during the run;
- docs/img/kv-browser.png: the key browser opened on ``?prefix=user:01``;
- docs/img/kv-html-report.png: the KV section of Locust's HTML report (the
  page the web UI serves at /stats/report, as in the ``--html`` file).

Run it from a checkout; it starts and stops its own Locust process.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent.parent
LOCUSTFILE = REPOSITORY / "tests" / "locustfiles" / "browse.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_serving(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"locust exited with {process.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as work:
        locust = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--web-host", "127.0.0.1", "--web-port", str(port),
             "--autostart", "-u", "4", "-r", "4", "--kv-path", str(Path(work) / "store.lmdb"), "--kv-report",
             "--kv-mask-prefix", "flag:"],
            cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--user-data-dir={Path(work) / 'profile'}", "--window-size=1280,760"):  # fmt: skip
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)
        try:
            _wait_until_serving(base + "/", locust)
            time.sleep(4)  # some operations to show
            wait = WebDriverWait(driver, 30)
            driver.get(base + "/")
            tab = "//button[@role='tab'][normalize-space()='KV timings (microseconds)']"
            wait.until(lambda d: d.find_elements(By.XPATH, tab))[0].click()
            wait.until(lambda d: [c for c in d.find_elements(By.XPATH, "//tr/td[1]") if c.text == "get"])
            time.sleep(1)  # the tab's underline slides into place
            driver.save_screenshot(str(HERE / "kv-tab.png"))
            driver.get(base + "/kv?prefix=user%3A01&key=flag%3Acheckout")
            wait.until(lambda d: d.find_element(By.ID, "scan-status").text.endswith("(end)"))
            driver.save_screenshot(str(HERE / "kv-browser.png"))
            driver.get(base + "/stats/report")
            section = wait.until(lambda d: d.find_elements(By.ID, "locust-kv-statistics"))[0]
            driver.execute_script("arguments[0].scrollIntoView()", section)
            section.screenshot(str(HERE / "kv-html-report.png"))
        finally:
            driver.quit()
            locust.send_signal(signal.SIGTERM)
            try:
                locust.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(locust.pid, signal.SIGKILL)
                locust.wait()
    for name in ("kv-tab.png", "kv-browser.png", "kv-html-report.png"):
        print(HERE / name, (HERE / name).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
