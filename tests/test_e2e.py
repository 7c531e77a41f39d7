"""The e2e scenarios through their runner: each passes on every topology, and fails when its invariant is broken.

Two runs of ``e2e/run.py`` as a subprocess, each once per module:

- every scenario on every topology (memory, disk, disk with ``--processes 2``,
  redis, redis with ``--processes 2``);
  each (scenario, topology) is then one test that asserts the run passed;
- every scenario with ``E2E_BREAK=1``, which makes it commit its deliberate
  bug, on the memory backend and with ``--processes 2`` on disk; each is one
  test asserting that the run failed, that Locust itself exited 1, and that
  the runner gave the violated invariant as the reason.

The runner runs three Locust runs at a time (about two and a half minutes in all on 2 cores).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "e2e" / "run.py"


def _load_runner() -> Any:
    spec = importlib.util.spec_from_file_location("e2e_run", RUNNER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


runner = _load_runner()
SCENARIOS = [s.name for s in runner.SCENARIOS]
# The redis topologies need redis-server; without it they are left out locally (CI installs it,
# and with CI set a missing server fails the runner instead).
_NO_REDIS = shutil.which("redis-server") is None and not os.environ.get("CI")
TOPOLOGIES = [t.name for t in runner.TOPOLOGIES if not (_NO_REDIS and t.backend == "redis")]
BROKEN_TOPOLOGIES = [t for t in ("memory", "disk-2p", "redis-2p") if t in TOPOLOGIES]

EXPECTED_REASON = {
    "rate_limiter": "the window counters counted",
    "job_queue": "was processed 2 times",
    "flash_sale": "was won by 2 shoppers",
    "blue_green": 'swaps found the slot empty ("not loaded"), expected exactly 1',
    "session_gc": "counted as collected",
    "scan_paging": "was processed 0 times",
    "feature_flags": "is not the sum of the applied changes",
    "backup_restore": "missing below its head",
    "seeding": "found the account in use by another session",
    "shared_counters": "the users' tallies add up to",
    "account_pool": "found the account in use by another session",
}
"""What the runner must say when a scenario commits its deliberate bug."""


Outcome = tuple[int, str, dict[tuple[str, str], dict[str, Any]]]


def _run_runner(report: Path, topologies: list[str], env: dict[str, str]) -> Outcome:
    """Run e2e/run.py; its exit status, its output, and its results by (scenario, topology).

    The runner makes its work directory beside ``report``, in the test's
    temporary directory (TMPDIR), so that pytest deletes it: the broken
    runs fail by design, and the runner keeps a failed run's directory.
    """
    env = dict(env, TMPDIR=str(report.parent))
    command = [sys.executable, str(RUNNER), "--jobs", "3", "--report", str(report)]
    for topology in topologies:
        command += ["--topology", topology]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    results = {(r["scenario"], r["topology"]): r for r in json.loads(report.read_text())} if report.exists() else {}
    return done.returncode, done.stdout + done.stderr, results


@pytest.fixture(scope="module")
def passing(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    env = {key: value for key, value in os.environ.items() if key != "E2E_BREAK"}
    return _run_runner(tmp_path_factory.mktemp("e2e") / "report.json", TOPOLOGIES, env)


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    env = dict(os.environ, E2E_BREAK="1")
    return _run_runner(tmp_path_factory.mktemp("e2e-broken") / "report.json", list(BROKEN_TOPOLOGIES), env)


def test_every_scenario_has_an_expected_failure() -> None:
    assert sorted(EXPECTED_REASON) == sorted(SCENARIOS)


def test_runner_passes(passing: Outcome) -> None:
    code, output, results = passing
    assert len(results) == len(SCENARIOS) * len(TOPOLOGIES), output
    assert code == 0, output


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_passes(scenario: str, topology: str, passing: Outcome) -> None:
    _, output, results = passing
    result = results.get((scenario, topology))
    assert result is not None, output
    assert result["passed"], f"{scenario} [{topology}]: {result['reason']} (log: {result['workdir']}/locust.log)"
    assert result["exit_code"] == 0


def test_runner_fails_when_invariants_break(broken: Outcome) -> None:
    code, output, results = broken
    assert len(results) == len(SCENARIOS) * len(BROKEN_TOPOLOGIES), output
    assert code == 1, output
    for scenario, _topology in results:
        assert f"FAILED {scenario} [" in output


@pytest.mark.parametrize("topology", BROKEN_TOPOLOGIES)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_fails_when_its_invariant_breaks(scenario: str, topology: str, broken: Outcome) -> None:
    _, output, results = broken
    result = results.get((scenario, topology))
    assert result is not None, output
    assert not result["passed"], f"{scenario} [{topology}] passed with its deliberate bug: {result['facts']}"
    assert result["exit_code"] == 1, f"locust exited {result['exit_code']}: {result['reason']}"
    # The deliberate bug's violation is normally the first reported; on a starved machine a
    # shortfall (too few jobs in the run time...) may come first, so look at every failure.
    assert any(EXPECTED_REASON[scenario] in failure for failure in result["failures"]), result["reason"]
