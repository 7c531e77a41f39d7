"""The plugin's API in a Locust process of its own, each check reported as a test here.

tests/plugin_inprocess_checks.py imports Locust, which patches its whole
process with gevent; so it runs once, in a child pytest, and each of its
check functions becomes one test of this module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .plugin_helpers import LOCUSTFILES, RUN_TIMEOUT, clean_environment

CHECKS = Path(__file__).parent / "plugin_inprocess_checks.py"
CHECK_NAMES = [
    node.name
    for node in ast.parse(CHECKS.read_text()).body
    if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
]


@pytest.fixture(scope="module")
def check_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[str, str]]]:
    """Run every check once: function name -> [(outcome, detail)] for each of its cases."""
    report = tmp_path_factory.mktemp("checks") / "report.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", str(CHECKS)],
        cwd=CHECKS.parent.parent, env=clean_environment(), capture_output=True, text=True, timeout=RUN_TIMEOUT,
        check=False,
    )
    if not report.exists():
        pytest.fail(f"the checks did not run:\n{done.stdout}\n{done.stderr}")
    results: dict[str, list[tuple[str, str]]] = {}
    for case in ET.parse(report).iter("testcase"):
        problems = [child for child in case if child.tag in ("failure", "error", "skipped")]
        outcome = problems[0].tag if problems else "passed"
        detail = (problems[0].text or problems[0].get("message", "")) if problems else ""
        results.setdefault(case.get("name", "").split("[")[0], []).append((outcome, detail))
    return results


@pytest.mark.parametrize("name", CHECK_NAMES)
def test_in_a_locust_process(name: str, check_results: dict[str, list[tuple[str, str]]]) -> None:
    cases = check_results.get(name)
    assert cases, f"{name} did not run"
    failed = [detail for outcome, detail in cases if outcome in ("failure", "error")]
    assert not failed, "\n\n".join(failed)
    if all(outcome == "skipped" for outcome, _ in cases):
        pytest.skip(cases[0][1])


def test_importing_locust_kv_has_no_side_effects() -> None:
    code = (
        "import sys, locust_kv, locust_kv.errors, locust_kv.store;"
        "assert 'locust' not in sys.modules, 'locust imported';"
        "assert 'locust_kv.plugin' not in sys.modules, 'plugin imported';"
        "import gevent.monkey; assert not gevent.monkey.is_anything_patched(), 'gevent patched'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr


def test_run_single_user_gets_the_store(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(LOCUSTFILES / "single_user.py")],
        cwd=tmp_path, env=clean_environment({"LOCUST_KV_BACKEND": "memory"}),
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "single user: orders=3 backend=memory" in done.stdout
