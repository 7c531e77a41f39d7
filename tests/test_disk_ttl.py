"""Expiring keys on the disk backend, at the backend level: the rules with a fake clock, real processes with the real one.

The contract suite (tests/test_contract_ttl.py) checks the rules through the
front-end with real sleeps; here a fake clock on the backend instance checks
each rule exactly, the records behind them (the expiries, their deadline
index, the state's flag, the generations) and the bounded purges; forked
processes check that every process on the host sees a key expire at once,
and that increments with a ttl keep one window. Two measurements print their
numbers (run with ``-s``): ``get`` with and without expiries, and a purge step
at a million expired keys.
"""

from __future__ import annotations

import collections
import os
import random
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from locust_kv.backends import lmdb as disk
from locust_kv.backends.base import PURGE_STEP, Batch
from locust_kv.backends.lmdb import expiry, layout
from locust_kv.backends.lmdb.backend import DiskBackend
from locust_kv.errors import QuotaExceededError

from .disk_helpers import fork_call, wait_all_ok

START = 1_000_000_000
LONG = 3_600_000


def _open(path: Path, **options: object) -> DiskBackend:
    return disk.configure(path=str(path), **options).create()


def _fake_clock(backend: DiskBackend, start: int = START) -> list[int]:
    now = [start]
    backend.clock = lambda: now[0]  # type: ignore[method-assign]
    return now


