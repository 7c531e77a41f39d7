"""Run the e2e scenarios as real headless Locust runs; report which failed and why.

    python e2e/run.py                          # every scenario on every topology
    python e2e/run.py --backend memory         # memory only; --backend disk: disk, standalone and --processes 2
    python e2e/run.py --backend redis          # a redis-server the runner starts; standalone and --processes 2
    python e2e/run.py job_queue flash_sale     # some scenarios
    python e2e/run.py --topology disk-2p       # one topology (repeatable)
    E2E_BREAK=1 python e2e/run.py              # every scenario commits its deliberate bug: every run must FAIL

Each run is its own ``locust`` process (with ``--processes 2``, a master and
two workers) in a fresh work directory holding its disk store, snapshots,
log and statistics. The redis topologies share one ``redis-server`` that the
runner starts on a free loopback port (persistence off) and stops at the end;
each run has a namespace of its own on it. Runs go ``--jobs`` at a time. A run passes when Locust
exits 0 and the scenario's check wrote a passing verdict; otherwise the
runner says why: the violated invariant, else the first failure or error
Locust recorded, else the end of the log. The exit status is 1 if any run
failed. Failed runs keep their work directory for inspection.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "benchmarks"))

import redis_server  # noqa: E402 - the benchmark's private-server helper, after the path insert

RUN_TIMEOUT = 120.0
"""Seconds after which a run is killed and reported as failed."""


@dataclass(frozen=True)
class Scenario:
    """One locustfile of this directory and how to run it."""

    name: str
    users: int = 30
    run_time: str = "3s"
    prepare: tuple[tuple[str, ...], ...] = ()
    """Commands run in the work directory before Locust starts."""
    options: tuple[str, ...] = ()
    """Extra Locust options."""


@dataclass(frozen=True)
class Topology:
    name: str
    backend: str
    processes: int = 0
    slowdown: int = 1
    """Run time multiplier: each operation on a server is a network round trip, so a
    scenario needs longer for the same amount of work (its checks count the work done)."""


TOPOLOGIES = (
    Topology("memory", "memory"),
    Topology("disk", "disk"),
    Topology("disk-2p", "disk", processes=2),
    Topology("redis", "redis", slowdown=2),
    Topology("redis-2p", "redis", processes=2, slowdown=2),
)

SCENARIOS = (
    Scenario("rate_limiter"),
    Scenario("job_queue", users=40),
    Scenario("flash_sale"),
    Scenario("blue_green"),
    Scenario("session_gc", users=40),
    Scenario("scan_paging", users=40),
    Scenario("feature_flags"),
    Scenario("backup_restore"),
    Scenario(
        "seeding",
        prepare=(
            (sys.executable, str(HERE / "accounts.py"), "accounts.jsonl"),
            # `locust-kv snapshot import`, through the interpreter running this script
            (sys.executable, "-m", "locust_kv.cli", "snapshot", "import", "accounts.jsonl",
             "-o", "accounts.snapshot", "--no-progress"),
        ),
        options=("--kv-restore-from", "accounts.snapshot", "--kv-restore-max-entries", "10000"),
    ),
    Scenario("shared_counters"),
    Scenario(
        "account_pool",
        users=200,  # the scenario's LoadTestShape sets the users and the time: 200, 50, 200, about 4 s
        prepare=(
            (sys.executable, str(HERE / "accounts.py"), "accounts.jsonl", "1000"),
            (sys.executable, "-m", "locust_kv.cli", "snapshot", "import", "accounts.jsonl",
             "-o", "accounts.snapshot", "--no-progress"),
        ),
        options=("--kv-restore-from", "accounts.snapshot", "--kv-restore-max-entries", "1000"),
    ),
)


@dataclass
class Result:
    scenario: str
    topology: str
    passed: bool
    reason: str
    seconds: float
    exit_code: int | None
    facts: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    """Every violated invariant the check reported (``reason`` starts with the first)."""
    workdir: str = ""


def locust_command(scenario: Scenario, topology: Topology, redis_url: str | None = None) -> list[str]:
    command = [
        sys.executable, "-m", "locust",
        "-f", str(HERE / f"{scenario.name}.py"),
        "--headless", "-u", str(scenario.users), "-r", str(scenario.users), "-t", _scaled(scenario.run_time, topology.slowdown),
        "--stop-timeout", "10",
        "--kv-backend", topology.backend,
        "--csv", "stats", "--only-summary",
    ]  # fmt: skip
    if topology.backend == "disk":
        command += ["--kv-path", "store.lmdb"]
    if topology.backend == "redis":
        if redis_url is None:
            raise ValueError("a redis topology needs the runner's server")
        command += ["--kv-redis-url", redis_url, "--kv-namespace", f"{scenario.name}-{topology.name}"]
    if topology.processes:
        port = str(_free_port())  # runs go side by side: each master needs its own port
        command += [
            "--processes", str(topology.processes),
            "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
            "--master-host", "127.0.0.1", "--master-port", port,
        ]  # fmt: skip
    return command + list(scenario.options)


def _scaled(run_time: str, factor: int) -> str:
    """A Locust run time such as ``3s`` times ``factor``."""
    return f"{int(run_time.rstrip('s')) * factor}s"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_one(scenario: Scenario, topology: Topology, root: Path, redis_url: str | None = None) -> Result:
    workdir = root / f"{scenario.name}-{topology.name}"
    workdir.mkdir()
    verdict_path = workdir / "verdict.json"
    verdict: dict[str, Any] | None = None
    env = dict(os.environ, E2E_VERDICT=str(verdict_path), E2E_WORKDIR=str(workdir), PYTHONUNBUFFERED="1")
    started = time.monotonic()

    def result(passed: bool, reason: str, exit_code: int | None, facts: dict[str, Any] | None = None) -> Result:
        seconds = time.monotonic() - started
        failures = verdict["failures"] if verdict else []
        return Result(scenario.name, topology.name, passed, reason, seconds, exit_code, facts or {}, failures, str(workdir))

    log_path = workdir / "locust.log"
    with open(log_path, "wb") as log:
        for step in scenario.prepare:
            done = subprocess.run(
                step, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT
            )
            if done.returncode != 0:
                return result(False, f"preparing failed: {' '.join(step)} exited {done.returncode}", None)
        process = subprocess.Popen(
            locust_command(scenario, topology, redis_url),
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            exit_code = process.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return result(False, f"timed out after {RUN_TIMEOUT:.0f} s", None)
    verdict = _read_json(verdict_path)
    facts = dict(verdict.get("facts", {})) if verdict else {}
    facts.update(_request_counts(workdir))
    if verdict is None:
        why = _locust_failure(workdir, log_path)
        return result(False, f"no verdict (locust exited {exit_code}): {why}", exit_code, facts)
    if not verdict["passed"]:
        failures = verdict["failures"]
        more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
        return result(False, failures[0] + more, exit_code, facts)
    if exit_code != 0:
        why = _locust_failure(workdir, log_path)
        return result(False, f"the invariant held but locust exited {exit_code}: {why}", exit_code, facts)
    return result(True, "", exit_code, facts)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as file:
            return list(csv.DictReader(file))
    except OSError:
        return []


def _request_counts(workdir: Path) -> dict[str, int]:
    """HTTP requests, from Locust's own statistics (KV operations are not reported as requests)."""
    for row in _rows(workdir / "stats_stats.csv"):
        if row.get("Name") == "Aggregated" and int(row["Request Count"]):
            return {"http_requests": int(row["Request Count"])}
    return {}


