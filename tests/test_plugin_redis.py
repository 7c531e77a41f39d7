"""The plugin on the redis backend, in real headless ``locust`` processes against a real redis-server.

- A run with ``--kv-processes 2`` shares one Redis store: exact counters, the
  backup after every user stopped.
- The password in ``--kv-redis-url`` (or ``LOCUST_KV_REDIS_URL``) appears in no
  log line of any process.
- An option of another backend (``--kv-path`` with redis) stops the run with
  the catalogued name before the load.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from locust_kv import open_kv

from .plugin_helpers import describe, read_values, run_locust
from .conftest import require_redis_server
from .redis_helpers import RedisServer
from .test_plugin_runs import HEADLESS, assert_exact, snapshot_entries

PASSWORD = "s3cr3t-pw-for-the-test"


@pytest.fixture
def server() -> Iterator[RedisServer]:
    require_redis_server()
    started = RedisServer.start(extra=("--requirepass", PASSWORD))
    try:
        yield started
    finally:
        started.stop()


def _url(server: RedisServer) -> str:
    return f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"


@pytest.fixture
def out(tmp_path: Path) -> Path:
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


def test_processes_share_one_redis_store_and_the_password_is_never_logged(
    server: RedisServer, tmp_path: Path, out: Path
) -> None:
    backup = tmp_path / "after.snapshot"
    result = run_locust(
        "counters.py", *HEADLESS, "--processes", "2", "--kv-backend", "redis", "--kv-namespace", "plugin-run",
        "--kv-clear", "--kv-backup-to", str(backup), "--loglevel", "DEBUG",
        cwd=tmp_path, env={"KV_TEST_OUT": str(out), "LOCUST_KV_REDIS_URL": _url(server)},
    )  # fmt: skip
    assert result.returncode == 0, describe(result)
    assert PASSWORD not in result.output
    assert result.lines_with("using the master's store"), describe(result)
    with open_kv(backend="redis", url=_url(server), namespace="plugin-run") as kv:
        final = kv.get("hits")
    assert_exact(read_values(out), start=0, processes=2, final=final)
    assert snapshot_entries(backup)["hits"] == final  # the backup waited for every worker's users


def test_an_option_of_another_backend_stops_the_run(server: RedisServer, tmp_path: Path, out: Path) -> None:
    result = run_locust(
        "counters.py", *HEADLESS, "--kv-backend", "redis", "--kv-redis-url", _url(server), "--kv-path", "x.lmdb",
        cwd=tmp_path, env={"KV_TEST_OUT": str(out)},
    )  # fmt: skip
    assert result.returncode == 1, describe(result)
    assert result.lines_with("InvalidOptionsError"), describe(result)
    assert PASSWORD not in result.output
    assert not (tmp_path / "x.lmdb").exists()
