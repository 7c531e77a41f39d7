"""The memory backend's expiring keys, at the backend level, on a fake clock.

Every rule of the shared spec (base.py's "expiring keys" section) is checked
with the clock moved by hand: each write's effect on an expiry, an expired
entry absent for every operation before anything removed it, counts and
draws over live keys only, leases gone with their key, backups and restores,
bounded purges, quotas. The bookkeeping (values, index, leases, expiries) is
checked against itself after each test. The last tests measure, print and
assert nothing about speed.
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import pytest

from locust_kv import open_kv
from locust_kv.backends import memory
from locust_kv.backends.base import PURGE_STEP, Batch
from locust_kv.backends.memory import _SHARDS, MemoryBackend
from locust_kv.errors import BackupInProgressError, QuotaExceededError

from .test_memory_stalls import _ticking

_names = itertools.count()

T0 = 1_000_000_000
"""The fake clock's start, in ms."""


class Clock:
    """A fake clock: ``now`` in ms, moved by ``advance``."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def new_backend(track_keys: bool = True, **quota: int) -> MemoryBackend:
    return memory.configure(name=f"ttl-{next(_names)}", track_keys=track_keys, **quota).create()


@pytest.fixture(params=[True, False], ids=["tracked", "untracked"])
def b(request: pytest.FixtureRequest) -> Iterator[MemoryBackend]:
    backend = new_backend(track_keys=request.param)
    yield backend
    check(backend)
    backend.close()


@pytest.fixture
def clock(b: MemoryBackend) -> Clock:
    fake = Clock()
    b.clock = fake
    return fake


def check(backend: MemoryBackend) -> None:
    """Values, index, leases and expiries agree with each other exactly."""
    keys = {key for data in backend._shards for key in data}
    index = backend._index
    assert list(index.order) == sorted(keys)
    index.order._check()  # type: ignore[attr-defined]
    if index.tracked:
        assert sorted(index.slots) == sorted(keys)
    assert backend._bytes == sum(len(k) + len(v) for data in backend._shards for k, v in data.items())
    assert set(backend._leases.records) <= keys
    ttl = backend._ttl
    if ttl is None:
        return
    assert ttl.deadlines, "an Expiries with no expiry is dropped (None: the reads' fast path)"
    ttl.deadlines._check()  # type: ignore[attr-defined]
    expiring = {key: at for shard, table in enumerate(ttl.at) for key, at in table.items() if hash(key) % _SHARDS == shard}
    assert sum(len(table) for table in ttl.at) == len(expiring), "each key in its own shard"
    assert set(expiring) <= keys
    assert sorted((at, key) for key, at in expiring.items()) == list(ttl.deadlines)


def stored(b: MemoryBackend) -> set[bytes]:
    """The keys physically held, expired or not."""
    return {key for data in b._shards for key in data}


def expiry_of(b: MemoryBackend, key: bytes) -> int | None:
    ttl = b._ttl
    return None if ttl is None else ttl.at[hash(key) % _SHARDS].get(key)


# -- what each write does to an expiry ------------------------------------------------------


def test_set_swap_and_set_many_give_an_expiry_and_none_drops_it(b: MemoryBackend, clock: Clock) -> None:
    b.set(b"a", b"1", ttl_ms=100)
    assert b.expiry(b"a") == (True, 100) and expiry_of(b, b"a") == T0 + 100
    b.set(b"a", b"2")  # no ttl: the expiry is dropped
    assert b.expiry(b"a") == (True, None) and b._ttl is None
    assert b.swap(b"a", b"3", ttl_ms=50) == b"2" and b.expiry(b"a") == (True, 50)
    assert b.swap(b"a", b"4", ttl_ms=70) == b"3" and b.expiry(b"a") == (True, 70)  # replaced
    assert b.swap(b"a", b"5") == b"4" and b.expiry(b"a") == (True, None)
    b.set_many([(b"x", b"1"), (b"y", b"2"), (b"x", b"3")], ttl_ms=30)
    assert b.get(b"x") == b"3" and b.expiry(b"x") == b.expiry(b"y") == (True, 30)
    b.set_many([(b"y", b"9")])
    assert b.expiry(b"y") == (True, None) and b.expiry(b"x") == (True, 30)
    clock.advance(30)
    assert b.get(b"x") is None and b.get(b"y") == b"9" and b.get(b"a") == b"5"


def test_compare_and_swap_sets_the_expiry_only_when_it_stores(b: MemoryBackend, clock: Clock) -> None:
    assert b.compare_and_swap(b"k", None, b"1", ttl_ms=100)
    assert b.expiry(b"k") == (True, 100)
    assert b.compare_and_swap_detailed(b"k", b"other", b"2", ttl_ms=5) == (False, b"1")
    assert b.expiry(b"k") == (True, 100)  # a failed swap changes nothing
    assert not b.compare_and_swap(b"k", None, b"2")
    assert b.expiry(b"k") == (True, 100)
    assert b.compare_and_swap_detailed(b"k", b"1", b"2", ttl_ms=10) == (True, b"1")
    assert b.expiry(b"k") == (True, 10)
    assert b.compare_and_swap(b"k", b"2", b"3")  # no ttl: never expires now
    assert b.expiry(b"k") == (True, None)


def test_get_or_set_sets_the_expiry_only_on_a_miss(b: MemoryBackend, clock: Clock) -> None:
    assert b.get_or_set(b"k", b"1", ttl_ms=100) == (b"1", False)
    clock.advance(40)
    assert b.get_or_set(b"k", b"2", ttl_ms=1_000) == (b"1", True)
    assert b.expiry(b"k") == (True, 60)  # a hit changes nothing
    b.set(b"plain", b"p")
    assert b.get_or_set(b"plain", b"2", ttl_ms=5) == (b"p", True) and b.expiry(b"plain") == (True, None)
    clock.advance(60)
    assert b.get_or_set(b"k", b"3", ttl_ms=7) == (b"3", False)  # expired: stored again, with the new life
    assert b.expiry(b"k") == (True, 7)


def test_increment_by_sets_the_expiry_only_when_it_creates_the_counter(b: MemoryBackend, clock: Clock) -> None:
    assert b.increment_by(b"hits", 1, ttl_ms=1_000) == 1
    clock.advance(600)
    assert b.increment_by(b"hits", 1, ttl_ms=1_000) == 2  # a live counter keeps its window
    assert b.expiry(b"hits") == (True, 400)
    clock.advance(400)
    assert b.increment_by(b"hits", 5, ttl_ms=1_000) == 5  # the window ended: a new counter from 0
    assert b.expiry(b"hits") == (True, 1_000)
    b.set(b"plain", b"10")
    assert b.increment_by(b"plain", 1, ttl_ms=50) == 11 and b.expiry(b"plain") == (True, None)
    assert b.increment_by(b"fresh", 3) == 3 and b.expiry(b"fresh") == (True, None)


def test_delete_compare_and_delete_claims_and_markers_never_change_an_expiry(b: MemoryBackend, clock: Clock) -> None:
    b.set(b"k", b"v", ttl_ms=100)
    b.set(b"other", b"v", ttl_ms=100)
    assert not b.compare_and_delete(b"k", b"not-v")
    (record,) = b.claim_keys([b"k"], 1_000, b"me")
    assert record is not None
    assert b.renew_claims([(b"k", record.token)], 2_000) == [T0 + 2_000]
    assert b.release_claims([(b"k", record.token)]) == [True]
    b.write_marker(b"m", b"1")
    assert b.expiry(b"k") == (True, 100)
    assert b.delete(b"other") and expiry_of(b, b"other") is None  # its expiry went with it
    assert b.compare_and_delete(b"k", b"v") and b._ttl is None
    b.set(b"k", b"again")
    assert b.expiry(b"k") == (True, None)  # a new entry of the same name has no old expiry


def test_expire_persist_and_expiry(b: MemoryBackend, clock: Clock) -> None:
    assert not b.expire(b"missing", 10) and not b.persist(b"missing")
    assert b.expiry(b"missing") == (False, None)
    b.set(b"k", b"v")
    assert not b.persist(b"k")  # it had none
    assert b.expire(b"k", 10) and b.expiry(b"k") == (True, 10)
    assert b.expire(b"k", 500) and b.expiry(b"k") == (True, 500)  # replaced
    assert b.persist(b"k") and b.expiry(b"k") == (True, None) and b._ttl is None
    assert b.expire(b"k", 3)
    clock.advance(2)
    assert b.expiry(b"k") == (True, 1)  # never 0 for a live key
    clock.advance(1)
    assert b.expiry(b"k") == (False, None)
    assert not b.expire(b"k", 100) and not b.persist(b"k")  # an expired key is absent for both
    assert b.get(b"k") is None and stored(b) == set()


def test_clear_drops_every_expiry(b: MemoryBackend, clock: Clock) -> None:
    b.set_many([(b"a", b"1"), (b"b", b"2")], ttl_ms=10)
    b.clear()
    assert b._ttl is None and b.size() == 0
    b.set(b"a", b"3")
    clock.advance(10)
    assert b.get(b"a") == b"3"


# -- an expired entry is absent for every operation -----------------------------------------

READS: dict[str, tuple[Callable[[MemoryBackend], object], object]] = {
    "get": (lambda b: b.get(b"gone"), None),
    "exists": (lambda b: b.exists(b"gone"), False),
    "get_many": (lambda b: b.get_many([b"gone", b"live", b"gone"]), [None, b"L", None]),
    "expiry": (lambda b: b.expiry(b"gone"), (False, None)),
    "size": (lambda b: b.size(), 1),
    "count": (lambda b: b.count(b"", None), 1),
    "count_range": (lambda b: b.count(b"g", b"h"), 0),
    "stats_keys": (lambda b: (b.stats()["keys"], b.stats()["bytes"]), (1, 5)),
    "scan": (lambda b: b.scan(b"", None, 0, 0), ([(b"live", b"L")], False)),
    "scan_keys": (lambda b: b.scan_keys(b"", None, 0, 10), ([b"live"], False)),
    "scan_offset": (lambda b: b.scan_keys(b"", None, 1, 10), ([], False)),
    "random_key": (lambda b: {b.random_key(b"") for _ in range(50)}, {b"live"}),
    "random_key_prefix": (lambda b: b.random_key(b"g"), None),
    "random_keys": (lambda b: set(b.random_keys(b"", 20, False)), {b"live"}),
    "random_keys_unique": (lambda b: b.random_keys(b"", 5, True), [b"live"]),
    "allocation_stats": (lambda b: b.allocation_stats(b""), (1, 1, 0, 0)),
    "read_lease": (lambda b: b.read_lease(b"gone"), None),
}

WRITES: dict[str, tuple[Callable[[MemoryBackend], object], object]] = {
    "delete": (lambda b: b.delete(b"gone"), False),
    "delete_many": (lambda b: b.delete_many([b"gone", b"live"]), 1),
    "delete_prefix": (lambda b: b.delete_prefix(b"", 0), (1, True)),
    "compare_and_delete": (lambda b: b.compare_and_delete_detailed(b"gone", b"G"), (False, None)),
    "compare_and_swap_old": (lambda b: b.compare_and_swap_detailed(b"gone", b"G", b"n"), (False, None)),
    "compare_and_swap_none": (lambda b: (b.compare_and_swap(b"gone", None, b"n"), b.get(b"gone"), b.expiry(b"gone")), (True, b"n", (True, None))),
    "get_or_set": (lambda b: (b.get_or_set(b"gone", b"n"), b.expiry(b"gone")), ((b"n", False), (True, None))),
    "swap": (lambda b: (b.swap(b"gone", b"n"), b.expiry(b"gone")), (None, (True, None))),
    "increment_by": (lambda b: (b.increment_by(b"gone", 2, ttl_ms=9), b.expiry(b"gone")), (2, (True, 9))),
    "claim_keys": (lambda b: b.claim_keys([b"gone"], 100, b"me"), [None]),
    "claim_random": (lambda b: [r.key for r in b.claim_random(b"", 5, 100, b"me")], [b"live"]),
    "pop_random": (lambda b: b.pop_random(b"", 5), [(b"live", b"L")]),
}


@pytest.mark.parametrize("op", [*READS, *WRITES])
def test_an_expired_entry_is_absent_for_every_operation_before_it_is_purged(b: MemoryBackend, clock: Clock, op: str) -> None:
    b.set(b"gone", b"G", ttl_ms=10)
    b.set(b"live", b"L")
    clock.advance(10)  # expiry <= now: expired
    assert stored(b) == {b"gone", b"live"}  # nothing removed it yet
    call, expected = {**READS, **WRITES}[op]
    assert call(b) == expected


def test_the_expiry_instant_is_absent_and_the_instant_before_is_live(b: MemoryBackend, clock: Clock) -> None:
    b.set(b"k", b"v", ttl_ms=10)
    clock.advance(9)
    assert b.get(b"k") == b"v" and b.exists(b"k") and b.size() == 1
    clock.advance(1)
    assert b.get(b"k") is None and not b.exists(b"k") and b.size() == 0


def test_a_write_removes_its_own_expired_entry_and_a_few_others(b: MemoryBackend, clock: Clock) -> None:
    b.set_many([(b"e%03d" % i, b"x") for i in range(100)], ttl_ms=5)
    clock.advance(5)
    b.set(b"w", b"1")
    assert len(stored(b)) == 1 + 100 - PURGE_STEP  # one write removes up to PURGE_STEP expired entries
    b.set(b"e099", b"2")
    assert b.get(b"e099") == b"2" and b.expiry(b"e099") == (True, None)
    assert len(stored(b)) == 2 + 100 - 2 * PURGE_STEP - 1


# -- counts and draws over live keys only -----------------------------------------------------


def test_count_size_and_scan_skip_expired_entries_anywhere_in_the_range(b: MemoryBackend, clock: Clock) -> None:
    keys = [b"k%03d" % i for i in range(200)]
    b.set_many([(k, b"v") for k in keys])
    doomed = keys[::3]
    for key in doomed:
        b.expire(key, 10)
    clock.advance(10)
    live = [k for k in keys if k not in doomed]
    assert b.size() == len(live) and b.stats()["keys"] == len(live)
    assert b.count(b"k050", b"k150") == len([k for k in live if b"k050" <= k < b"k150"])
    page, more = b.scan_keys(b"k010", None, 5, 20)
    expected = [k for k in live if k >= b"k010"][5:25]
    assert page == expected and more
    assert b.scan(b"", None, len(live) - 1, 0) == ([(live[-1], b"v")], False)


def test_random_key_is_uniform_over_the_live_keys(b: MemoryBackend, clock: Clock) -> None:
    b.set_many([(b"p:%d" % i, b"v") for i in range(4)])
    b.set_many([(b"p:x%d" % i, b"v") for i in range(60)], ttl_ms=10)  # most of the keys expire
    b.set_many([(b"q:%d" % i, b"v") for i in range(4)])
    clock.advance(10)
    for prefix in (b"", b"p:"):
        counts = collections.Counter(b.random_key(prefix) for _ in range(4_000))
        live = {b"p:%d" % i for i in range(4)} | ({b"q:%d" % i for i in range(4)} if not prefix else set())
        assert set(counts) == live
        expected = 4_000 / len(live)
        assert all(abs(n - expected) < 0.2 * expected for n in counts.values()), counts


def test_random_claims_and_pops_take_only_live_keys(b: MemoryBackend, clock: Clock) -> None:
    b.set_many([(b"a%02d" % i, b"v") for i in range(10)])
    b.set_many([(b"z%02d" % i, b"v") for i in range(30)], ttl_ms=10)
    clock.advance(10)
    claimed = b.claim_random(b"", 40, 100, b"me")
    assert sorted(r.key for r in claimed) == [b"a%02d" % i for i in range(10)]
    assert b.allocation_stats(b"") == (10, 0, 10, 0)
    b.release_claims([(r.key, r.token) for r in claimed])
    assert sorted(k for k, _ in b.pop_random(b"", 40)) == [b"a%02d" % i for i in range(10)]
    assert b.size() == 0 and stored(b) == set()


# -- leases on expiring keys ------------------------------------------------------------------


def test_a_lease_is_gone_with_its_expired_key(b: MemoryBackend, clock: Clock) -> None:
    b.set_many([(b"a", b"1"), (b"b", b"2"), (b"c", b"3")], ttl_ms=50)
    ra, rb, rc = b.claim_keys([b"a", b"b", b"c"], 1_000, b"me")
    assert ra and rb and rc and b.read_lease(b"a") is not None
    clock.advance(50)  # the keys expire, the leases would still run
    assert b.read_lease(b"a") is None
    assert b.stats()["claims"] == 0 and b.allocation_stats(b"") == (0, 0, 0, 0)
    assert b.release_claims([(b"a", ra.token)]) == [False]
    assert b.complete_claims([(b"b", rb.token)], True) == [False]
    assert b.renew_claims([(b"c", rc.token)], 100) == [None]
    b.set(b"a", b"new")  # a key of the same name: a new entry, claimable again
    (again,) = b.claim_keys([b"a"], 100, b"me")
    assert again is not None and again.token > rc.token


def test_a_claimed_key_that_expires_is_not_claimable(b: MemoryBackend, clock: Clock) -> None:
    b.set(b"k", b"v", ttl_ms=10)
    clock.advance(10)
    assert b.claim_keys([b"k"], 100, b"me") == [None]
    assert b.claim_random(b"", 1, 100, b"me") == []


# -- backups and restores ---------------------------------------------------------------------


def read_all(b: MemoryBackend, batch_size: int, strict: bool = True) -> list[Batch]:
    reader = b.begin_backup(allow_concurrent_writes=not strict)
    try:
        return list(reader.batches(batch_size))
    finally:
        reader.close()


def test_a_backup_leaves_out_expired_entries_and_carries_the_expiries(b: MemoryBackend, clock: Clock) -> None:
    b.set_many([(b"k%02d" % i, b"v%d" % i) for i in range(20)])
    for i in range(0, 20, 2):
        b.expire(b"k%02d" % i, 100 + i)
    b.expire(b"k01", 5)
    clock.advance(5)  # k01 expired, unpurged
    batches = read_all(b, 4)
    rows = [row for entries, _ in batches for row in entries]
    assert [k for k, _ in rows] == [b"k%02d" % i for i in range(20) if i != 1]
    for entries, expiries in batches:
        assert expiries is not None and len(expiries) == len(entries)
        for (key, _), at in zip(entries, expiries, strict=True):
            i = int(key[1:])
            assert at == (T0 + 100 + i if i % 2 == 0 else 0)
    b.clear()
    b.set_many([(b"plain%d" % i, b"v") for i in range(5)])
    assert read_all(b, 2) == [([(b"plain0", b"v"), (b"plain1", b"v")], None), ([(b"plain2", b"v"), (b"plain3", b"v")], None), ([(b"plain4", b"v")], None)]


def test_a_batch_whose_every_entry_expired_is_not_yielded_and_the_sizes_hold(b: MemoryBackend, clock: Clock) -> None:
    b.set_many([(b"a%04d" % i, b"v") for i in range(3_000)], ttl_ms=10)
    b.set_many([(b"b%04d" % i, b"v") for i in range(2_500)])
    clock.advance(10)
    batches = read_all(b, 1_000, strict=False)
    assert [len(entries) for entries, _ in batches] == [1_000, 1_000, 500]
    assert all(expiries is None for _, expiries in batches)


def test_replace_all_skips_expired_entries_and_keeps_the_other_expiries(b: MemoryBackend, clock: Clock) -> None:
    b.set(b"old", b"o", ttl_ms=1)

    def batches() -> Iterator[Batch]:
        yield [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")], [T0 - 1, 0, T0 + 100]
        clock.advance(50)  # the clock when the next batch arrives decides
        yield [(b"d", b"4"), (b"e", b"5")], [T0 + 50, T0 + 51]
        yield [(b"f", b"6")], None

    assert b.replace_all(batches()) == 4
    assert stored(b) == {b"b", b"c", b"e", b"f"}
    assert b.expiry(b"b") == (True, None) and b.expiry(b"c") == (True, 50) and b.expiry(b"e") == (True, 1)
    assert b.expiry(b"old") == (False, None)
    clock.advance(1)
    assert b.size() == 3 and b.scan_keys(b"", None, 0, 0)[0] == [b"b", b"c", b"f"]
    b.replace_all(iter([([(b"z", b"9")], None)]))
    assert b._ttl is None


def test_a_backup_restores_into_another_store_with_its_expiries(b: MemoryBackend, clock: Clock) -> None:
    b.set_many([(b"k%03d" % i, b"v") for i in range(300)], ttl_ms=1_000)
    b.set_many([(b"p%03d" % i, b"v") for i in range(300)])
    target = new_backend()
    target.clock = clock
    try:
        reader = b.begin_backup(allow_concurrent_writes=False)
        assert target.replace_all(reader.batches(128)) == 600
        reader.close()
        assert target.expiry(b"k007") == (True, 1_000) and target.expiry(b"p007") == (True, None)
        clock.advance(1_000)
        assert target.size() == 300
        check(target)
    finally:
        target.close()


def test_purges_run_while_a_strict_backup_refuses_writers(b: MemoryBackend, clock: Clock) -> None:
    b.set_many([(b"k%02d" % i, b"v") for i in range(50)], ttl_ms=10)
    b.set(b"live", b"v")
    clock.advance(10)
    reader = b.begin_backup(allow_concurrent_writes=False)
    try:
        with pytest.raises(BackupInProgressError):
            b.set(b"x", b"1")
        assert b.purge_expired(20) == 20
        assert b.count(b"", None) == 1  # removes the rest first
        assert [entries for entries, _ in reader.batches(10)] == [[(b"live", b"v")]]
    finally:
        reader.close()


# -- purging ----------------------------------------------------------------------------------


def test_purge_expired_removes_at_most_its_limit_earliest_first(b: MemoryBackend, clock: Clock) -> None:
    assert b.purge_expired(10) == 0
    for i in range(100):
        b.set(b"k%03d" % i, b"v", ttl_ms=100 - i)  # k099 expires first
    b.set(b"live", b"v", ttl_ms=10_000)
    clock.advance(50)  # k050..k099 expired
    assert b.purge_expired(30) == 30
    assert stored(b) >= {b"k%03d" % i for i in range(50)}
    assert not stored(b) & {b"k%03d" % i for i in range(70, 100)}
    assert b.purge_expired(1_000) == 20 and b.purge_expired(1_000) == 0
    assert len(stored(b)) == 51 and b.size() == 51
    clock.advance(10_000)
    assert b.purge_expired(1_000) == 51 and b._ttl is None


def test_a_range_operation_purges_a_mass_expiry_in_steps_that_let_others_run(b: MemoryBackend, clock: Clock) -> None:
    n = 20 * memory._PURGE_SLICE
    b.set_many([(b"e%06d" % i, b"v") for i in range(n)], ttl_ms=10)
    b.set_many([(b"l%06d" % i, b"v") for i in range(100)])
    clock.advance(10)
    counted, during = _ticking(lambda: b.count(b"", None))
    assert counted == 100
    assert during >= 10  # one pause per step
    assert len(stored(b)) == 100


# -- quotas -----------------------------------------------------------------------------------


def test_a_write_refused_by_a_quota_first_removes_expired_entries() -> None:
    b = new_backend(max_keys=10, max_bytes=10_000)
    clock = Clock()
    b.clock = clock
    try:
        b.set_many([(b"k%d" % i, b"v") for i in range(10)], ttl_ms=10)
        with pytest.raises(QuotaExceededError):
            b.set(b"one-more", b"v")
        clock.advance(10)
        b.set(b"one-more", b"v")  # the expired ones made room
        b.set_many([(b"m%d" % i, b"v") for i in range(9)])
        assert b.size() == 10
        with pytest.raises(QuotaExceededError):
            b.set(b"eleventh", b"v")
        check(b)
    finally:
        b.close()


def test_max_bytes_counts_an_expired_entry_until_a_refused_write_removes_it() -> None:
    b = new_backend(max_bytes=100)
    clock = Clock()
    b.clock = clock
    try:
        b.set(b"big", b"x" * 90, ttl_ms=5)
        clock.advance(5)
        b.set(b"next", b"y" * 50)  # refused at first, then fits once the expired entry is gone
        assert stored(b) == {b"next"} and b.stats()["bytes"] == 54
        check(b)
    finally:
        b.close()


# -- the fast path of a store without expiries -------------------------------------------------


def test_a_store_without_expiries_keeps_none(b: MemoryBackend, clock: Clock) -> None:
    b.set(b"a", b"1")
    b.set_many([(b"b", b"2")])
    b.increment_by(b"c", 1)
    assert b._ttl is None
    b.set(b"a", b"1", ttl_ms=10)
    assert b._ttl is not None
    clock.advance(10)
    assert b.size() == 2 and b.purge_expired(5) == 1 and b._ttl is None


# -- through the front-end ------------------------------------------------------------------------


def test_the_front_end_on_a_fake_clock() -> None:
    kv = open_kv(backend="memory", name=f"ttl-kv-{next(_names)}")
    clock = Clock()
    kv._backend.clock = clock
    try:
        kv.set("session", {"user": 1}, ttl=2.5)
        assert kv.ttl("session") == pytest.approx(2.5)
        clock.advance(2_500)
        assert kv.get("session", None) is None and kv.size() == 0
    finally:
        kv.close()


# -- measurements (printed, not asserted) ----------------------------------------------------------


def _per_call_ns(call: Callable[[Any], object], keys: list[Any], rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for key in keys:
            call(key)
        best = min(best, time.perf_counter() - start)
    return best / len(keys) * 1e9


def test_measure_get_with_and_without_expiries(capsys: pytest.CaptureFixture[str]) -> None:
    keys = [b"k:%07d" % i for i in range(100_000)]
    plain = new_backend()
    expiring = new_backend()
    kv_plain = open_kv(backend="memory", name=f"ttl-bench-plain-{next(_names)}", serialization="string")
    kv_expiring = open_kv(backend="memory", name=f"ttl-bench-ttl-{next(_names)}", serialization="string")
    try:
        plain.set_many([(k, b"value") for k in keys])
        expiring.set_many([(k, b"value") for k in keys], ttl_ms=3_600_000)
        names = [k.decode() for k in keys]
        kv_plain.set_many(dict.fromkeys(names, "value"))
        kv_expiring.set_many(dict.fromkeys(names, "value"), ttl=3_600)
        results: dict[str, float] = {}
        for _ in range(3):  # interleaved, best of each
            for label, call, args in (
                ("backend get, no expiry", plain.get, keys),
                ("backend get, every key expires", expiring.get, keys),
                ("KV.get, no expiry", kv_plain.get, names),
                ("KV.get, every key expires", kv_expiring.get, names),
            ):
                results[label] = min(results.get(label, float("inf")), _per_call_ns(call, args))
        with capsys.disabled():
            print()
            for label, ns in results.items():
                print(f"  {label}: {ns:.0f} ns")
            print(f"  ratio backend: {results['backend get, every key expires'] / results['backend get, no expiry']:.2f}x; "
                  f"KV: {results['KV.get, every key expires'] / results['KV.get, no expiry']:.2f}x")
    finally:
        plain.close()
        expiring.close()
        kv_plain.close()
        kv_expiring.close()


def test_measure_purge_steps_at_a_million_expired_keys(capsys: pytest.CaptureFixture[str]) -> None:
    n = 1_000_000
    b = new_backend()
    clock = Clock()
    b.clock = clock
    try:
        at = T0 + 10

        def batches() -> Iterator[Batch]:
            for start in range(0, n, 100_000):
                yield [(b"k:%07d" % i, b"v") for i in range(start, start + 100_000)], [at] * 100_000

        b.replace_all(batches())
        clock.advance(10)
        steps = []
        for _ in range(50):
            begin = time.perf_counter()
            assert b.purge_expired(1_000) == 1_000
            steps.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        size = b.size()
        size_ms = (time.perf_counter() - begin) * 1e3
        begin = time.perf_counter()
        b.set(b"w", b"v")
        set_ms = (time.perf_counter() - begin) * 1e3
        steps.sort()
        with capsys.disabled():
            print(f"\n  purge_expired(1000) at 1M expired keys: median {steps[len(steps) // 2] * 1e3:.2f} ms, "
                  f"max {steps[-1] * 1e3:.2f} ms; size() {size_ms:.3f} ms ({size}); a write purging PURGE_STEP: {set_ms:.3f} ms")
    finally:
        b.close()


# -- a random walk against a model, and with a clock that moves at every reading ---------------


@pytest.mark.parametrize("seed", range(6))
def test_a_random_walk_agrees_with_a_model(seed: int) -> None:
    import random

    rng = random.Random(seed)
    b = new_backend(track_keys=seed % 2 == 0)
    clock = Clock()
    b.clock = clock
    model: dict[bytes, tuple[bytes, int | None]] = {}
    names = [b"k%02d" % i for i in range(30)]

    def live() -> dict[bytes, bytes]:
        return {k: v for k, (v, at) in model.items() if at is None or at > clock.now}

    def life() -> int | None:
        return rng.choice([None, rng.randint(1, 12)])

    def at_of(ttl: int | None) -> int | None:
        return None if ttl is None else clock.now + ttl

    try:
        for _ in range(1_500):
            clock.advance(rng.choice([0, 0, 1, 2, 5]))
            for key in [k for k, (_, at) in model.items() if at is not None and at <= clock.now]:
                del model[key]  # the model forgets what expired
            key = rng.choice(names)
            op = rng.randrange(10)
            ttl = life()
            if op == 0:
                b.set(key, b"5", ttl_ms=ttl)
                model[key] = (b"5", at_of(ttl))
            elif op == 1:
                assert b.delete(key) == (key in model)
                model.pop(key, None)
            elif op == 2:
                got = b.increment_by(key, 1, ttl_ms=ttl)
                value, at = model[key] if key in model else (b"0", at_of(ttl))  # a live counter keeps its expiry
                model[key] = (b"%d" % (int(value) + 1), at)
                assert got == int(value) + 1
            elif op == 3:
                expected = (model[key][0], True) if key in model else (b"3", False)
                assert b.get_or_set(key, b"3", ttl_ms=ttl) == expected
                model.setdefault(key, (b"3", at_of(ttl)))
            elif op == 4:
                ms = rng.randint(1, 12)
                assert b.expire(key, ms) == (key in model)
                if key in model:
                    model[key] = (model[key][0], clock.now + ms)
            elif op == 5:
                had = key in model and model[key][1] is not None
                assert b.persist(key) == had
                if key in model:
                    model[key] = (model[key][0], None)
            elif op == 6:
                b.purge_expired(rng.randint(1, 5))
            elif op == 7:
                swapped = b.compare_and_swap(key, None, b"9", ttl_ms=ttl)
                assert swapped == (key not in model)
                if swapped:
                    model[key] = (b"9", at_of(ttl))
            elif op == 8:
                claimed = b.claim_keys([key], 3, b"me")
                assert (claimed[0] is not None) <= (key in model)
            else:
                exists, remaining = b.expiry(key)
                assert exists == (key in model)
                if exists:
                    at = model[key][1]
                    assert remaining == (None if at is None else at - clock.now)
            expected = live()
            assert b.get(key) == (expected[key] if key in expected else None)
            assert b.size() == len(expected)
            if rng.random() < 0.2:
                assert b.scan(b"", None, 0, 0) == (sorted(expected.items()), False)
                assert b.count(b"k05", b"k20") == len([k for k in expected if b"k05" <= k < b"k20"])
                check(b)
        check(b)
    finally:
        b.close()


def test_a_clock_that_moves_at_every_reading_never_breaks_the_bookkeeping() -> None:
    import random

    rng = random.Random(7)
    b = new_backend(max_keys=25)
    ticks = itertools.count(T0)
    b.clock = lambda: next(ticks)  # every reading of the clock is a millisecond later
    names = [b"k%02d" % i for i in range(40)]
    try:
        for _ in range(3_000):
            key = rng.choice(names)
            ttl = rng.choice([None, 1, 2, 3, 5, 20])
            op = rng.randrange(8)
            try:
                if op == 0:
                    b.set(key, b"v" * rng.randint(1, 5), ttl_ms=ttl)
                elif op == 1:
                    b.set_many([(k, b"w") for k in rng.sample(names, 3)], ttl_ms=ttl)
                elif op == 2:
                    b.increment_by(key, 1, ttl_ms=ttl) if b.get(key) not in (b"v", b"w") else None
                elif op == 3:
                    b.swap(key, b"s", ttl_ms=ttl)
                elif op == 4:
                    b.claim_keys([key], 2, b"me")
                elif op == 5:
                    b.claim_random(b"", 2, 2, b"me")
                elif op == 6:
                    b.count(b"", None)
                else:
                    b.compare_and_swap(key, None, b"c", ttl_ms=ttl)
            except QuotaExceededError:
                pass
            except Exception as exc:  # a counter over a non-numeric value: ValueParseError only
                assert type(exc).__name__ == "ValueParseError", exc
        check(b)
    finally:
        b.close()


def test_a_write_refused_by_max_bytes_purges_by_its_own_now_not_a_later_reading() -> None:
    """The key being rewritten expires between two readings of the clock: the write's purge must not remove it under it."""
    b = new_backend(max_bytes=20)
    readings = [T0]
    b.clock = lambda: readings.pop(0) if len(readings) > 1 else readings[0]
    try:
        b.set(b"k", b"x" * 10, ttl_ms=10)  # 11 bytes, expires at T0 + 10
        readings[:] = [T0 + 9, T0 + 10]  # the write reads 9 first; any later reading says 10
        with pytest.raises(QuotaExceededError):
            b.set(b"k", b"y" * 25)  # 26 bytes at 9, when k is live and nothing has expired: refused
        check(b)
        assert b.get(b"k") is None  # the clock reads 10 from now on
        b.set(b"k", b"z" * 10)
        check(b)
    finally:
        b.close()
