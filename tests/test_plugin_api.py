"""The plugin's API in a Locust process of its own, each check reported as a test here.

tests/plugin_inprocess_checks.py imports Locust, which patches its whole
process with gevent; so it runs once, in a child pytest, and each of its
check functions becomes one test of this module.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .plugin_helpers import LOCUSTFILES, RUN_TIMEOUT, assert_check_passed, check_names, clean_environment, run_checks

CHECKS = Path(__file__).parent / "plugin_inprocess_checks.py"
CHECK_NAMES = check_names(CHECKS)


@pytest.fixture(scope="module")
def check_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[str, str]]]:
    """Run every check once: function name -> [(outcome, detail)] for each of its cases."""
    return run_checks(CHECKS, tmp_path_factory.mktemp("checks") / "report.xml")


@pytest.mark.parametrize("name", CHECK_NAMES)
def test_in_a_locust_process(name: str, check_results: dict[str, list[tuple[str, str]]]) -> None:
    assert_check_passed(name, check_results)


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
