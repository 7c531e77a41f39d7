"""Helpers for the Locust plugin tests: real ``locust`` processes, headless, on loopback.

Nothing here imports Locust: importing it would monkey-patch the whole pytest
process with gevent, and the other suites test real OS threads. Locust only
ever runs in child processes.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

LOCUSTFILES = Path(__file__).parent / "locustfiles"
REPOSITORY = Path(__file__).parent.parent
RUN_TIMEOUT = 120
"""Seconds a locust process may take before the test fails; runs take a few seconds."""

requires_disk = pytest.mark.skipif(
    importlib.util.find_spec("locust_kv.backends.lmdb") is None, reason="the disk backend is not available"
)


@dataclass
class Result:
    returncode: int
    output: str
    """stdout and stderr, interleaved."""

    def lines_with(self, text: str) -> list[str]:
        return [line for line in self.output.splitlines() if text in line]


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """os.environ without LOCUST_* variables (a developer's settings must not leak in), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def locust_command(locustfile: str, *args: str) -> list[str]:
    """``locust -f`` a file of tests/locustfiles (or any path) with ``args``."""
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILES / locustfile), *args]


def run_locust(
    locustfile: str, *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = RUN_TIMEOUT
) -> Result:
    """Run one locust process to its end (killed with its whole process group if it overruns ``timeout``)."""
    (result,) = finish([start_locust(locustfile, *args, cwd=cwd, env=env)], timeout)
    return result


def start_locust(locustfile: str, *args: str, cwd: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """Start a locust process; finish it with :func:`finish`.

    In a session of its own, so that a timeout kills the workers that
    ``--processes`` forks too: an orphaned worker would keep the output pipe
    open, and the test would wait for it forever. A ``--processes`` run gets
    a master port of its own, so that it never meets another run's workers.
    """
    environment = clean_environment(env)
    if "--processes" in args and "LOCUST_MASTER_BIND_PORT" not in environment:
        port = str(free_port())
        environment.update(
            LOCUST_MASTER_BIND_HOST="127.0.0.1",
            LOCUST_MASTER_BIND_PORT=port,
            LOCUST_MASTER_NODE_HOST="127.0.0.1",
            LOCUST_MASTER_NODE_PORT=port,
        )
    return subprocess.Popen(
        locust_command(locustfile, *args),
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finish(processes: Iterable[subprocess.Popen[str]], timeout: float = RUN_TIMEOUT) -> list[Result]:
    """Wait for every process; kill them all if one overruns the timeout."""
    processes = list(processes)
    results = []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=timeout)
            results.append(Result(process.returncode, output))
    except subprocess.TimeoutExpired:
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # the process and every worker it forked
            except ProcessLookupError:
                pass
            process.communicate()
        raise
    return results


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_values(out: Path) -> dict[int, list[int]]:
    """The counter values each process's users got, from the counters locustfile's logs, by pid."""
    by_pid: dict[int, list[int]] = {}
    for log in out.glob("values-*.txt"):
        pid = int(log.name.split("-")[1])
        lines = log.read_text().split()
        assert "missing-seed" not in lines, f"a user of {pid} started before the restore"
        by_pid.setdefault(pid, []).extend(int(v) for v in lines)
    return by_pid


def read_json(path: Path) -> object:
    return json.loads(path.read_text())


def describe(*results: Result) -> str:
    """Every process's output, for an assertion message."""
    return "\n".join(f"--- exit {r.returncode} ---\n{r.output[-6000:]}" for r in results)


def run_checks(checks: Path, report: Path) -> dict[str, list[tuple[str, str]]]:
    """Run a module of in-process checks (it imports Locust) with pytest in a child process.

    Returns check function name -> [(outcome, detail)] for each of its cases;
    fails the calling test when the child did not run them at all.
    """
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", str(checks)],
        cwd=checks.parent.parent, env=clean_environment(), capture_output=True, text=True, timeout=RUN_TIMEOUT,
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


def check_names(checks: Path) -> list[str]:
    """The check functions of a module of in-process checks."""
    return [
        node.name
        for node in ast.parse(checks.read_text()).body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    ]


def assert_check_passed(name: str, results: dict[str, list[tuple[str, str]]]) -> None:
    """Fail (or skip) as the check ``name`` did in the child process."""
    cases = results.get(name)
    assert cases, f"{name} did not run"
    failed = [detail for outcome, detail in cases if outcome in ("failure", "error")]
    assert not failed, "\n\n".join(failed)
    if all(outcome == "skipped" for outcome, _ in cases):
        pytest.skip(cases[0][1])
