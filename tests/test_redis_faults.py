"""The redis backend under real faults: a server killed, stopped or restarted mid-run, and
processes killed with SIGKILL while they hold a backup or restore lease.

Each test has a redis-server of its own, started and stopped by pid.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from locust_kv import open_kv
from locust_kv.backends.base import Batch
from locust_kv.errors import (
    BackupInProgressError,
    ErrorGroup,
    RestoreInProgressError,
    StoreTimeoutError,
    StoreUnavailableError,
)
from locust_kv.snapshot import write_snapshot

from .conftest import session_redis_url
from .disk_helpers import python_child, run_python
from .redis_helpers import RedisServer

LEASE = 1.0
"""The lease_timeout of these tests, in seconds: short, so that expiry comes soon."""


@pytest.fixture
def server(own_redis_server: RedisServer) -> RedisServer:
    return own_redis_server


def _wait_for(condition, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    """Poll ``condition`` until true; a test failure after ``timeout`` (a bound on hanging, not an assertion on speed)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


# -- the server goes away and comes back -----------------------------------------------------


def test_a_killed_server_raises_store_unavailable_and_the_store_recovers_on_its_return(server: RedisServer) -> None:
    with open_kv(backend="redis", url=server.url, namespace="down", socket_timeout=2.0, connect_timeout=2.0) as kv:
        kv.set("k", 1)
        server.kill()
        for call in (lambda: kv.get("k"), lambda: kv.set("k", 2), lambda: kv.increment_by("n", 1), kv.size, kv.scan):
            with pytest.raises(StoreUnavailableError) as info:
                call()
            assert info.value.group is ErrorGroup.TRANSIENT
            assert info.value.backend == "redis"
        server.launch()  # same port; the data was not persisted
        assert kv.exists("k") is False
        assert kv.increment_by("n", 1) == 1
        kv.set("k", 3)
        assert kv.get("k") == 3


# A Locust-like process: gevent's monkey patching, a hundred greenlets
# incrementing, and a heartbeat greenlet. It reports through its stdout and
# takes orders through files in its directory.
_GREENLETS = """
from gevent import monkey
monkey.patch_all()
import json, os, sys, time
import gevent
from locust_kv import open_kv
from locust_kv.errors import KVError

url, work = sys.argv[1], sys.argv[2]
kv = open_kv(backend="redis", url=url, namespace="greenlets", socket_timeout=0.5, connect_timeout=0.5)
phase = {"name": "before"}
seen = {}
successes = {}
ticks = {}
stop = False

def user(n):
    while not stop:
        try:
            kv.increment_by("hits", 1)
            successes[phase["name"]] = successes.get(phase["name"], 0) + 1
        except KVError as exc:
            seen.setdefault(phase["name"], {})
            seen[phase["name"]][exc.name] = seen[phase["name"]].get(exc.name, 0) + 1
            gevent.sleep(0.01)
        except BaseException as exc:
            seen.setdefault("unexpected", []).append(repr(exc))
            return
        gevent.sleep(0)

def heartbeat():
    while not stop:
        gevent.sleep(0.005)
        ticks[phase["name"]] = ticks.get(phase["name"], 0) + 1

def wait_file(name):
    while not os.path.exists(os.path.join(work, name)):
        gevent.sleep(0.01)

greenlets = [gevent.spawn(user, n) for n in range(100)] + [gevent.spawn(heartbeat)]
gevent.sleep(0.2)
for name in ("down", "stopped", "back"):
    print(name, flush=True)
    wait_file(name)
    phase["name"] = name
    gevent.sleep(1.5)
stop = True
gevent.joinall(greenlets, timeout=30)
print(json.dumps({"seen": seen, "successes": successes, "ticks": ticks, "hits": kv.get("hits")}), flush=True)
"""


def test_a_hundred_greenlets_through_a_killed_a_stopped_and_a_returning_server(server: RedisServer, tmp_path: Path) -> None:
    child = python_child(_GREENLETS.replace("sys.argv[1], sys.argv[2]", f"{server.url!r}, {str(tmp_path)!r}"))
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "down"
        server.kill()
        (tmp_path / "down").touch()
        assert child.stdout.readline().strip() == "stopped"
        server.launch()
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)  # up, but answering nobody
        (tmp_path / "stopped").touch()
        assert child.stdout.readline().strip() == "back"
        os.kill(server.process.pid, signal.SIGCONT)
        (tmp_path / "back").touch()
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    print(report)
    assert "unexpected" not in report["seen"], report
    # Killed: refused connections. Stopped: every call gave up after socket_timeout.
    assert set(report["seen"]["down"]) == {"StoreUnavailableError"}, report
    assert set(report["seen"]["stopped"]) <= {"StoreTimeoutError", "StoreUnavailableError"}, report
    assert report["seen"]["stopped"].get("StoreTimeoutError", 0) > 0, report
    # The hub kept running while calls waited on the stopped server.
    assert report["ticks"]["stopped"] > 0, report
    # Back: the greenlets recovered on their own; the restarted server counts from 0.
    assert report["successes"]["back"] > 0, report
    assert report["hits"] >= report["successes"]["back"]


