"""A master and two workers on separate "hosts": each worker in a mount namespace of its own.

Each worker runs under ``unshare --mount`` with a fresh tmpfs mounted over the
directory that holds the master's disk store, so it sees the same path but not
the same file, exactly as a worker on another machine would. Master-worker
traffic stays on 127.0.0.1.

- With the disk backend (host-scoped) the run must be refused: each worker
  finds a store without the master's run token, logs StoreNotSharedError,
  runs no user, and every process exits non-zero. Before the run token, such
  a run handed out order ids twice and exited 0.
- With the redis backend (a real redis-server on a free loopback port, which
  both "hosts" reach), the same run passes: order ids unique across workers,
  the pool restored on the master visible to every worker, ``after_load`` on
  the master sees every worker's writes, counters exact.

Needs root and ``unshare`` (util-linux); without them the tests skip, and fail
when the ``CI`` environment variable is set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .plugin_helpers import clean_environment, describe, finish, free_port, locust_command, start_locust
from .test_plugin_runs import make_snapshot

ACCOUNTS = 300
USERS = 20


def _missing() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    if os.geteuid() != 0:
        return "mount namespaces need root"
    return None


@pytest.fixture(autouse=True)
def _separate_hosts_possible() -> None:
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def _worker_on_its_own_host(
    store_dir: Path, port: int, cwd: Path, env: dict[str, str], mount: str
) -> subprocess.Popen[str]:
    """A worker whose filesystem differs from the master's where the store lives (tmpfs ``mount`` options)."""
    command = locust_command("multihost.py", "--worker", "--master-host", "127.0.0.1", "--master-port", str(port))
    wrapped = [
        "unshare", "--mount", "--propagation", "private",
        "sh", "-c", f'mount -t tmpfs -o {mount} tmpfs "$1" && shift && exec "$@"', "sh", str(store_dir), *command,
    ]  # fmt: skip
    return subprocess.Popen(
        wrapped, cwd=cwd, env=clean_environment(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _run(tmp_path: Path, backend_args: list[str], mount: str = "size=64m") -> tuple[list, Path]:  # type: ignore[type-arg]
    out = tmp_path / "out"
    out.mkdir()
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    seed = make_snapshot(tmp_path / "accounts.snapshot", {f"account:{i:04d}": {"n": i} for i in range(ACCOUNTS)})
    port = free_port()
    env = {"KV_TEST_OUT": str(out)}
    master = start_locust(
        "multihost.py", "--master", "--headless", "-u", str(USERS), "-r", str(USERS), "-t", "4s",
        "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port), "--expect-workers", "2",
        "--stop-timeout", "5", "--kv-restore-from", str(seed), *backend_args,
        cwd=tmp_path, env=env,
    )  # fmt: skip
    elsewhere = tmp_path / "workers"
    elsewhere.mkdir()
    workers = [_worker_on_its_own_host(store_dir, port, elsewhere, env, mount) for _ in range(2)]
    return finish([master, *workers]), out


def _user_rows(out: Path) -> list[dict[str, object]]:
    rows = []
    for path in out.glob("user-*.jsonl"):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line]
    return rows


@pytest.mark.parametrize(
    ("mount", "why"),
    [("size=64m", "it is not the store the master prepared"), ("ro,size=1m", "cannot open the master's store")],
    ids=["another-file", "cannot-open"],
)
def test_a_host_scoped_store_is_refused_when_workers_cannot_see_it(tmp_path: Path, mount: str, why: str) -> None:
    results, out = _run(tmp_path, ["--kv-path", str(tmp_path / "store" / "kv.lmdb")], mount)
    master, *workers = results
    assert master.returncode != 0, describe(*results)
    for worker in workers:
        assert worker.returncode != 0, describe(worker)
        refusal = worker.lines_with("StoreNotSharedError")
        assert refusal, describe(worker)
        assert "--kv-backend redis" in refusal[0] and why in refusal[0], refusal[0]
        assert not worker.lines_with("using the master's store"), describe(worker)
    assert master.lines_with("refused the run"), describe(master)
    # No worker user took an order id from a store that was not the master's.
    assert _user_rows(out) == []


def test_a_redis_store_is_shared_by_workers_on_other_hosts(tmp_path: Path) -> None:
    from .conftest import require_redis_server
    from .redis_helpers import RedisServer

    require_redis_server()
    server = RedisServer.start()
    try:
        results, out = _run(tmp_path, ["--kv-backend", "redis", "--kv-redis-url", server.url, "--kv-namespace", "multihost"])
    finally:
        server.stop()
    master, *workers = results
    assert [r.returncode for r in results] == [0, 0, 0], describe(*results)
    for worker in workers:
        assert worker.lines_with("using the master's store"), describe(worker)
    rows = _user_rows(out)
    assert rows, describe(*results)
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)), "an order id was handed out twice"
    assert not [row for row in rows if row["duplicate"]], "an order id was claimed twice"
    assert sorted(ids) == list(range(1, len(ids) + 1)), "order ids are not contiguous"
    assert all(str(row["account"]).startswith("account:") for row in rows), "a worker did not see the restored pool"
    pids = {path.name.split("-")[1] for path in out.glob("user-*.jsonl")}
    assert len(pids) == 2, f"users ran in {pids}: both workers must have run users"
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict == {"orders_next": len(ids), "tasks": len(ids), "orders": len(ids), "accounts": ACCOUNTS}
