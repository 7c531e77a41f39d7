"""The named-lock contract, on every backend, through the front-end.

A lock is a lease on the key ``locust_kv:lock:<name>``; expiry is tested
with real short leases and waits, never with assertions on how fast anything
ran. Contention across real processes (disk, redis) and a holder killed with
SIGKILL are here too; the Locust-user binding is in plugin_leases_checks.py.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import gevent
import pytest
from gevent.monkey import get_original

from locust_kv import KV, Lock, LockStatus, open_kv
from locust_kv.errors import (
    ClaimLostError,
    ErrorGroup,
    InvalidArgumentError,
    InvalidKeyError,
    KeyTooLongError,
    LockLostError,
    LockTimeoutError,
    ReadOnlyStoreError,
)
from locust_kv.locks import LOCK_PREFIX, MAX_LOCK_NAME_BYTES
from locust_kv.store import _OPERATIONS, set_reporter

from .conftest import store_options
from .disk_helpers import fork_call, wait_all_ok, wait_exit

SHORT = 0.2
"""A lease that has surely expired after ``EXPIRED`` seconds."""
EXPIRED = 0.6

RENEWED = 0.9
"""The ttl of a lease kept by renewals: renewals come every third of it, so
a stall of the loaded machine shorter than about 0.5 s loses nothing."""

_start_new_thread = get_original("_thread", "start_new_thread")
_allocate_lock = get_original("_thread", "allocate_lock")


# -- acquire and release --------------------------------------------------------------


def test_lock_is_held_until_release_and_its_key_is_removed_then(kv: KV) -> None:
    before = time.time()
    with kv.lock("report", ttl=10, owner="tester") as lock:
        assert isinstance(lock, Lock)
        assert (lock.name, lock.key, lock.owner, lock.ttl) == ("report", LOCK_PREFIX + "report", "tester", 10.0)
        assert type(lock.token) is int and lock.token >= 1
        # The backend's clock (a server's on redis) may differ a little from ours.
        assert before + 9 < lock.expires_at < time.time() + 11
        assert kv.lock_status("report") == LockStatus("report", True, "tester", lock.token, lock.expires_at)
        # The lock is a key of the store while held: visible to size, count and scan.
        assert kv.exists(lock.key) and kv.size() == 1 and kv.count(LOCK_PREFIX) == 1
        assert not lock.released and not lock.lost
    assert lock.released and not lock.lost
    assert kv.lock_status("report") == LockStatus("report", False, None, None, None)
    assert kv.size() == 0


def test_a_held_lock_times_out_other_takers_and_a_released_one_is_free(kv: KV) -> None:
    holder = kv.lock("job", ttl=30)
    for wait in (0, 0.05):
        with pytest.raises(LockTimeoutError) as info:
            kv.lock("job", ttl=30, wait=wait)
        error = info.value
        assert error.group is ErrorGroup.TRANSIENT
        assert (error.key, error.operation, error.backend) == (LOCK_PREFIX + "job", "lock", kv.backend)
        assert "job" not in str(error)  # one failure row per kind, not per lock
    other = kv.lock("other", ttl=30, wait=0)  # locks of other names are independent
    holder.release()
    again = kv.lock("job", ttl=30, wait=0)
    assert again.token > holder.token and again.token > other.token
    again.release()
    other.release()


def test_tokens_grow_with_every_holder(kv: KV) -> None:
    tokens = []
    for _ in range(5):
        with kv.lock("fence", ttl=5) as lock:
            tokens.append(lock.token)
    assert tokens == sorted(tokens) and len(set(tokens)) == 5


def test_release_twice_does_nothing_and_renew_after_release_is_lost(kv: KV) -> None:
    lock = kv.lock("twice", ttl=5)
    lock.release()
    lock.release()
    kv.release_lock(lock)
    with pytest.raises(LockLostError):
        lock.renew()
    assert not lock.lost  # released by its holder, not lost


def test_an_exception_in_the_block_goes_on_and_the_lock_is_released(kv: KV) -> None:
    with pytest.raises(ZeroDivisionError):
        with kv.lock("boom", ttl=5) as lock:
            1 / 0  # noqa: B018
    assert lock.released and not lock.lost
    assert not kv.lock_status("boom").held


def test_a_waiter_gets_the_lock_when_the_holder_releases(kv: KV) -> None:
    holder = kv.lock("queue", ttl=30)
    got: list[Lock] = []
    waiter = gevent.spawn(lambda: got.append(kv.lock("queue", ttl=30, wait=None)))
    gevent.sleep(0.1)
    assert not got  # still waiting: polling cooperatively, not blocking the hub
    holder.release()
    waiter.join(timeout=30)
    assert got and got[0].token > holder.token
    got[0].release()


def test_the_lock_key_works_under_string_serialization(kv_string: KV) -> None:
    with kv_string.lock("s", ttl=5) as lock:
        assert kv_string.list(LOCK_PREFIX)[0].key == lock.key  # its value reads back under either serialization
    assert kv_string.size() == 0


# -- expiry, loss and renewal -------------------------------------------------------------


def test_a_lock_never_released_expires_and_its_old_holder_learns_it_lost(kv: KV) -> None:
    old = kv.lock("dead", ttl=SHORT)
    time.sleep(EXPIRED)
    assert not kv.lock_status("dead").held  # expired, before anyone takes it
    new = kv.lock("dead", ttl=30, wait=0)
    assert new.token > old.token
    with pytest.raises(LockLostError) as info:
        old.release()
    assert isinstance(info.value, ClaimLostError) and info.value.group is ErrorGroup.USER
    assert old.lost and old.released
    assert kv.lock_status("dead") == LockStatus("dead", True, new.owner, new.token, new.expires_at)  # untouched
    new.release()


def test_leaving_the_block_after_the_lease_was_taken_over_raises_lock_lost(kv: KV) -> None:
    with pytest.raises(LockLostError):
        with kv.lock("slow", ttl=SHORT):
            time.sleep(EXPIRED)
            taker = kv.lock("slow", ttl=30, wait=0)
    assert kv.lock_status("slow").token == taker.token
    taker.release()


def test_an_expired_lock_left_untaken_is_lost_too(kv: KV) -> None:
    lock = kv.lock("lapsed", ttl=SHORT)
    time.sleep(EXPIRED)
    with pytest.raises(LockLostError):
        lock.renew()
    assert lock.lost
    with pytest.raises(LockLostError):
        lock.release()


def test_clearing_the_store_ends_a_held_lock(kv: KV) -> None:
    with pytest.raises(LockLostError):
        with kv.lock("cleared", ttl=30):
            kv.clear()


def test_a_waiter_gets_a_lock_whose_holder_never_releases_after_its_ttl(kv: KV) -> None:
    abandoned = kv.lock("abandoned", ttl=SHORT)
    taken = kv.lock("abandoned", ttl=30, wait=30)
    assert taken.token > abandoned.token
    taken.release()


def test_renew_keeps_the_lock_past_its_first_ttl(kv: KV) -> None:
    lock = kv.lock("long", ttl=RENEWED)
    first_end = lock.expires_at
    for _ in range(6):
        time.sleep(RENEWED / 4)  # past the first ttl by the end
        assert lock.renew() is lock
    assert lock.expires_at > first_end
    renewed = kv.renew_lock(lock, ttl=30)
    assert renewed.ttl == 30.0 and renewed.expires_at > time.time() + 20
    with pytest.raises(LockTimeoutError):
        kv.lock("long", wait=0)
    lock.release()
    assert not lock.lost


def test_auto_renew_keeps_the_lock_past_its_ttl_while_the_holder_waits(kv: KV) -> None:
    with kv.lock("auto", ttl=RENEWED, auto_renew=True) as lock:
        assert lock.auto_renew
        token = lock.token
        gevent.sleep(3 * RENEWED)  # a greenlet's wait: the renewer runs meanwhile
        with pytest.raises(LockTimeoutError):
            kv.lock("auto", ttl=5, wait=0)
        assert kv.lock_status("auto").token == token
    assert not lock.lost
    _wait_for_no_renewer()


def _renewers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "locust_kv lock renewer"]


def _wait_for_no_renewer() -> None:
    deadline = time.monotonic() + 30
    while _renewers():
        assert time.monotonic() < deadline, "a renewer outlived its lock"
        gevent.sleep(0.01)


def test_the_renewer_stops_when_it_finds_the_lease_lost(kv: KV) -> None:
    with pytest.raises(LockLostError):
        with kv.lock("wiped", ttl=RENEWED, auto_renew=True) as lock:
            kv.clear()  # ends the lease
            deadline = time.monotonic() + 30
            while not lock.lost:  # the next renewal finds it gone
                assert time.monotonic() < deadline, "the renewer never noticed"
                gevent.sleep(0.01)
            _wait_for_no_renewer()


def test_auto_renew_from_a_plain_thread_runs_beside_a_blocking_holder(kv: KV) -> None:
    """Outside gevent the renewer is an OS thread: it renews while the holder blocks in time.sleep."""
    outcome: list[object] = []
    done = _allocate_lock()
    done.acquire()

    def holder() -> None:
        try:
            with kv.lock("thread", ttl=RENEWED, auto_renew=True) as lock:
                time.sleep(3 * RENEWED)
                outcome.append(kv.lock_status("thread").token == lock.token)
            outcome.append(lock.lost)
        except BaseException as exc:  # reported below
            outcome.append(exc)
        finally:
            done.release()

    _start_new_thread(holder, ())
    done.acquire()
    assert outcome == [True, False]


# -- arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", None, 7, b"x", "\ud800"])
def test_bad_names_are_refused(kv: KV, name: object) -> None:
    with pytest.raises(InvalidKeyError):
        kv.lock(name, wait=0)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):
        kv.lock_status(name)  # type: ignore[arg-type]


def test_names_may_take_the_key_length_left_by_the_prefix(kv: KV) -> None:
    assert MAX_LOCK_NAME_BYTES == 511 - len(LOCK_PREFIX)
    kv.lock("n" * MAX_LOCK_NAME_BYTES, wait=0).release()
    with pytest.raises(KeyTooLongError):
        kv.lock("n" * (MAX_LOCK_NAME_BYTES + 1), wait=0)


@pytest.mark.parametrize(
    "arguments",
    [{"ttl": 0}, {"ttl": -1}, {"ttl": "5"}, {"ttl": math.nan}, {"wait": -1}, {"wait": "1"}, {"wait": True},
     {"wait": math.nan}, {"auto_renew": 1}, {"owner": 5}, {"owner": "x" * 257}],
    ids=repr,
)  # fmt: skip
def test_bad_arguments_are_refused_before_the_store_is_touched(kv: KV, arguments: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError):
        kv.lock("args", **arguments)  # type: ignore[arg-type]
    assert kv.size() == 0


def test_release_and_renew_take_only_a_lock_of_their_store(open_store: Callable[..., KV], tmp_path: Path) -> None:
    kv = open_store()
    with pytest.raises(InvalidArgumentError):
        kv.release_lock("mine")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        kv.renew_lock(None)  # type: ignore[arg-type]
    other = open_kv(**store_options(kv.backend, tmp_path, "other"))
    try:
        lock = other.lock("x", ttl=5)
        with pytest.raises(InvalidArgumentError):
            kv.release_lock(lock)
        lock.release()
    finally:
        other.close()
    same_store = open_store()
    lock = kv.lock("y", ttl=5)
    same_store.release_lock(lock)  # any handle on the same store
    assert lock.released


def test_a_read_only_handle_reads_lock_status_and_refuses_lock(open_store: Callable[..., KV]) -> None:
    kv = open_store()
    reader = open_store(read_only=True)
    with kv.lock("ro", ttl=5) as lock:
        assert reader.lock_status("ro").token == lock.token
        with pytest.raises(ReadOnlyStoreError):
            reader.lock("ro", wait=0)


def test_an_infinite_wait_is_no_limit(kv: KV) -> None:
    kv.lock("inf", wait=math.inf).release()


# -- contention ------------------------------------------------------------------------------


def _bump_under_lock(kv: KV, rounds: int, out: str | None = None) -> list[tuple[int, int]]:
    """``rounds`` read-modify-write increments of a plain value (get, then set) under the lock; (value, token) each."""
    written = []
    for _ in range(rounds):
        with kv.lock("counter", ttl=30, wait=None) as lock:
            value = kv.get("count", 0) + 1
            gevent.sleep(0)  # give every other greenlet a chance to break in
            kv.set("count", value)
            written.append((value, lock.token))
    if out is not None:
        Path(out).write_text(json.dumps(written))
    return written


def _assert_fenced(written: list[tuple[int, int]], total: int) -> None:
    """Every increment landed once, and later values were written under larger tokens."""
    written.sort()
    assert [value for value, _ in written] == list(range(1, total + 1))
    tokens = [token for _, token in written]
    assert tokens == sorted(tokens) and len(set(tokens)) == total


def test_greenlets_incrementing_under_the_lock_end_exact(kv: KV) -> None:
    greenlets = [gevent.spawn(_bump_under_lock, kv, 15) for _ in range(20)]
    gevent.joinall(greenlets, raise_error=True)
    assert kv.get("count") == 300
    _assert_fenced([row for g in greenlets for row in g.value], 300)
    assert not kv.lock_status("counter").held


def test_greenlets_without_the_lock_lose_updates(kv: KV) -> None:
    """The control: the same read-modify-write without the lock is not exact."""

    def bump() -> None:
        for _ in range(15):
            value = kv.get("count", 0) + 1
            gevent.sleep(0)
            kv.set("count", value)

    gevent.joinall([gevent.spawn(bump) for _ in range(20)], raise_error=True)
    assert kv.get("count") < 300


PROCESSES = 4
ROUNDS = 60


def test_processes_incrementing_under_the_lock_end_exact(backend_name: str, kv: KV, tmp_path: Path) -> None:
    """As with Locust's --processes: the handle is opened before the fork and used in the children."""
    if backend_name == "memory":
        pytest.skip("a memory store is private to its process")
    kv.set("count", 0)
    outs = [str(tmp_path / f"out{n}.json") for n in range(PROCESSES)]
    wait_all_ok([fork_call(_bump_under_lock, kv, ROUNDS, out) for out in outs], timeout=300)
    assert kv.get("count") == PROCESSES * ROUNDS
    _assert_fenced([tuple(row) for out in outs for row in json.loads(Path(out).read_text())], PROCESSES * ROUNDS)  # type: ignore[misc]
    assert not kv.lock_status("counter").held and kv.count(LOCK_PREFIX) == 0