def _locust_failure(workdir: Path, log_path: Path) -> str:
    """The first failure or error Locust recorded, else the last error lines of its log."""
    for row in _rows(workdir / "stats_failures.csv"):
        return f"{row['Occurrences']} x {row['Method']} {row['Name']}: {row['Error']}"
    for row in _rows(workdir / "stats_exceptions.csv"):
        return f"{row['Count']} x exception: {row['Message']}"
    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    errors = [line for line in lines if "ERROR" in line or "Error" in line]
    return " | ".join((errors or lines)[-3:]) or "no output"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO",
        help="scenarios to run (default: all): " + ", ".join(s.name for s in SCENARIOS),
    )  # fmt: skip
    parser.add_argument(
        "--backend", choices=("memory", "disk", "redis", "all"), default="all",
        help="memory: standalone; disk and redis: standalone and --processes 2 (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--topology", action="append", choices=[t.name for t in TOPOLOGIES],
        help="run only this topology (repeatable; overrides --backend)",
    )  # fmt: skip
    parser.add_argument(
        "-j", "--jobs", type=int, default=2 * (os.cpu_count() or 1),
        help="runs at a time (default: twice the CPU count; the users mostly wait, so runs share cores well)",
    )  # fmt: skip
    parser.add_argument("--report", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directories of passed runs too")
    args = parser.parse_args(argv)

    by_name = {s.name: s for s in SCENARIOS}
    unknown = [name for name in args.scenarios if name not in by_name]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    scenarios = [by_name[name] for name in args.scenarios] or list(SCENARIOS)
    if args.topology:
        topologies = [t for t in TOPOLOGIES if t.name in args.topology]
    else:
        topologies = [t for t in TOPOLOGIES if args.backend in ("all", t.backend)]
    # Multi-process runs first: they take longest, so the pool ends with short runs.
    runs = sorted(((s, t) for s in scenarios for t in topologies), key=lambda run: -run[1].processes)

    root = Path(tempfile.mkdtemp(prefix="locust-kv-e2e-"))
    if os.environ.get("E2E_BREAK") == "1":
        print("E2E_BREAK=1: every scenario commits its deliberate bug, so every run should FAIL", flush=True)
    print(f"e2e: {len(runs)} runs ({len(scenarios)} scenarios x {', '.join(t.name for t in topologies)}), "
          f"{args.jobs} at a time, in {root}", flush=True)  # fmt: skip
    started = time.monotonic()
    printing = threading.Lock()
    server = None
    if any(t.backend == "redis" for t in topologies):
        try:
            server = redis_server.start(allow_install=False)
        except redis_server.Skipped as why:
            print(f"e2e: cannot run the redis topologies: {why}", flush=True)
            return 1
    redis_url = f"redis://127.0.0.1:{server.port}/0" if server is not None else None

    def run_and_print(run: tuple[Scenario, Topology]) -> Result:
        result = run_one(*run, root, redis_url)
        if result.passed:
            detail = " ".join(f"{k}={v}" for k, v in result.facts.items() if k != "kv_backend")
        else:
            detail = result.reason
        outcome = "PASS" if result.passed else "FAIL"
        with printing:
            print(f"{outcome}  {result.scenario:<16} {result.topology:<8} {result.seconds:5.1f}s  {detail}", flush=True)
        if not args.keep and result.passed:
            shutil.rmtree(result.workdir, ignore_errors=True)
        return result

    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(run_and_print, runs))
    finally:
        if server is not None:
            server.stop()

    failed = [r for r in results if not r.passed]
    print(f"\ne2e: {len(results) - len(failed)} passed, {len(failed)} failed in {time.monotonic() - started:.1f}s")
    for r in failed:
        print(f"FAILED {r.scenario} [{r.topology}]: {r.reason}\n       log: {r.workdir}/locust.log")
    if args.report:
        Path(args.report).write_text(json.dumps([asdict(r) for r in results], indent=2), encoding="utf-8")
    if not failed and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
