"""What only the redis backend has: its options, secrets kept out of sight, the script cache,
the error table, the counter grammar at its edges, and copy-on-write backups.

Everything runs against real redis-server processes started by the tests.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis import exceptions as rx
from redis.crc import key_slot

from locust_kv import KV, open_kv
from locust_kv.backends.base import apply_increment
from locust_kv.backends.redis import configure
from locust_kv.backends.redis.errors import BY_OPERATION, REDIS_ERRORS, map_redis_error
from locust_kv.errors import (
    BackupInProgressError,
    InvalidOptionsError,
    KVError,
    StoreFullError,
    StoreOpenError,
    StoreReadError,
    StoreTimeoutError,
    StoreUnavailableError,
    StoreWriteError,
    ValueParseError,
)

from .conftest import session_redis_url, store_options
from .redis_helpers import RedisServer

PASSWORD = "s3cret-Pa55word"


@pytest.fixture
def redis_kv(tmp_path: Path) -> Iterator[KV]:
    kv = open_kv(**store_options("redis", tmp_path))
    yield kv
    kv.close()


@pytest.fixture
def own_server(own_redis_server: RedisServer) -> RedisServer:
    return own_redis_server


# -- options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"url": 6379},
        {"url": "http://127.0.0.1:6379"},
        {"url": "redis://127.0.0.1:notaport/0"},
        {"url": "redis://127.0.0.1:6379/db"},
        {"url": "redis://"},
        {"namespace": ""},
        {"namespace": "a{b"},
        {"namespace": "x" * 129},
        {"namespace": 3},
        {"track_keys": "yes"},
        {"socket_timeout": 0},
        {"socket_timeout": "5"},
        {"connect_timeout": float("inf")},
        {"lease_timeout": True},
        {"lease_timeout": -1.0},
        {"max_connections": 0},
        {"max_connections": 2.0},
        {"path": "/tmp/x"},
        {"unknown": 1},
    ],
)
def test_invalid_options_are_refused_before_any_connection(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidOptionsError):
        open_kv(backend="redis", **options)


def test_a_bad_url_is_refused_without_repeating_it() -> None:
    with pytest.raises(InvalidOptionsError) as info:
        open_kv(backend="redis", url=f"redis://:{PASSWORD}@127.0.0.1:notaport/0")
    assert PASSWORD not in str(info.value)


def test_the_spec_describes_the_store_without_the_password() -> None:
    spec = configure(url=f"redis://user:{PASSWORD}@db.example:6390/3?password={PASSWORD}", namespace="shop")
    assert spec.kind == "redis" and spec.scope == "network"
    assert spec.identity == ("redis", "redis://user@db.example:6390/3", "shop")
    assert spec.describe()["url"] == "redis://user@db.example:6390/3"
    for text in (repr(spec), str(spec.identity), str(spec.describe()), spec.location):
        assert PASSWORD not in text
    assert spec.track_keys is True and spec.socket_timeout == 5.0 and spec.lease_timeout == 30.0


def test_a_password_protected_server(own_server: RedisServer, tmp_path: Path) -> None:
    own_server.client().config_set("requirepass", PASSWORD)
    good = f"redis://:{PASSWORD}@127.0.0.1:{own_server.port}/0"
    with pytest.raises(StoreOpenError) as info:
        open_kv(backend="redis", url=f"redis://:wrong-{PASSWORD}@127.0.0.1:{own_server.port}/0")
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)
    with pytest.raises(StoreOpenError):
        open_kv(backend="redis", url=own_server.url)  # no password at all
    with open_kv(backend="redis", url=good) as kv:
        kv.set("k", 1)
        assert kv.get("k") == 1
        for text in (repr(kv), kv.location, str(kv.options)):
            assert PASSWORD not in text
        # The server going away: the error names the server, never the password.
        own_server.kill()
        with pytest.raises(StoreUnavailableError) as down:
            kv.get("k")
        assert PASSWORD not in str(down.value)


def test_a_database_the_server_lacks_is_store_open_error() -> None:
    url = session_redis_url().rsplit("/", 1)[0] + "/99"
    with pytest.raises(StoreOpenError) as info:
        open_kv(backend="redis", url=url)
    assert "DB index" in str(info.value)


def test_an_unreachable_server_is_store_unavailable_at_open() -> None:
    from .redis_helpers import free_port

    with pytest.raises(StoreUnavailableError):
        open_kv(backend="redis", url=f"redis://127.0.0.1:{free_port()}/0", connect_timeout=1.0)


def test_track_keys_is_accepted_and_has_no_effect(tmp_path: Path) -> None:
    options = store_options("redis", tmp_path)
    with open_kv(**options, track_keys=False) as kv:
        kv.set("a", 1)
        assert kv.random_key() == "a"
        assert kv.options["track_keys"] is False


def test_namespaces_are_separate_stores(tmp_path: Path) -> None:
    with open_kv(**store_options("redis", tmp_path, "a")) as a, open_kv(**store_options("redis", tmp_path, "b")) as b:
        a.set("k", 1)
        assert not b.exists("k")
        b.clear()
        assert a.get("k") == 1


def test_every_key_of_a_store_is_under_its_hash_tag(redis_kv: KV, tmp_path: Path) -> None:
    from locust_kv.store import write_marker

    redis_kv.set("k", 1)
    write_marker(redis_kv, "run", "token")
    reader = redis_kv._store.backend.begin_backup(False)  # type: ignore[attr-defined]
    redis_kv.set("k", 2)  # preserved for the backup
    namespace = store_options("redis", tmp_path)["namespace"]
    client = redis.Redis.from_url(session_redis_url())
    names = sorted(name.decode() for name in client.scan_iter(match=f"*{namespace}*"))
    reader.close()
    assert names and all(name.startswith(f"lkv:{{{namespace}}}:") for name in names), names
    assert len({key_slot(name.encode()) for name in names}) == 1  # one Cluster slot


# -- the script cache ---------------------------------------------------------------------


def test_operations_survive_a_flushed_script_cache(redis_kv: KV, tmp_path: Path) -> None:
    """After SCRIPT FLUSH (or a server restart) EVALSHA answers NOSCRIPT; redis-py reloads the script."""
    redis_kv.set("k", 1)
    redis.Redis.from_url(session_redis_url()).script_flush()
    assert redis_kv.increment_by("k", 1) == 2
    assert redis_kv.scan().entries[0].key == "k"
    assert redis_kv.random_key() == "k"
    redis_kv.backup(tmp_path / "s.kv")
    redis.Redis.from_url(session_redis_url()).script_flush()
    assert redis_kv.restore(tmp_path / "s.kv").total_entries == 1
    assert redis_kv.get("k") == 2


# -- the error table ----------------------------------------------------------------------


def _redis_exception_classes() -> list[type[BaseException]]:
    return sorted(
        (cls for _, cls in inspect.getmembers(rx, inspect.isclass) if issubclass(cls, BaseException) and cls.__module__ == rx.__name__),
        key=lambda cls: cls.__name__,
    )


@pytest.mark.parametrize("cls", _redis_exception_classes(), ids=lambda cls: cls.__name__)
def test_every_redis_exception_class_has_its_own_row(cls: type[BaseException]) -> None:
    assert cls in REDIS_ERRORS, f"redis.exceptions.{cls.__name__} has no row in REDIS_ERRORS"
    target = REDIS_ERRORS[cls]
    assert target is BY_OPERATION or issubclass(target, KVError)


@pytest.mark.parametrize(
    ("exc", "writing", "expected"),
    [
        (rx.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."), False, StoreUnavailableError),
        (rx.TimeoutError("Timeout reading from socket"), True, StoreTimeoutError),
        (rx.BusyLoadingError("Redis is loading the dataset in memory"), False, StoreUnavailableError),
        (rx.AuthenticationError("invalid username-password pair"), False, StoreOpenError),
        (rx.AuthorizationError("no permission"), True, StoreOpenError),
        (rx.ReadOnlyError("You can't write against a read only replica."), True, StoreOpenError),
        (rx.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'."), True, StoreFullError),
        (rx.ResponseError("OOM command not allowed when used memory > 'maxmemory'. script: abc"), True, StoreFullError),
        (rx.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), False, StoreReadError),
        (rx.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), True, StoreWriteError),
        (rx.ResponseError("LKV_PARSE stored value is not an integer counter"), True, ValueParseError),
        (rx.RedisError("something new"), False, StoreReadError),
    ],
)
def test_redis_errors_map_to_the_catalogue(exc: Exception, writing: bool, expected: type[KVError]) -> None:
    error = map_redis_error(exc, writing, PASSWORD)
    assert type(error) is expected


def test_the_password_is_scrubbed_from_server_text() -> None:
    error = map_redis_error(rx.ConnectionError(f"cannot reach redis://:{PASSWORD}@host"), False, PASSWORD)
    assert PASSWORD not in str(error)


def test_a_read_only_replica_refuses_writes_with_store_open_error(own_server: RedisServer) -> None:
    replica = RedisServer.start(extra=("--replicaof", "127.0.0.1", str(own_server.port)))
    try:
        with open_kv(backend="redis", url=replica.url, namespace="replica") as kv:
            assert kv.size() == 0  # reads work
            with pytest.raises(StoreOpenError) as info:
                kv.set("customer:4711:token", 1)
            assert "ReadOnlyError" in str(info.value) or "read only" in str(info.value)
            assert info.value.operation == "set" and info.value.key == "customer:4711:token"
            assert "customer:4711" not in str(info.value) and "customer:4711" not in repr(info.value)
    finally:
        replica.stop()


# -- the namespace's layout marker --------------------------------------------------------


def test_an_open_marks_the_namespace_with_its_layout_and_clear_and_restore_keep_it(
    redis_kv: KV, tmp_path: Path
) -> None:
    from locust_kv.backends.redis.backend import LAYOUT

    layout = f"lkv:{{{store_options('redis', tmp_path)['namespace']}}}:layout"
    client = redis.Redis.from_url(session_redis_url())
    assert client.get(layout) == LAYOUT == b"1"
    redis_kv.set("k", 1)
    snapshot = tmp_path / "s.kvsnap"
    redis_kv.backup(snapshot)
    redis_kv.clear()
    assert client.get(layout) == LAYOUT
    redis_kv.restore(snapshot)
    assert client.get(layout) == LAYOUT and redis_kv.get("k") == 1


@pytest.mark.parametrize("marked", [b"2", b"0", b"layout"])
def test_a_namespace_of_another_layout_is_refused_at_open_and_left_alone(marked: bytes, tmp_path: Path) -> None:
    options = store_options("redis", tmp_path)
    prefix = f"lkv:{{{options['namespace']}}}:"
    client = redis.Redis.from_url(session_redis_url())
    client.set(prefix + "layout", marked)
    with pytest.raises(StoreOpenError) as info:
        open_kv(**options)
    assert f"its namespace has layout {marked!r}" in str(info.value)
    assert "run the same release on every process of a namespace" in str(info.value)
    assert sorted(client.scan_iter(match=prefix + "*")) == [(prefix + "layout").encode()]  # nothing written
    assert client.get(prefix + "layout") == marked


def test_a_namespace_made_before_the_marker_is_marked_by_its_next_open(tmp_path: Path) -> None:
    options = store_options("redis", tmp_path)
    layout = f"lkv:{{{options['namespace']}}}:layout"
    client = redis.Redis.from_url(session_redis_url())
    with open_kv(**options) as kv:
        kv.set("k", {"v": 1}, ttl=600)
    client.delete(layout)  # as a release before the marker left it
    with open_kv(**options) as kv:
        assert client.get(layout) == b"1"
        assert kv.get("k") == {"v": 1} and 0 < kv.ttl("k") <= 600


def test_a_replica_reads_a_namespace_by_its_marker(own_server: RedisServer) -> None:
    primary = own_server.client()
    primary.set("lkv:{newer}:layout", b"2")
    with open_kv(backend="redis", url=own_server.url, namespace="current") as kv:
        kv.set("k", 1)
    with open_kv(backend="redis", url=own_server.url, namespace="unmarked") as kv:
        kv.set("k", 2)
    primary.delete("lkv:{unmarked}:layout")  # as a release before the marker left it
    replica = RedisServer.start(extra=("--replicaof", "127.0.0.1", str(own_server.port)))
    try:
        names = ("lkv:{current}:layout", "lkv:{newer}:layout", "lkv:{unmarked}:data")
        for _ in range(400):
            if replica.client().exists(*names) == len(names):
                break
            time.sleep(0.05)
        with open_kv(backend="redis", url=replica.url, namespace="current") as kv:
            assert kv.get("k") == 1
        with open_kv(backend="redis", url=replica.url, namespace="unmarked") as kv:
            assert kv.get("k") == 2  # a replica cannot mark it, and reads it as this layout
        with pytest.raises(StoreOpenError, match="its namespace has layout b'2'"):
            open_kv(backend="redis", url=replica.url, namespace="newer")
        assert not replica.client().exists("lkv:{unmarked}:layout")
    finally:
        replica.stop()


def test_a_server_at_maxmemory_raises_store_full_and_deletes_still_work(own_server: RedisServer) -> None:
    own_server.client().config_set("maxmemory", "4mb")
    own_server.client().config_set("maxmemory-policy", "noeviction")
    with open_kv(backend="redis", url=own_server.url, namespace="full", serialization="string") as kv:
        with pytest.raises(StoreFullError):
            for i in range(1_000):
                kv.set(f"big:{i}", "x" * 100_000)
        assert kv.size() > 0
        assert kv.delete_if_exists("big:0") is True


# -- increment_by at the edges ------------------------------------------------------------


EDGE_COUNTERS: list[tuple[bytes | None, int]] = [
    (None, 2**63 - 1),
    (None, -(2**63)),
    (None, 2**63),
    (b"9223372036854775807", 1),
    (b"-9223372036854775808", -1),
    (b"-9223372036854775808", 2**64 - 1),
    (b"9223372036854775807", -(2**64) + 1),
    (b"9223372036854775807", -(2**64)),
    (b"9999999999999999999", -(2**63)),  # stored beyond int64, brought back into range
    (b"1" + b"0" * 40, -(10**40)),
    (b"0000000000000000000000041", 1),
    (b"-0", 0),
    (b"-0", -5),
    (b'"41"', 1),
    (b'"-0"', 3),
    (b'"007"', -7),
    (b"-00", 1),
    (b'""', 1),
    (b'"', 1),
    (b"-", 1),
    (b"--1", 1),
    (b"+1", 1),
    (b"1 ", 1),
    (b"\xd9\xa1", 1),  # an Arabic-Indic digit: not ASCII
    (b"12a", 1),
    (b"5", 2**70),
    (b"5", -(2**2000)),
    # Around the script's exact-number path (both at most 14 digits) and its edge.
    (b"99999999999999", 99999999999999),
    (b"-99999999999999", -99999999999999),
    (b"99999999999999", -99999999999999),
    (b"-00000000000000099999999999999", 1),
    (b"100000000000000", -1),
    (b"-1", 100000000000000),
    (b"-5", 5),
    (b"-0", 0),
    (b"9007199254740991", 1),
    (b"9007199254740992", 1),
]


@pytest.mark.parametrize(("stored", "delta"), EDGE_COUNTERS)
def test_increment_follows_apply_increment_exactly(redis_kv: KV, stored: bytes | None, delta: int) -> None:
    backend = redis_kv._store.backend  # type: ignore[attr-defined]
    if stored is not None:
        backend.set(b"c", stored)
    try:
        expected: int | type[KVError] = apply_increment(stored, delta)[0]
    except ValueParseError:
        expected = ValueParseError
    if expected is ValueParseError:
        with pytest.raises(ValueParseError):
            backend.increment_by(b"c", delta)
        assert backend.get(b"c") == stored  # nothing written
    else:
        assert backend.increment_by(b"c", delta) == expected
        assert backend.get(b"c") == b"%d" % expected  # type: ignore[str-format]
    assert backend.size() == (0 if stored is None and expected is ValueParseError else 1)


# -- backups: copy on write ---------------------------------------------------------------


def test_a_backup_reads_the_moment_it_began_while_writers_change_every_kind_of_key(redis_kv: KV) -> None:
    backend = redis_kv._store.backend  # type: ignore[attr-defined]
    before = {b"k%02d" % i: b"%d" % i for i in range(20)}
    for key, value in before.items():
        backend.set(key, value)
    reader = backend.begin_backup(False)
    pages = reader.batches(4)
    read = list(next(pages)[0])
    assert [k for k, _ in read] == [b"k00", b"k01", b"k02", b"k03"]
    # Already read, not yet read, deleted, created, recreated, counted: the backup sees none of it.
    backend.set(b"k01", b"changed-after-read")
    backend.set(b"k10", b"changed")
    backend.delete(b"k11")
    assert backend.compare_and_delete(b"k12", b"12")
    backend.set(b"k055", b"created")
    backend.delete(b"k13")
    backend.set(b"k13", b"recreated")
    backend.increment_by(b"k14", 1000)
    backend.swap(b"k15", b"swapped")
    backend.get_or_set(b"k16x", b"new")
    assert backend.compare_and_swap(b"k17", b"17", b"cas")
    assert backend.compare_and_swap(b"zz", None, b"absent-then-set")
    for page, _ in pages:
        read.extend(page)
        backend.set(b"k19", b"late change")
        backend.delete(b"k18")
    reader.close()
    assert dict(read) == before and [k for k, _ in read] == sorted(before)
    assert backend.get(b"k10") == b"changed" and backend.get(b"k14") == b"1014"
    assert backend.size() == 20 - 3 + 3  # k11, k12, k18 gone; k055, k16x, zz new


def test_a_backup_with_every_key_deleted_under_it_still_reads_them_all(redis_kv: KV) -> None:
    backend = redis_kv._store.backend  # type: ignore[attr-defined]
    before = {b"d%04d" % i: b"v" for i in range(2_500)}
    for key, value in before.items():
        backend.set(key, value)
    reader = backend.begin_backup(True)
    for key in before:
        backend.delete(key)
    read = [row for page, _ in reader.batches(1_000) for row in page]
    reader.close()
    assert dict(read) == before and backend.size() == 0


def test_clear_waits_for_a_running_backup(redis_kv: KV) -> None:
    redis_kv.set("k", 1)
    reader = redis_kv._store.backend.begin_backup(True)  # type: ignore[attr-defined]
    with pytest.raises(BackupInProgressError):
        redis_kv.clear()
    reader.close()
    assert redis_kv.clear() is True and redis_kv.size() == 0


def test_every_byte_survives_scan_backup_and_restore(redis_kv: KV, tmp_path: Path) -> None:
    """Pages and restore batches travel as MessagePack: values of any bytes, keys of any UTF-8."""
    backend = redis_kv._store.backend  # type: ignore[attr-defined]
    rows = {f"k:{i:03d}:é\x00🙂".encode(): bytes(range(i, 256)) + bytes(range(i)) for i in range(256)}
    rows[b"k:empty"] = b""
    backend.replace_all(iter([(sorted(rows.items()), None)]))
    assert dict(backend.scan(b"k:", b"k;", 0, 0)[0]) == rows
    reader = backend.begin_backup(False)
    assert dict(row for page, _ in reader.batches(100) for row in page) == rows
    reader.close()


@pytest.mark.parametrize(("ci", "outcome"), [("", "1 skipped"), ("1", "1 failed")])
def test_without_redis_server_the_tests_skip_or_fail_under_ci(ci: str, outcome: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, LOCUST_KV_REDIS_SERVER=str(tmp_path / "no-redis-server"), CI=ci, PYTHONPATH=str(root))
    env.pop("LOCUST_KV_TEST_REDIS_URL", None)  # a session of its own, without a server
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "tests/test_redis_backend.py", "-k", "namespaces_are_separate"],
        check=False, cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert outcome in run.stdout, run.stdout
    assert "redis-server is not installed" in run.stdout


@pytest.mark.parametrize(
    ("version", "accepted"),
    [("6.2.0", True), ("7.0.15", True), ("10.1.0", True), ("6.0.16", False), ("5.0.7", False), ("", False), ("x.y", False)],
)
def test_servers_older_than_6_2_are_refused(version: str, accepted: bool) -> None:
    from locust_kv.backends.redis.backend import _new_enough

    assert _new_enough(version) is accepted