def _hold_forever(kv: KV, ttl: float) -> None:
    lock = kv.lock("victim", ttl=ttl, owner=f"pid {os.getpid()}")
    kv.set("held-by", lock.token)
    while True:
        time.sleep(1)


def test_a_holder_killed_with_sigkill_frees_the_lock_after_its_ttl(backend_name: str, kv: KV) -> None:
    if backend_name == "memory":
        pytest.skip("a memory store is private to its process")
    pid = fork_call(_hold_forever, kv, 3.0)  # long enough to be seen held on a loaded machine
    try:
        deadline = time.monotonic() + 60
        while not kv.exists("held-by"):
            assert time.monotonic() < deadline, "the child never took the lock"
            time.sleep(0.01)
        status = kv.lock_status("victim")
        assert status.held and status.owner == f"pid {pid}" and status.token == kv.get("held-by")
    finally:
        os.kill(pid, signal.SIGKILL)
    assert wait_exit(pid) == -signal.SIGKILL
    with kv.lock("victim", ttl=30, wait=30) as lock:  # free by the dead holder's ttl, with no release
        assert lock.token > kv.get("held-by")


# -- reporting -----------------------------------------------------------------------------------


def test_lock_operations_are_timed_under_their_own_names(kv: KV) -> None:
    """With --kv-report every lock operation is one row of its own; a lock's wait is part of ``lock``'s time."""
    calls: list[tuple[str, str | None]] = []
    set_reporter(kv, lambda operation, seconds, error: calls.append((operation, getattr(error, "name", None))))
    try:
        with kv.lock("name", ttl=5) as lock:  # a parameter called ``name`` must not rename the row
            lock.renew()
            kv.lock_status("name")
            with pytest.raises(LockTimeoutError):
                kv.lock("name", wait=0)
    finally:
        set_reporter(kv, None)
    assert calls == [
        ("lock", None), ("renew_lock", None), ("lock_status", None), ("lock", "LockTimeoutError"), ("release_lock", None)
    ]
    assert kv.stats().operations == {"lock": 2, "renew_lock": 1, "lock_status": 1, "release_lock": 1}


def test_no_timed_operation_has_a_parameter_the_timing_wrapper_uses() -> None:
    for operation in _OPERATIONS:
        parameters = inspect.signature(getattr(KV, operation)).parameters
        assert not [p for p in parameters if p.startswith("_") and p.endswith("_")], operation
