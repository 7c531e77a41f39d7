"""Fixtures shared by the test suite.

``kv`` is parametrized over every backend, so each contract test runs against
each; a backend joins the suite by being listed in ``BACKENDS``.

The redis backend's tests use a real ``redis-server`` that this module starts
on a free loopback port (one for the session, stopped at its end), each test
in a namespace of its own. Without the binary they skip, saying why; with the
``CI`` environment variable set they fail instead.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from locust_kv import KV, open_kv

from .redis_helpers import RedisServer, redis_missing_reason

BACKENDS = ["memory", "disk", "redis"]

_redis_server: RedisServer | None = None


_SESSION_URL = "LOCUST_KV_TEST_REDIS_URL"
"""Environment variable holding the session server's URL, so that child
processes of a test (which import this module) use it instead of starting
servers that nobody would stop."""


def require_redis_server() -> None:
    """Skip the calling test when redis-server is not installed; under CI, fail it instead."""
    reason = redis_missing_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server of the test's own, for faults and settings the shared one must not suffer."""
    require_redis_server()
    server = RedisServer.start()
    yield server
    server.stop()


def session_redis_url() -> str:
    """The URL of the session's redis-server, started on first use; skips (fails under CI) without the binary."""
    global _redis_server
    require_redis_server()
    inherited = os.environ.get(_SESSION_URL)
    if inherited:
        return inherited
    if _redis_server is None:
        _redis_server = RedisServer.start()
        os.environ[_SESSION_URL] = _redis_server.url
    return _redis_server.url


def pytest_report_header(config: pytest.Config) -> str:
    """The free space where the tests make their stores: disk stores allocate their maps, and a full disk fails many tests at once."""
    place = tempfile.gettempdir()
    stat = os.statvfs(place)
    return f"free disk space in {place}: {stat.f_bavail * stat.f_frsize / (1 << 30):.1f} GiB"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _redis_server
    if _redis_server is not None:
        _redis_server.stop()
        _redis_server = None
        os.environ.pop(_SESSION_URL, None)


_TEST_TOKEN = "LOCUST_KV_TEST_TOKEN"
"""Environment variable holding a token drawn for each test, which names its
memory stores and redis namespaces (a child process of the test inherits it)."""


@pytest.fixture(autouse=True)
def _test_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Draw the test's token: the stores that store_options names belong to this test alone.

    A test's ``tmp_path`` is not enough to tell tests apart: the directory of
    a passing test is deleted when it ends (tmp_path_retention_policy), and
    pytest 9.0.3 (which CI installed; 9.2.0 counts instead) numbers the next
    directory of the same name prefix after the ones that exist, so
    parametrized tests got the same path one after the other. A disk store
    went with its directory; a redis namespace outlives it, and one test
    found the keys of the one before.
    """
    monkeypatch.setenv(_TEST_TOKEN, uuid.uuid4().hex)


def store_options(backend: str, place: Path, name: str = "store") -> dict[str, Any]:
    """``open_kv`` options for a store of ``backend`` of its own, named ``name`` under ``place``.

    ``place`` is a temporary directory of the test; in one test (and in its
    child processes) the same arguments name the same store, different ones
    different stores, on every backend, and no two tests share a store.
    """
    if backend == "disk":
        return {"backend": "disk", "path": str(place / f"{name}.lmdb")}
    token = os.environ.get(_TEST_TOKEN, "")
    if backend == "memory":
        return {"backend": "memory", "name": f"{place}/{name}/{token}"}
    if backend == "redis":
        # A namespace of its own per test, place and name: tests share one server, never a store.
        digest = hashlib.sha1(f"{token}/{place}/{name}".encode()).hexdigest()[:16]
        return {"backend": "redis", "url": session_redis_url(), "namespace": f"test-{digest}"}
    raise ValueError(f"no test options for backend {backend!r}")


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def open_store(backend_name: str, tmp_path: Path) -> Iterator[Callable[..., KV]]:
    """Open a store on the test's backend (a fresh file under tmp_path for disk); closed after the test."""
    handles: list[KV] = []

    def opener(**options: Any) -> KV:
        backend = options.setdefault("backend", backend_name)
        for option, value in store_options(backend, tmp_path).items():
            options.setdefault(option, value)
        handle = open_kv(**options)
        handles.append(handle)
        return handle

    yield opener
    for handle in handles:
        handle.close()


@pytest.fixture
def kv(open_store: Callable[..., KV]) -> KV:
    """A json store on the test's backend."""
    return open_store()


@pytest.fixture
def kv_string(open_store: Callable[..., KV]) -> KV:
    """A string store on the test's backend."""
    return open_store(serialization="string")