def test_a_call_waiting_on_a_stopped_server_raises_store_timeout(server: RedisServer) -> None:
    with open_kv(backend="redis", url=server.url, namespace="slow", socket_timeout=0.3) as kv:
        kv.set("k", 1)
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(StoreTimeoutError) as info:
                kv.get("k")
            assert info.value.group is ErrorGroup.TRANSIENT
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert kv.get("k") == 1


# -- a restart during a restore ---------------------------------------------------------------

_RESTORER = """
import sys
from locust_kv import open_kv
kv = open_kv(backend="redis", url=sys.argv[1], namespace="restart", lease_timeout={lease})
try:
    kv.restore(sys.argv[2])
except Exception as exc:
    print(type(exc).__name__, flush=True)
    raise SystemExit(3)
print("restored", flush=True)
"""


def test_a_server_restarted_during_a_restore_keeps_the_old_data_or_the_new_never_a_mix(tmp_path: Path) -> None:
    session_redis_url()
    data = tmp_path / "data"
    data.mkdir()
    server = RedisServer.start(directory=data, extra=("--appendonly", "yes", "--appendfsync", "always"))
    try:
        old = {f"old:{i}": i for i in range(100)}
        with open_kv(backend="redis", url=server.url, namespace="restart", lease_timeout=LEASE) as kv:
            for key, value in old.items():
                kv.set(key, value)
        count = 300_000
        snapshot = tmp_path / "new.kv"
        write_snapshot(
            snapshot,
            ([(b"new:%07d" % i, b"%d" % i) for i in range(start, start + 10_000)] for start in range(0, count, 10_000)),
            "memory",
            "json",
        )
        script = _RESTORER.format(lease=LEASE).replace("sys.argv[1]", repr(server.url)).replace("sys.argv[2]", repr(str(snapshot)))
        child = python_child(script)
        raw = server.client()
        _wait_for(lambda: raw.hlen("lkv:{restart}:staging:data") > 20_000, "the restore to be loading")
        server.kill()  # SIGKILL: the append-only file is what survives
        out, _ = child.communicate(timeout=120)
        server.launch()
        print(f"restorer: {out.strip()}; staged before the kill: at least 20000 of {count}")
        with open_kv(backend="redis", url=server.url, namespace="restart", lease_timeout=LEASE) as kv:
            contents = {e.key: e.value for e in kv.scan().entries}
            assert contents == old, f"restorer said {out.strip()!r}; {len(contents)} keys after the restart"
            assert kv.size() == len(old)
            assert raw.hlen("lkv:{restart}:data") == raw.zcard("lkv:{restart}:index") == len(old)
            # The dead restorer's lease expires; then writers work and a new restore completes whole.
            _wait_for(lambda: _writes(kv), "the restore lease to expire")
            assert kv.restore(snapshot).total_entries == count
            assert kv.size() == count and not kv.exists("old:1")
        assert child.returncode == 3 and out.strip() in {"StoreUnavailableError", "StoreTimeoutError"}, out
    finally:
        server.stop()
        import shutil

        shutil.rmtree(data, ignore_errors=True)


def _writes(kv) -> bool:  # type: ignore[no-untyped-def]
    try:
        kv.set("probe", 1)
    except RestoreInProgressError:
        return False
    kv.delete("probe")
    return True


# -- kill -9 of a lease holder -----------------------------------------------------------------

_HOLDER = """
import os, sys, time
from locust_kv import open_kv
kv = open_kv(backend="redis", url={url!r}, namespace="lease", lease_timeout={lease})
backend = kv._store.backend
if {what!r} == "restore":
    def batches():
        yield [(b"staged:1", b"1"), (b"staged:2", b"2")], None
        print("holding", flush=True)
        time.sleep(3600)
    backend.replace_all(batches())
else:
    reader = backend.begin_backup(False)
    pages = reader.batches(1)
    next(pages)
    print("holding", flush=True)
    time.sleep(3600)
"""