@pytest.fixture(params=[True, False], ids=["indexed", "unindexed"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DiskBackend]:
    backend = _open(tmp_path / "s.lmdb", track_keys=request.param)
    yield backend
    backend.close()


def _state(backend: DiskBackend) -> layout.State:
    with backend._env.begin() as txn:  # type: ignore[union-attr]
        return layout.State.decode(txn.get(layout.STATE_KEY))


def _records(backend: DiskBackend) -> tuple[dict[bytes, int], list[tuple[int, bytes]]]:
    """The live generation's expiries and its deadline index, as they are stored."""
    backend.exists(b"\x00")  # adopt the current state
    view = backend._view
    with backend._env.begin() as txn:  # type: ignore[union-attr]
        expires = {key: int.from_bytes(end, "big") for key, end in txn.cursor(view.expires).iternext()}
        ends = [(int.from_bytes(end, "big"), key) for end, key in txn.cursor(view.expiry_ends).iternext()]
    return expires, ends


def _check_records(backend: DiskBackend) -> None:
    """The deadline index holds exactly the expiries, and every expiry is on a stored key."""
    expires, ends = _records(backend)
    assert sorted(ends) == sorted((end, key) for key, end in expires.items())
    view = backend._view
    with backend._env.begin() as txn:  # type: ignore[union-attr]
        assert all(txn.get(key, None, view.data) is not None for key in expires)


# -- a store that never used expiries ----------------------------------------------------------


def test_a_store_without_expiries_keeps_its_state_record_and_fast_paths(tmp_path: Path) -> None:
    backend = _open(tmp_path / "s.lmdb")
    backend.set(b"a", b"1")
    backend.set_many([(b"b", b"2")])
    backend.increment_by(b"c", 1)
    assert backend.get(b"a") == b"1" and backend.size() == 3
    with backend._env.begin() as txn:  # type: ignore[union-attr]
        assert txn.get(layout.STATE_KEY) == b"0:v:0"  # the three fields older versions read
    assert backend._view.expiring is False
    assert backend.persist(b"a") is False and backend.purge_expired(100) == 0
    backend.set(b"d", b"4", 10)  # the first expiry sets the flag, in its own transaction
    assert _state(backend).expiring
    backend.clear()  # and a clear resets it
    assert not _state(backend).expiring and _records(backend) == ({}, [])
    backend.close()


# -- each write's rule -------------------------------------------------------------------------


def test_set_swap_and_set_many_replace_the_expiry_and_none_drops_it(store: DiskBackend) -> None:
    now = _fake_clock(store)
    store.set(b"k", b"1", 100)
    assert store.expiry(b"k") == (True, 100)
    store.set(b"k", b"2", 500)
    assert store.expiry(b"k") == (True, 500)
    store.set(b"k", b"3")
    assert store.expiry(b"k") == (True, None)
    assert store.swap(b"k", b"4", 50) == b"3"
    assert store.expiry(b"k") == (True, 50)
    assert store.swap(b"k", b"5") == b"4" and store.expiry(b"k") == (True, None)
    store.set_many([(b"m1", b"1"), (b"m2", b"2")], 70)
    assert store.expiry(b"m1") == (True, 70) and store.expiry(b"m2") == (True, 70)
    store.set_many([(b"m1", b"x")])
    assert store.expiry(b"m1") == (True, None) and store.expiry(b"m2") == (True, 70)
    now[0] += 69
    assert store.expiry(b"m2") == (True, 1)  # never 0 for a live key
    now[0] += 1
    assert store.expiry(b"m2") == (False, None) and store.get(b"m2") is None
    _check_records(store)


def test_compare_and_swap_sets_the_expiry_only_when_it_stores(store: DiskBackend) -> None:
    _fake_clock(store)
    store.set(b"k", b"1", 100)
    assert not store.compare_and_swap(b"k", b"other", b"2", 5)
    assert store.expiry(b"k") == (True, 100) and store.get(b"k") == b"1"
    assert store.compare_and_swap(b"k", b"1", b"2", 30)
    assert store.expiry(b"k") == (True, 30)
    assert store.compare_and_swap_detailed(b"k", b"2", b"3") == (True, b"2")
    assert store.expiry(b"k") == (True, None)
    assert store.compare_and_swap(b"new", None, b"n", 40) and store.expiry(b"new") == (True, 40)


def test_get_or_set_sets_the_expiry_only_on_a_miss(store: DiskBackend) -> None:
    now = _fake_clock(store)
    assert store.get_or_set(b"k", b"1", 100) == (b"1", False)
    assert store.get_or_set(b"k", b"2", 5) == (b"1", True)
    assert store.expiry(b"k") == (True, 100)
    store.set(b"plain", b"p")
    assert store.get_or_set(b"plain", b"q", 5) == (b"p", True) and store.expiry(b"plain") == (True, None)
    now[0] += 100
    assert store.get_or_set(b"k", b"3", 7) == (b"3", False)  # expired: a miss, with its own ttl
    assert store.expiry(b"k") == (True, 7)


def test_increment_by_applies_its_ttl_only_when_it_creates_the_counter(store: DiskBackend) -> None:
    now = _fake_clock(store)
    assert store.increment_by(b"c", 1, 1_000) == 1
    now[0] += 400
    assert store.increment_by(b"c", 1, 1_000) == 2
    assert store.expiry(b"c") == (True, 600)  # the window did not move
    store.set(b"plain", b"5")
    assert store.increment_by(b"plain", 1, 1_000) == 6 and store.expiry(b"plain") == (True, None)
    now[0] += 600
    assert store.increment_by(b"c", 1, 1_000) == 1  # a new window, from 0
    assert store.expiry(b"c") == (True, 1_000)


def test_deletes_never_change_an_expiry_and_removing_a_key_removes_it(store: DiskBackend) -> None:
    _fake_clock(store)
    store.set(b"a", b"1", 100)
    store.set(b"b", b"2", 100)
    assert not store.compare_and_delete(b"a", b"x") and store.expiry(b"a") == (True, 100)
    assert store.delete(b"a") and store.compare_and_delete(b"b", b"2")
    store.set(b"a", b"again")
    assert store.expiry(b"a") == (True, None)
    assert _records(store) == ({}, [])


def test_expire_persist_and_expiry(store: DiskBackend) -> None:
    now = _fake_clock(store)
    assert not store.expire(b"absent", 10) and store.expiry(b"absent") == (False, None)
    assert not store.persist(b"absent")
    store.set(b"k", b"1")
    assert not store.persist(b"k")
    assert store.expire(b"k", 10) and store.expiry(b"k") == (True, 10)
    assert store.expire(b"k", 20) and store.expiry(b"k") == (True, 20)
    assert store.persist(b"k") and store.expiry(b"k") == (True, None) and not store.persist(b"k")
    store.expire(b"k", 5)
    now[0] += 5
    assert not store.expire(b"k", 10) and not store.persist(b"k")
    _check_records(store)


# -- absent for every operation ---------------------------------------------------------------


def test_an_expired_entry_is_absent_for_every_operation(store: DiskBackend) -> None:
    now = _fake_clock(store)
    store.set_many([(b"k:%02d" % i, b"%d" % i) for i in range(10)])
    store.set_many([(b"x:%02d" % i, b"x") for i in range(10)], 50)
    assert store.size() == 20
    now[0] += 50
    live = [b"k:%02d" % i for i in range(10)]
    assert store.get(b"x:00") is None and not store.exists(b"x:00")
    assert store.get_many([b"x:01", b"k:01"]) == [None, b"1"]
    assert store.size() == 10 and store.stats()["keys"] == 10
    assert store.count(b"", None) == 10 and store.count(b"x:", b"x;") == 0 and store.count(b"k:", b"k;") == 10
    assert store.scan(b"", None, 0, 0) == ([(key, b"%d" % i) for i, key in enumerate(live)], False)
    assert store.scan_keys(b"", None, 3, 2) == (live[3:5], True)
    assert store.scan_keys(b"k:08", None, 1, 5) == ([live[9]], False)
    assert store.scan(b"x:", None, 0, 1) == ([], False)
    assert all(store.random_key(b"") in live for _ in range(50))
    assert store.random_key(b"x:") is None
    assert set(store.random_keys(b"", 20, True)) == set(live)
    assert store.random_keys(b"x:", 5, False) == []
    assert store.allocation_stats(b"") == (10, 10, 0, 0) and store.allocation_stats(b"x:") == (0, 0, 0, 0)
    assert store.claim_keys([b"x:02"], LONG, b"o") == [None]
    assert store.claim_random(b"x:", 5, LONG, b"o") == []
    assert store.pop_random(b"x:", 5) == []
    assert not store.delete(b"x:03") and not store.compare_and_delete(b"x:04", b"x")
    assert store.compare_and_swap_detailed(b"x:05", b"x", b"y") == (False, None)
    assert store.compare_and_swap(b"x:06", None, b"y") and store.get(b"x:06") == b"y"
    assert store.swap(b"x:07", b"z") is None
    assert store.increment_by(b"x:08", 2) == 2
    assert store.delete_many([b"x:09", b"k:00"]) == 1
    reader = store.begin_backup(False)
    rows = [row for batch, _ in reader.batches(100) for row in batch]
    reader.close()
    assert not any(key.startswith(b"x:0") and key not in (b"x:06", b"x:07", b"x:08") for key, _ in rows)
    _check_records(store)


def test_counts_and_scans_stay_exact_while_expired_entries_wait_for_their_purge(store: DiskBackend) -> None:
    now = _fake_clock(store)
    keys = [b"s:%03d" % i for i in range(300)]
    store.set_many([(key, b"v") for key in keys[::2]])
    store.set_many([(key, b"v") for key in keys[1::2]], 10)
    now[0] += 10
    live = keys[::2]
    assert store.count(b"s:", b"s;") == 150 and store.count(b"s:100", b"s:200") == 50
    for offset in (0, 1, 49, 149, 150):
        assert store.scan_keys(b"s:", b"s;", offset, 10)[0] == live[offset : offset + 10]
    assert store.delete_prefix(b"s:1", 0) == (50, True)  # only live keys are counted as removed
    assert store.count(b"", None) == 100 and store.size() == 100


def test_random_key_is_uniform_over_the_live_keys(tmp_path: Path) -> None:
    store = _open(tmp_path / "s.lmdb")
    now = _fake_clock(store)
    live = [b"r:%03d" % i for i in range(100)]
    store.set_many([(key, b"v") for key in live])
    store.set_many([(b"r:%03dx" % i, b"v") for i in range(400)], 10)  # 80% of the keys expire
    now[0] += 10
    draws = 20_000
    for prefix in (b"", b"r:"):
        counts = collections.Counter(store.random_key(prefix) for _ in range(draws))
        assert set(counts) == set(live)
        expected = draws / len(live)
        chi2 = sum((counts[key] - expected) ** 2 / expected for key in live)
        assert chi2 < 99 + 6 * (2 * 99) ** 0.5  # 99 degrees of freedom, far in the tail
    subset = collections.Counter(key for _ in range(2_000) for key in store.random_keys(b"", 5, True))
    assert set(subset) == set(live)
    store.close()


def test_random_key_answers_when_nearly_every_key_expired(tmp_path: Path) -> None:
    store = _open(tmp_path / "s.lmdb")
    now = _fake_clock(store)
    store.set_many([(b"e:%05d" % i, b"v") for i in range(20_000)], 10)
    store.set(b"e:live", b"v")
    now[0] += 10
    assert {store.random_key(b"") for _ in range(3)} == {b"e:live"}  # draws miss, then an exact walk
    assert store.random_key(b"e:") == b"e:live"
    store.set(b"e:live", b"gone", 1)  # a write: it also purges PURGE_STEP of the expired
    now[0] += 1
    assert store.random_key(b"") is None and store.random_keys(b"", 3, False) == []
    store.close()


# -- claims --------------------------------------------------------------------------------------


def test_a_lease_on_an_expired_key_is_gone_with_it(store: DiskBackend) -> None:
    now = _fake_clock(store)
    store.set(b"job", b"1", 100)
    held = store.claim_keys([b"job"], LONG, b"me")[0]
    assert held is not None and store.read_lease(b"job") is not None
    assert store.stats()["claims"] == 1
    now[0] += 100
    assert store.read_lease(b"job") is None
    assert store.stats()["claims"] == 0 and store.allocation_stats(b"") == (0, 0, 0, 0)
    assert store.release_claims([(b"job", held.token)]) == [False]
    assert store.renew_claims([(b"job", held.token)], LONG) == [None]
    assert store.complete_claims([(b"job", held.token)], True) == [False]
    store.set(b"job", b"2")  # a new entry, free
    again = store.claim_keys([b"job"], LONG, b"you")[0]
    assert again is not None and again.token > held.token


# -- backups and restores ---------------------------------------------------------------------


def test_a_backup_leaves_out_expired_entries_and_carries_the_expiries(store: DiskBackend) -> None:
    now = _fake_clock(store)
    store.set_many([(b"a", b"1"), (b"c", b"3")])
    store.set(b"b", b"2", 100)
    store.set(b"d", b"4", 10)
    now[0] += 10
    reader = store.begin_backup(False)
    batches = list(reader.batches(2))
    reader.close()
    assert batches == [([(b"a", b"1"), (b"b", b"2")], [0, START + 100]), ([(b"c", b"3")], None)]


def test_replace_all_skips_expired_entries_and_keeps_the_others_expiries(store: DiskBackend) -> None:
    now = _fake_clock(store)
    store.set(b"old", b"o", 5)
    batches: list[Batch] = [
        ([(b"a", b"1"), (b"b", b"2"), (b"c", b"3")], [0, START + 50, START]),
        ([(b"d", b"4")], None),
    ]
    assert store.replace_all(iter(batches)) == 3
    assert store.scan(b"", None, 0, 0) == ([(b"a", b"1"), (b"b", b"2"), (b"d", b"4")], False)
    assert store.expiry(b"b") == (True, 50) and store.expiry(b"a") == (True, None)
    assert _state(store).expiring
    _check_records(store)
    now[0] += 50
    assert store.size() == 2
    assert store.replace_all(iter([([(b"z", b"1")], None)])) == 1  # no expiry loaded: the flag is off
    assert not _state(store).expiring and _records(store) == ({}, [])


def test_expiries_live_with_their_generation_through_a_failed_restore(store: DiskBackend) -> None:
    _fake_clock(store)
    store.set(b"live", b"1", 100)

    def broken() -> Iterator[Batch]:
        yield [(b"new", b"n")], [START + 5]
        raise ValueError("damaged")

    with pytest.raises(ValueError):
        store.replace_all(broken())
    assert store.expiry(b"live") == (True, 100) and store.get(b"new") is None
    _check_records(store)


# -- purging -------------------------------------------------------------------------------------


def test_purge_expired_is_bounded_and_writes_purge_a_few(store: DiskBackend) -> None:
    now = _fake_clock(store)
    store.set_many([(b"p:%03d" % i, b"v") for i in range(100)], 10)
    store.set_many([(b"keep:%d" % i, b"v") for i in range(5)], LONG)
    assert store.purge_expired(1_000) == 0
    now[0] += 10
    assert store.purge_expired(30) == 30
    assert len(_records(store)[0]) == 75
    store.set(b"w", b"1")  # a write removes PURGE_STEP on its way
    assert len(_records(store)[0]) == 75 - PURGE_STEP
    assert store.purge_expired(1_000) == 70 - PURGE_STEP
    assert store.purge_expired(1_000) == 0
    assert store.size() == 6 and store.stats()["keys"] == 6
    _check_records(store)
    with store._env.begin() as txn:  # type: ignore[union-attr]
        assert txn.stat(store._view.data)["entries"] == 6


def test_a_quota_refusal_first_removes_expired_entries(tmp_path: Path) -> None:
    store = _open(tmp_path / "s.lmdb", max_keys=5)
    now = _fake_clock(store)
    store.set_many([(b"q:%d" % i, b"v") for i in range(5)], 10)
    with pytest.raises(QuotaExceededError):
        store.set(b"more", b"v")
    now[0] += 10
    store.set(b"more", b"v")  # the refused write removed the expired entries, then fit
    assert store.size() == 1 and store.stats()["keys"] == 1
    store.close()


# -- real processes, real clock ----------------------------------------------------------------


def _expect_absent_after(path: Path, key: bytes, until: float) -> None:  # pragma: no cover - runs in the child
    backend = _open(path)
    assert backend.get(key) == b"short-lived"
    while time.time() < until:
        time.sleep(0.005)
    assert backend.get(key) is None and not backend.exists(key)
    assert backend.size() == 0 and backend.scan(b"", None, 0, 0) == ([], False)
    backend.close()


def test_a_key_expires_in_every_process_at_once(tmp_path: Path) -> None:
    path = tmp_path / "s.lmdb"
    backend = _open(path)
    backend.set(b"warm", b"1")
    backend.delete(b"warm")
    backend.set(b"k", b"short-lived", 200)
    until = time.time() + 0.2 + 0.002
    pids = [fork_call(_expect_absent_after, path, b"k", until) for _ in range(2)]
    wait_all_ok(pids, timeout=30)
    assert backend.get(b"k") is None
    backend.close()


def _count_in_windows(path: Path, key: bytes, calls: int) -> None:  # pragma: no cover - runs in the child
    backend = _open(path)
    for _ in range(calls):
        backend.increment_by(key, 1, 60_000)
    backend.close()


@pytest.mark.parametrize("processes", [2, 4])
def test_increments_with_a_ttl_in_several_processes_keep_one_window(tmp_path: Path, processes: int) -> None:
    path = tmp_path / "s.lmdb"
    backend = _open(path)
    started = backend.clock()
    pids = [fork_call(_count_in_windows, path, b"window", 300) for _ in range(processes)]
    wait_all_ok(pids, timeout=60)
    assert backend.get(b"window") == b"%d" % (300 * processes)
    exists, remaining = backend.expiry(b"window")
    assert exists and remaining is not None
    assert 60_000 - (backend.clock() - started) - 5 <= remaining <= 60_000  # set once, by the first increment
    expires, ends = _records(backend)
    assert list(expires) == [b"window"] and len(ends) == 1
    backend.close()


# -- measurements (printed; run with -s) -------------------------------------------------------


def _get_time(backend: DiskBackend, keys: list[bytes], n: int = 100_000) -> float:
    order = [random.choice(keys) for _ in range(n)]
    get = backend.get
    started = time.perf_counter()
    for key in order:
        get(key)
    return (time.perf_counter() - started) / n * 1e6


def test_measure_get_with_and_without_expiries(tmp_path: Path) -> None:
    keys = [b"user:%06d" % i for i in range(50_000)]
    value = b'{"user":12345,"name":"someone","active":true}'
    plain = _open(tmp_path / "plain.lmdb", map_size=64 << 20)
    plain.set_many([(key, value) for key in keys])
    expiring = _open(tmp_path / "ttl.lmdb", map_size=64 << 20)
    expiring.set_many([(key, value) for key in keys], LONG)
    assert plain.get(keys[0]) == value and expiring.get(keys[0]) == value
    assert not plain._view.expiring and expiring._view.expiring
    times: dict[str, list[float]] = {"plain": [], "ttl": []}
    for _ in range(5):
        times["plain"].append(_get_time(plain, keys))
        times["ttl"].append(_get_time(expiring, keys))
    hot = [keys[0]]
    hot_plain = statistics.median(_get_time(plain, hot) for _ in range(3))
    hot_ttl = statistics.median(_get_time(expiring, hot) for _ in range(3))
    p, t = statistics.median(times["plain"]), statistics.median(times["ttl"])
    print(f"\nget, 50,000 keys, random: no ttl {p:.2f} us, every key with a ttl {t:.2f} us, ratio {t / p:.2f}")
    print(f"get, one hot key: no ttl {hot_plain:.2f} us, with a ttl {hot_ttl:.2f} us, ratio {hot_ttl / hot_plain:.2f}")
    plain.close()
    expiring.close()


MILLION = 1_000_000


def test_measure_a_purge_step_at_a_million_expired_keys(tmp_path: Path) -> None:
    store = _open(tmp_path / "s.lmdb")  # the map grows to what a million keys need, and no more
    now = _fake_clock(store)
    value = b'{"user":12345}'

    def batches() -> Iterator[Batch]:
        for start in range(0, MILLION, 10_000):
            yield [(b"user:%07d" % i, value) for i in range(start, start + 10_000)], [START + 10] * 10_000

    assert store.replace_all(batches()) == MILLION
    now[0] += 10
    for limit in (100, 500, 1_000):
        steps = []
        for _ in range(5):
            started = time.perf_counter()
            assert store.purge_expired(limit) == limit
            steps.append((time.perf_counter() - started) * 1e3)
        print(f"\npurge_expired({limit}) at ~1M expired keys: median {statistics.median(steps):.2f} ms, max {max(steps):.2f} ms")
    started = time.perf_counter()
    store.set(b"one-write", b"v")
    print(f"a set that purges {PURGE_STEP} on its way: {(time.perf_counter() - started) * 1e3:.3f} ms")
    started = time.perf_counter()
    size = store.size()
    print(f"size() with ~{MILLION - 8_016:,} expired unpurged (an O(expired) walk in steps): {(time.perf_counter() - started) * 1e3:.0f} ms")
    assert size == 1
    print(f"the data file: {os.path.getsize(tmp_path / 's.lmdb') >> 20} MiB")
    store.close()


# -- the floor: reads skip the expiry lookups while nothing can have expired --------------------


def test_the_floor_follows_the_earliest_expiry_and_purges_raise_it(store: DiskBackend) -> None:
    now = _fake_clock(store)
    store.set(b"late", b"1", 50_000)
    assert (_state(store).expiring, _state(store).floor) == (True, START + 50_000)
    store.set(b"later", b"1", 90_000)
    assert _state(store).floor == START + 50_000  # a later expiry leaves it
    store.set_many([(b"early", b"1"), (b"early2", b"1")], 20_000)
    assert _state(store).floor == START + 20_000  # an earlier one lowers it, in the write's transaction
    store.expire(b"late", 10_000)
    assert _state(store).floor == START + 10_000
    now[0] = START + 10_000
    assert store.get(b"late") is None and store.get(b"early") == b"1"  # at the floor: looked up, expired
    now[0] = START + 20_001
    assert store.get(b"early") is None and not store.exists(b"early2") and store.size() == 1
    assert store.purge_expired(100) == 3
    assert _state(store).floor == START + 90_000  # raised to the earliest expiry left
    assert store.get(b"later") == b"1"
    store.persist(b"later")
    store.purge_expired(100)
    assert _state(store).floor == layout.NO_EXPIRY  # none left: no read looks one up
    store.set(b"again", b"1", 5_000)
    assert _state(store).floor == START + 20_001 + 5_000
    now[0] += 5_000
    assert store.get(b"again") is None and store.get(b"later") == b"1"


def test_a_restore_and_a_clear_set_the_floor(store: DiskBackend) -> None:
    _fake_clock(store)
    batch: Batch = ([(b"a", b"1"), (b"b", b"2"), (b"c", b"3")], [START + 70_000, 0, START + 30_000])
    assert store.replace_all(iter([batch])) == 3
    assert (_state(store).expiring, _state(store).floor) == (True, START + 30_000)
    store.clear()
    assert not _state(store).expiring
    assert store.replace_all(iter([([(b"a", b"1")], None)])) == 1
    assert not _state(store).expiring


def _lower_the_floor(path: Path) -> None:  # pragma: no cover - runs in the child
    backend = _open(path)
    backend.set(b"brief", b"x", 150)
    backend.close()


def test_another_process_lowering_the_floor_is_seen_by_every_reader(tmp_path: Path) -> None:
    """A reader whose view says nothing expires for an hour must still see a key another process set for 150 ms expire."""
    path = tmp_path / "s.lmdb"
    backend = _open(path)
    backend.set(b"long", b"1", LONG)
    assert backend.get(b"long") == b"1"  # the view, with its floor an hour away, is this process's now
    wait_all_ok([fork_call(_lower_the_floor, path)], timeout=30)
    assert backend.get(b"brief") == b"x"
    time.sleep(0.2)
    assert backend.get(b"brief") is None and not backend.exists(b"brief")
    assert backend.get_or_set(b"brief", b"new") == (b"new", False)
    assert backend.get(b"long") == b"1"
    backend.close()


# -- many expired entries stored: a range operation purges them first --------------------------


def _many_expired(store: DiskBackend, n: int = 1_000) -> list[int]:
    now = _fake_clock(store)
    store.set_many([(b"x:%05d" % i, b"1") for i in range(n)], 1_000)
    store.set(b"live", b"1")
    now[0] += 1_000
    return now


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.scan_keys(b"", None, 0, 10) == ([b"live"], False),
        lambda b: b.scan(b"", None, 0, 10) == ([(b"live", b"1")], False),
        lambda b: b.random_key(b"") == b"live",
        lambda b: b.random_keys(b"", 3, True) == [b"live"],
        lambda b: [r.key for r in b.claim_random(b"", 3, LONG, b"o")] == [b"live"],
        lambda b: b.stats()["keys"] == 1,
        lambda b: b.allocation_stats(b"") == (1, 1, 0, 0),
        lambda b: b.count(b"x", None) == 0,
    ],
    ids=["scan_keys", "scan", "random_key", "random_keys", "claim_random", "stats", "allocation_stats", "count"],
)
def test_a_range_operation_purges_many_expired_entries_first(store: DiskBackend, call) -> None:  # type: ignore[no-untyped-def]
    _many_expired(store)
    assert call(store)
    _, ends = _records(store)
    assert len(ends) < expiry.SETTLE_AT  # purged before the operation (in steps), not skipped one by one
    _check_records(store)


def test_during_a_restore_a_range_read_goes_on_without_purging(store: DiskBackend) -> None:
    _many_expired(store)
    seen = []

    def batches() -> Iterator[Batch]:
        seen.append(store.scan_keys(b"", None, 0, 10))  # writers are refused now: the scan skips, one by one
        yield [(b"new", b"1")], None

    assert store.replace_all(batches()) == 1
    assert seen == [([b"live"], False)]
    assert store.scan_keys(b"", None, 0, 10) == ([b"new"], False)
