"""KV statistics in real headless Locust runs: they never distort the load's figures or its verdict.

- ``--kv-report`` (mode ``kv``) leaves Locust's request statistics to the
  HTTP load: the same rows and counts as a run without it, and its own table
  (console, CSV, JSON, the ``--html`` report) with failures by error name;
- ``--kv-report requests`` mirrors KV operations into Locust's statistics, by
  explicit choice;
- a KV error the locustfile catches never changes the exit code, in any
  mode; one it lets through to Locust fails the run in every mode;
- the store works in every hook, on every process where the hook runs.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from locust_kv import open_kv

from .plugin_helpers import describe, read_json, requires_disk, run_locust
from .test_plugin_webui import browser  # noqa: F401  (the headless Chromium fixture)

ITERATIONS = 20
USERS = 2


def _run(tmp_path: Path, *args: str, uncaught: bool = False, iterations: int = ITERATIONS):  # type: ignore[no-untyped-def]
    return run_locust(
        "http_kv.py", "--headless", "-u", str(USERS), "-r", "100", "-t", "60s", "--kv-backend", "memory",
        "--json-file", str(tmp_path / "run"), "--csv", str(tmp_path / "run"), "--html", str(tmp_path / "run.html"),
        *args, cwd=tmp_path,
        env={"KV_TEST_ITERATIONS": str(iterations), "KV_TEST_UNCAUGHT": "1" if uncaught else "0"},
    )  # fmt: skip


def _locust_rows(tmp_path: Path) -> dict[tuple[str, str], dict]:  # type: ignore[type-arg]
    return {(row["method"], row["name"]): row for row in read_json(tmp_path / "run.json")}  # type: ignore[union-attr]


def test_the_http_figures_are_the_same_with_and_without_kv_report(tmp_path: Path) -> None:
    figures = {}
    for mode, args in (("off", []), ("kv", ["--kv-report"])):
        workdir = tmp_path / mode
        workdir.mkdir()
        result = _run(workdir, *args)
        assert result.returncode == 0, describe(result)
        rows = _locust_rows(workdir)
        # Only the load is in Locust's statistics: one row, every request a success.
        assert list(rows) == [("GET", "/")], rows
        figures[mode] = (rows[("GET", "/")]["num_requests"], rows[("GET", "/")]["num_failures"])
    assert figures["off"] == figures["kv"] == (USERS * ITERATIONS, 0)


def test_kv_report_has_its_own_table_with_failures_by_error_name(tmp_path: Path) -> None:
    result = _run(tmp_path, "--kv-report")
    assert result.returncode == 0, describe(result)
    calls = USERS * ITERATIONS
    document = read_json(tmp_path / "run_kv.json")
    operations = {row["operation"]: row for row in document["operations"]}  # type: ignore[index]
    # The locustfile's own hooks count too (test_start, test_stop, after_load: one increment each;
    # before_load runs before the test, whose statistics start at test_start).
    assert (operations["increment_by"]["count"], operations["increment_by"]["failures"]) == (calls + 3, 0)
    assert (operations["get"]["count"], operations["get"]["failures"]) == (calls, calls)
    assert operations["get"]["rate"] > 0
    assert document["failures"] == [{"operation": "get", "error": "KeyNotFoundError", "occurrences": calls}]  # type: ignore[index]
    with open(tmp_path / "run_kv_stats.csv", newline="") as f:
        assert {row["Operation"]: int(row["# ops"]) for row in csv.DictReader(f)}["get"] == calls
    with open(tmp_path / "run_kv_failures.csv", newline="") as f:
        assert [(r["Operation"], r["Error"], r["Occurrences"]) for r in csv.DictReader(f)] == [
            ("get", "KeyNotFoundError", str(calls))
        ]
    # The plugin's own reads of its hooks' counters and its backup are not user operations.
    assert set(operations) == {"get", "increment_by", "Aggregated"}
    page = (tmp_path / "run.html").read_text(encoding="utf-8")
    assert page.count('id="locust-kv-statistics"') == 1
    assert "KeyNotFoundError" in page


def test_kv_report_requests_mirrors_kv_operations_into_locusts_statistics(tmp_path: Path) -> None:
    result = _run(tmp_path, "--kv-report", "requests")
    calls = USERS * ITERATIONS
    # Every failure Locust counted is a KV error the locustfile caught: the run still passes.
    assert result.returncode == 0, describe(result)
    assert "they do not change the exit code" in result.output
    rows = _locust_rows(tmp_path)
    assert rows[("GET", "/")]["num_requests"] == calls
    assert rows[("KV", "increment_by")]["num_requests"] == calls + 3  # and the hooks' own, as above
    assert rows[("KV", "get")]["num_failures"] == calls
    with open(tmp_path / "run_failures.csv", newline="") as f:
        failures = list(csv.DictReader(f))
    # One row for every missing key: the text does not vary per key.
    assert [(r["Method"], r["Name"], r["Error"]) for r in failures] == [("KV", "get", "KeyNotFoundError('key not found')")]
    assert read_json(tmp_path / "run_kv.json")["failures"][0]["occurrences"] == calls  # type: ignore[index]


@pytest.mark.parametrize("mode", [[], ["--kv-report"], ["--kv-report", "requests"]], ids=["off", "kv", "requests"])
def test_a_kv_error_the_locustfile_lets_through_fails_the_run_in_every_mode(tmp_path: Path, mode: list[str]) -> None:
    result = _run(tmp_path, *mode, uncaught=True)
    assert result.returncode == 1, describe(result)
    assert "KeyNotFoundError: key not found" in result.output
    with open(tmp_path / "run_exceptions.csv", newline="") as f:
        assert [row["Message"] for row in csv.DictReader(f)] == ["KeyNotFoundError: key not found"]


@pytest.mark.parametrize("mode", [[], ["--kv-report"]], ids=["off", "kv"])
def test_caught_kv_errors_leave_the_exit_code_alone(tmp_path: Path, mode: list[str]) -> None:
    result = _run(tmp_path, *mode)
    assert result.returncode == 0, describe(result)
    assert [row for row in read_json(tmp_path / "run.json") if row["num_failures"]] == []  # type: ignore[union-attr,index]


def test_a_bad_report_mode_stops_the_run_with_a_catalogued_name(tmp_path: Path) -> None:
    result = _run(tmp_path, "--kv-report", "sometimes")
    assert result.returncode == 1, describe(result)
    assert "InvalidOptionsError: --kv-report must be one of off, kv, requests" in result.output
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------
# Hooks.


def _hooks(out: Path) -> Counter[str]:
    seen: Counter[str] = Counter()
    for log in out.glob("hooks-*.txt"):
        seen.update(log.read_text().split())
    return seen


def test_the_store_works_in_every_hook_standalone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    result = run_locust(
        "http_kv.py", "--headless", "-u", "1", "-r", "10", "-t", "2s", "--kv-backend", "disk",
        "--kv-path", str(tmp_path / "store.lmdb"), "--kv-backup-to", str(tmp_path / "after.snapshot"),
        "--kv-report", cwd=tmp_path, env={"KV_TEST_OUT": str(out)},
    )  # fmt: skip
    assert result.returncode == 0, describe(result)
    # Without --json-file, the KV tables follow Locust's own on the console.
    assert result.output.index("KV operations (microseconds") > result.output.index("Aggregated")
    assert "KV failures (by error name)" in result.output
    assert len(result.lines_with("KeyNotFoundError")) == 1
    assert _hooks(out) == Counter(
        {"before_load:standalone": 1, "test_start:standalone": 1, "test_stop:standalone": 1, "after_load:standalone": 1}
    )
    with open_kv(backend="disk", path=str(tmp_path / "store.lmdb")) as kv:
        assert {k: kv.get(k) for k in kv.list_keys("hook:")} == {
            "hook:before_load:standalone": 1, "hook:test_start:standalone": 1,
            "hook:test_stop:standalone": 1, "hook:after_load:standalone": 1,
        }  # fmt: skip


@requires_disk
def test_the_store_works_in_every_hook_with_processes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    result = run_locust(
        "http_kv.py", "--headless", "-u", "4", "-r", "10", "-t", "3s", "--processes", "2", "--kv-backend", "disk",
        "--kv-path", str(tmp_path / "store.lmdb"), cwd=tmp_path, env={"KV_TEST_OUT": str(out)},
    )  # fmt: skip
    assert result.returncode == 0, describe(result)
    by_process = {log.name: Counter(log.read_text().split()) for log in out.glob("hooks-*.txt")}
    # before_load and after_load run once, on the master; test_start and test_stop on the master and on
    # each worker that Locust gave users (on a loaded machine it may give them all to one worker).
    (master,) = [seen for seen in by_process.values() if "before_load:master" in seen]
    assert master == Counter(
        {"before_load:master": 1, "after_load:master": 1, "test_start:master": 1, "test_stop:master": 1}
    ), by_process  # fmt: skip
    workers = [seen for seen in by_process.values() if seen is not master]
    assert 1 <= len(workers) <= 2, by_process
    assert all(seen == Counter({"test_start:worker": 1, "test_stop:worker": 1}) for seen in workers), by_process
    with open_kv(backend="disk", path=str(tmp_path / "store.lmdb")) as kv:
        # Each hook's increment reached the one store: as many as the workers logged.
        assert kv.get("hook:test_start:worker") == kv.get("hook:test_stop:worker") == len(workers)
        assert kv.get("visits") > 0


def test_the_html_report_section_renders_in_chromium(tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    result = _run(tmp_path, "--kv-report")
    assert result.returncode == 0, describe(result)
    browser.get((tmp_path / "run.html").as_uri())
    section = browser.find_element(By.ID, "locust-kv-statistics")
    text = section.text
    assert "KV operations (microseconds; locust_kv --kv-report)" in text
    assert "increment_by" in text and "KeyNotFoundError" in text
    assert "Μ" not in text  # never a capital Mu for µ
    # Locust's own report still renders beside it.
    assert "/" in browser.find_element(By.TAG_NAME, "body").text
    shot = tmp_path / "html-report.png"
    section.screenshot(str(shot))
    assert shot.stat().st_size > 5_000