@pytest.mark.parametrize("what", ["restore", "backup"])
def test_the_lease_of_a_process_killed_with_sigkill_expires(server: RedisServer, tmp_path: Path, what: str) -> None:
    with open_kv(backend="redis", url=server.url, namespace="lease", lease_timeout=LEASE) as kv:
        kv.set("a", 1)
        kv.set("b", 2)
        holder = python_child(_HOLDER.format(url=server.url, lease=LEASE, what=what))
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        if what == "restore":
            with pytest.raises(RestoreInProgressError):
                kv.set("c", 3)  # the lease outlives its holder for a while...
            _wait_for(lambda: _writes(kv), "the restore lease to expire")  # ...then expires
            assert {e.key for e in kv.scan().entries} == {"a", "b"}  # nothing of the dead restore
            kv.backup(tmp_path / "after.kv")
            assert kv.restore(tmp_path / "after.kv").total_entries == 2
        else:
            kv.set("c", 3)  # writers never wait for a backup
            with pytest.raises(BackupInProgressError):
                kv.backup(tmp_path / "during.kv")
            _wait_for(lambda: _backs_up(kv, tmp_path / "after.kv"), "the backup lease to expire")
            assert kv.clear() is True
            assert kv.restore(tmp_path / "after.kv").total_entries == 3
            assert {e.key for e in kv.scan().entries} == {"a", "b", "c"}


def _backs_up(kv, path: Path) -> bool:  # type: ignore[no-untyped-def]
    try:
        kv.backup(path)
    except BackupInProgressError:
        return False
    return True


# -- leases are renewed by the work, and lost by a stall ------------------------------------------


def _slow_batches(count: int, pause_seconds: float) -> Iterator[Batch]:
    for n in range(count):
        yield [(b"slow:%04d" % n, b"%d" % n)], None
        time.sleep(pause_seconds)


def test_a_restore_outliving_its_lease_timeout_keeps_the_lease_by_renewing_it(server: RedisServer) -> None:
    with open_kv(backend="redis", url=server.url, namespace="renew", lease_timeout=2.0) as kv:
        backend = kv._store.backend  # type: ignore[attr-defined]
        # 16 batches 0.25 s apart: twice the lease in all, each gap far inside it.
        assert backend.replace_all(_slow_batches(16, 0.25)) == 16
        assert kv.size() == 16


def test_a_restore_that_stalls_past_its_lease_stops_and_changes_nothing(server: RedisServer) -> None:
    from locust_kv.errors import StoreWriteError

    with open_kv(backend="redis", url=server.url, namespace="stall", lease_timeout=0.2) as kv:
        kv.set("old", 1)
        backend = kv._store.backend  # type: ignore[attr-defined]
        with pytest.raises(StoreWriteError) as info:
            backend.replace_all(_slow_batches(3, 1.0))  # a gap five times the lease
        assert "lease expired" in str(info.value)
        assert {e.key for e in kv.scan().entries} == {"old"}
        kv.set("after", 2)  # nobody holds the lease


# Greenlets killed while their calls wait for the server, as Locust kills its
# users at the end of a test: every operation the server applied must have
# been seen by its caller (the kill lands after the reply is read).
_KILLED_MID_CALL = """
from gevent import monkey
monkey.patch_all()
import json, sys
import gevent
from locust_kv import open_kv

kv = open_kv(backend="redis", url=sys.argv[1], namespace="killed-mid-call")
kv.clear()
acked = {}
deaths = {}

def user(n):
    # A task of two calls, then a pause outside the store, as a Locust user waits between tasks;
    # the odd users only ever call the store: a kill must still end them (within a second).
    try:
        while True:
            kv.increment_by("hits", 1)
            acked[n] = acked.get(n, 0) + 1
            kv.set(f"tally:{n:03d}", acked[n])
            if n % 2 == 0:
                gevent.sleep(0)
    except gevent.GreenletExit:
        deaths[n] = True
        raise

users = [gevent.spawn(user, n) for n in range(50)]
for round in range(20):
    gevent.sleep(0.02)
    victim = users[round % len(users)]
    victim.kill(block=False)
gevent.sleep(0.05)
gevent.killall(users, block=True)
tallies = {int(e.key.split(":")[1]): e.value for e in kv.list("tally:")}
print(json.dumps({"hits": kv.get("hits"), "acked": sum(acked.values()), "deaths": len(deaths),
                  "tallies_match": all(tallies.get(n, 0) == count for n, count in acked.items() if n % 2 == 0)}))
"""


def test_greenlets_killed_mid_call_see_every_operation_the_server_applied(server: RedisServer) -> None:
    out = run_python(_KILLED_MID_CALL.replace("sys.argv[1]", repr(server.url)), timeout=120)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["deaths"] == 50  # every kill was delivered, after its reply
    assert result["hits"] == result["acked"]  # no increment applied without its caller seeing it
    assert result["tallies_match"]  # users that pause between tasks finish the task they were in
