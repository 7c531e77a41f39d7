"""The memory backend's leases, batch and prefix operations, at the backend level.

Expiry runs on a fake clock; uniformity is checked by counting many draws;
contention uses greenlets and OS threads together on one store.
"""

from __future__ import annotations

import collections
import itertools
import sys
import time
from collections.abc import Callable, Iterator

import gevent
import pytest
from gevent.monkey import get_original

from locust_kv.backends import memory
from locust_kv.backends.base import Batch, ClaimRecord, prefix_end
from locust_kv.errors import BackupInProgressError, RestoreInProgressError

_start_new_thread = get_original("_thread", "start_new_thread")
_allocate_lock = get_original("_thread", "allocate_lock")

_names = itertools.count()


def new_backend(track_keys: bool = True) -> memory.MemoryBackend:
    return memory.configure(name=f"claims-{next(_names)}", track_keys=track_keys).create()


@pytest.fixture(params=[True, False], ids=["tracked", "untracked"])
def b(request: pytest.FixtureRequest) -> Iterator[memory.MemoryBackend]:
    backend = new_backend(track_keys=request.param)
    yield backend
    backend.close()


@pytest.fixture
def clock(b: memory.MemoryBackend) -> list[int]:
    """A fake clock for ``b``: set ``clock[0]`` to move time."""
    now = [1_000_000]
    b.clock = lambda: now[0]
    return now


def seed(b: memory.MemoryBackend, n: int, prefix: bytes = b"acct:") -> list[bytes]:
    keys = [prefix + b"%04d" % i for i in range(n)]
    b.set_many([(k, b"v" + k) for k in keys])
    return keys


def data_bytes(b: memory.MemoryBackend) -> int:
    rows, _ = b.scan(b"", None, 0, 0)
    return sum(len(k) + len(v) for k, v in rows)


# -- claim_keys -------------------------------------------------------------------


def test_claim_keys_grants_free_existing_keys_with_growing_tokens(b, clock) -> None:
    seed(b, 3)
    first = b.claim_keys([b"acct:0000", b"nope", b"acct:0001", b"acct:0000"], 500, b"me")
    assert first[0] == ClaimRecord(b"acct:0000", b"vacct:0000", 1, 1_000_500)
    assert first[1] is None  # absent
    assert first[2] == ClaimRecord(b"acct:0001", b"vacct:0001", 2, 1_000_500)
    assert first[3] is None  # given twice: claimed once
    assert b.claim_keys([b"acct:0000", b"acct:0002"], 500, b"you") == [None, ClaimRecord(b"acct:0002", b"vacct:0002", 3, 1_000_500)]
    assert b.allocation_stats(b"acct:") == (3, 0, 3, 0)


def test_claims_do_not_change_the_data(b, clock) -> None:
    keys = seed(b, 4)
    b.claim_keys(keys[:2], 500, b"me")
    assert b.size() == 4 and b.count(b"acct:", b"acct;") == 4
    assert b.get(keys[0]) == b"v" + keys[0]
    assert b.scan_keys(b"", None, 0, 0) == (keys, False)
    b.set(keys[0], b"new")  # writes keep the lease
    assert b.claim_keys([keys[0]], 500, b"x") == [None]
    assert b.stats()["bytes"] == data_bytes(b)


# -- release / complete / renew ---------------------------------------------------------


def test_release_ends_only_the_live_lease_named_by_its_token(b, clock) -> None:
    keys = seed(b, 2)
    (a,) = b.claim_keys(keys[:1], 500, b"me")
    assert b.release_claims([(a.key, a.token + 1), (b"nope", 1)]) == [False, False]
    assert b.release_claims([(a.key, a.token), (a.key, a.token)]) == [True, False]
    assert b.allocation_stats(b"") == (2, 2, 0, 0)
    (again,) = b.claim_keys(keys[:1], 500, b"me")
    assert again.token > a.token
    assert b.release_claims([(a.key, a.token)]) == [False]  # the old ref never touches the new lease
    assert b.allocation_stats(b"") == (2, 1, 1, 0)


def test_complete_with_and_without_delete(b, clock) -> None:
    keys = seed(b, 3)
    x, y = b.claim_keys(keys[:2], 500, b"me")
    assert b.complete_claims([(x.key, x.token), (y.key, y.token + 9)], False) == [True, False]
    assert b.exists(x.key) and b.allocation_stats(b"") == (3, 2, 1, 0)
    assert b.complete_claims([(y.key, y.token), (y.key, y.token)], True) == [True, False]
    assert not b.exists(y.key) and b.size() == 2
    assert b.stats() == {"keys": 2, "bytes": data_bytes(b), "claims": 0, "expired_claims": 0}


def test_renew_moves_the_end_and_keeps_the_token(b, clock) -> None:
    keys = seed(b, 1)
    (a,) = b.claim_keys(keys, 100, b"me")
    clock[0] += 90
    assert b.renew_claims([(a.key, a.token), (a.key, a.token + 1), (b"nope", 1)], 100) == [1_000_190, None, None]
    clock[0] += 50  # past the first end, before the renewed one
    assert b.claim_keys(keys, 100, b"other") == [None]
    assert b.release_claims([(a.key, a.token)]) == [True]


# -- expiry ----------------------------------------------------------------------------


def test_a_lease_is_live_until_its_end_and_free_from_it(b, clock) -> None:
    keys = seed(b, 2)
    (a,) = b.claim_keys(keys[:1], 100, b"me")
    clock[0] = a.expires_ms - 1
    assert b.claim_keys(keys[:1], 100, b"x") == [None]
    assert b.claim_random(b"acct:", 5, 100, b"x")[0].key == keys[1]
    assert b.allocation_stats(b"acct:") == (2, 0, 2, 0)
    clock[0] = a.expires_ms  # expires_ms <= now: free
    assert b.allocation_stats(b"acct:") == (2, 1, 1, 1)
    assert b.stats()["claims"] == 1 and b.stats()["expired_claims"] == 1
    assert b.release_claims([(a.key, a.token)]) == [False]
    assert b.complete_claims([(a.key, a.token)], True) == [False]
    assert b.renew_claims([(a.key, a.token)], 100) == [None]
    assert b.exists(a.key)  # stale refs change nothing
    assert b.allocation_stats(b"acct:") == (2, 1, 1, 1)
    (taken,) = b.claim_keys(keys[:1], 100, b"new")
    assert taken is not None and taken.token > a.token
    assert b.allocation_stats(b"acct:") == (2, 0, 2, 0)
    assert b.release_claims([(a.key, a.token)]) == [False]


def test_an_expired_lease_stays_expired_when_the_clock_goes_back(b, clock) -> None:
    keys = seed(b, 1)
    (a,) = b.claim_keys(keys, 100, b"me")
    clock[0] += 200
    assert b.allocation_stats(b"") == (1, 1, 0, 1)
    clock[0] -= 150  # before a's end on the raw clock
    assert b.allocation_stats(b"") == (1, 1, 0, 1)
    assert b.release_claims([(a.key, a.token)]) == [False]
    (c,) = b.claim_keys(keys, 100, b"x")
    assert c.expires_ms == 1_000_300  # from the latest now seen
    assert b.allocation_stats(b"") == (1, 0, 1, 0)


def test_pop_skips_live_leases_and_takes_expired_ones(b, clock) -> None:
    keys = seed(b, 3)
    b.claim_keys(keys[:2], 100, b"me")
    b.claim_keys(keys[2:], 50, b"me")
    assert b.pop_random(b"acct:", 3) == []
    clock[0] += 50
    assert b.pop_random(b"acct:", 3) == [(keys[2], b"v" + keys[2])]
    assert b.stats() == {"keys": 2, "bytes": data_bytes(b), "claims": 2, "expired_claims": 0}


# -- removing a key removes its lease -----------------------------------------------------


REMOVERS: dict[str, Callable[[memory.MemoryBackend, bytes], object]] = {
    "delete": lambda b, k: b.delete(k),
    "compare_and_delete": lambda b, k: b.compare_and_delete(k, b"v" + k),
    "compare_and_delete_detailed": lambda b, k: b.compare_and_delete_detailed(k, b"v" + k),
    "delete_many": lambda b, k: b.delete_many([k, k]),
    "delete_prefix": lambda b, k: b.delete_prefix(k, 0),
    "complete_claims": lambda b, k: b.complete_claims([(k, b._leases.records[k][0])], True),
    "clear": lambda b, k: b.clear(),
    "replace_all": lambda b, k: b.replace_all(iter([([(b"other", b"1")], None)])),
}


@pytest.mark.parametrize(
    ("remover", "live"),
    [(name, live) for name in REMOVERS for live in (True, False) if live or name != "complete_claims"],
    ids=lambda v: v if isinstance(v, str) else ("live" if v else "expired"),
)
def test_removing_a_key_drops_its_lease(b, clock, remover: str, live: bool) -> None:
    keys = seed(b, 3)
    (a,) = b.claim_keys(keys[1:2], 100, b"me")
    if not live:
        clock[0] += 100  # complete_claims is left out: it needs a live lease
    REMOVERS[remover](b, keys[1])
    assert not b.exists(keys[1])
    assert b.stats()["claims"] == 0 and b.stats()["expired_claims"] == 0
    b.set(keys[1], b"again")
    (fresh,) = b.claim_keys(keys[1:2], 100, b"x")
    assert fresh is not None and fresh.token > a.token
    assert b.release_claims([(a.key, a.token)]) == [False]
    assert b.release_claims([(fresh.key, fresh.token)]) == [True]


def test_writes_that_keep_the_key_keep_its_lease(b, clock) -> None:
    keys = seed(b, 1)
    (a,) = b.claim_keys(keys, 100, b"me")
    b.set(a.key, b"1")
    b.swap(a.key, b"2")
    b.increment_by(a.key, 1)
    assert b.compare_and_swap_detailed(a.key, b"3", b"4") == (True, b"3")
    b.set_many([(a.key, b"5")])
    assert b.get_or_set(a.key, b"6") == (b"5", True)
    assert b.compare_and_delete_detailed(a.key, b"x") == (False, b"5")
    assert b.claim_keys(keys, 100, b"x") == [None]
    assert b.release_claims([(a.key, a.token)]) == [True]


def test_tokens_grow_across_clear_and_restore(b, clock) -> None:
    keys = seed(b, 1)
    (a,) = b.claim_keys(keys, 100, b"me")
    b.clear()
    seed(b, 1)
    (c,) = b.claim_keys(keys, 100, b"me")
    b.replace_all(iter([([(keys[0], b"x")], None)]))
    (d,) = b.claim_keys(keys, 100, b"me")
    assert a.token < c.token < d.token


# -- writers are refused during a restore or a strict backup ----------------------------------


WRITERS: dict[str, Callable[[memory.MemoryBackend], object]] = {
    "claim_keys": lambda b: b.claim_keys([b"acct:0000"], 100, b""),
    "claim_random": lambda b: b.claim_random(b"", 1, 100, b""),
    "release_claims": lambda b: b.release_claims([(b"acct:0000", 1)]),
    "complete_claims": lambda b: b.complete_claims([(b"acct:0000", 1)], True),
    "renew_claims": lambda b: b.renew_claims([(b"acct:0000", 1)], 100),
    "pop_random": lambda b: b.pop_random(b"", 1),
    "set_many": lambda b: b.set_many([(b"k", b"v")]),
    "delete_many": lambda b: b.delete_many([b"acct:0000"]),
    "delete_prefix": lambda b: b.delete_prefix(b"acct:", 0),
    "compare_and_swap_detailed": lambda b: b.compare_and_swap_detailed(b"acct:0000", None, b"v"),
    "compare_and_delete_detailed": lambda b: b.compare_and_delete_detailed(b"acct:0000", b"vacct:0000"),
}


@pytest.mark.parametrize("write", WRITERS.values(), ids=WRITERS.keys())
def test_new_writers_are_refused_during_a_strict_backup_and_a_restore(b, write) -> None:
    seed(b, 2)
    reader = b.begin_backup(allow_concurrent_writes=False)
    with pytest.raises(BackupInProgressError):
        write(b)
    reader.close()
    refused = []

    def batches() -> Iterator[Batch]:
        with pytest.raises(RestoreInProgressError):
            write(b)
        refused.append(True)
        yield [(b"acct:0000", b"vacct:0000")], None

    assert b.replace_all(batches()) == 1 and refused
    write(b)  # allowed again
    # reads are never refused
    reader = b.begin_backup(allow_concurrent_writes=False)
    assert b.allocation_stats(b"") and b.count(b"", None) >= 0 and b.stats()["keys"] >= 0
    b.get_many([b"acct:0000"])
    b.random_keys(b"", 2, True)
    reader.close()


# -- detailed compare-and-swap / delete, count, batches ------------------------------------


def test_detailed_compare_and_swap_and_delete(b) -> None:
    assert b.compare_and_swap_detailed(b"k", None, b"1") == (True, None)
    assert b.compare_and_swap_detailed(b"k", None, b"2") == (False, b"1")
    assert b.compare_and_swap_detailed(b"k", b"1", b"22") == (True, b"1")
    assert b.compare_and_delete_detailed(b"k", b"1") == (False, b"22")
    assert b.compare_and_delete_detailed(b"k", b"22") == (True, b"22")
    assert b.compare_and_delete_detailed(b"k", b"22") == (False, None)
    assert b.size() == 0 and b.stats()["bytes"] == 0


def test_count_by_prefix(b) -> None:
    b.set_many([(k, b"") for k in (b"a", b"ab", b"abc", b"b", b"\xff", b"\xff\xff", b"\xff\x00")])
    prefixes = (b"", b"a", b"ab", b"abcd", b"b", b"c", b"\xff", b"\xff\xff")
    assert [b.count(p, prefix_end(p)) for p in prefixes] == [7, 3, 2, 0, 1, 0, 3, 1]
    assert [b.count(b"ab", b"b"), b.count(b"b", b"ab"), b.count(b"b", b"b"), b.count(b"\xff", None)] == [2, 0, 0, 3]


def test_get_set_delete_many(b) -> None:
    b.set_many([(b"a", b"1"), (b"b", b"2"), (b"a", b"3")])
    assert b.get_many([b"a", b"x", b"b", b"a"]) == [b"3", None, b"2", b"3"]
    assert b.stats()["bytes"] == data_bytes(b) == 4
    assert b.delete_many([b"a", b"x", b"a"]) == 1
    assert b.size() == 1 and b.random_key(b"") == b"b"
    b.rebuild_key_list()
    assert b.scan_keys(b"", None, 0, 0) == ([b"b"], False)


def test_scan_keys_pages(b) -> None:
    keys = seed(b, 5)
    seed(b, 2, prefix=b"b:")
    assert b.scan_keys(b"acct:", b"acct;", 0, 2) == (keys[:2], True)
    assert b.scan_keys(keys[1] + b"\x00", b"acct;", 0, 2) == (keys[2:4], True)
    assert b.scan_keys(keys[3] + b"\x00", b"acct;", 0, 2) == (keys[4:], False)


def test_random_keys(b) -> None:
    keys = seed(b, 5)
    seed(b, 5, prefix=b"other:")
    assert sorted(b.random_keys(b"acct:", 10, True)) == keys
    picked = b.random_keys(b"acct:", 3, True)
    assert len(set(picked)) == 3 and set(picked) <= set(keys)
    many = b.random_keys(b"acct:", 200, False)
    assert len(many) == 200 and set(many) == set(keys)
    assert b.random_keys(b"none:", 3, True) == [] and b.random_keys(b"none:", 3, False) == []


def test_delete_prefix_in_slices_with_a_limit(b) -> None:
    seed(b, 5000, prefix=b"p:")
    seed(b, 10, prefix=b"q:")
    (lease,) = b.claim_keys([b"p:0001"], 60_000, b"me")
    assert b.delete_prefix(b"p:", 2500) == (2500, False)
    assert b.delete_prefix(b"p:", 2500) == (2500, True)
    assert b.delete_prefix(b"p:", 0) == (0, True)
    assert b.size() == 10 and b.stats() == {"keys": 10, "bytes": data_bytes(b), "claims": 0, "expired_claims": 0}
    assert b.release_claims([(lease.key, lease.token)]) == [False]


def test_delete_prefix_lets_other_greenlets_run_between_slices(b) -> None:
    seed(b, 20_000, prefix=b"p:")
    ticks = []
    done = []

    def ticker() -> None:
        while not done:
            ticks.append(b.count(b"p:", b"p;"))
            gevent.sleep(0)

    def deleter() -> None:
        done.append(b.delete_prefix(b"p:", 0))

    gevent.joinall([gevent.spawn(ticker), gevent.spawn(deleter)])
    assert done == [(20_000, True)]
    assert len(set(ticks)) >= 5  # it saw the count fall step by step


# -- uniformity ----------------------------------------------------------------------------


def test_claim_random_is_uniform_among_the_free_keys(b) -> None:
    keys = seed(b, 20)
    seed(b, 20, prefix=b"zzz:")
    held = {r.key for r in b.claim_keys(keys[::5], 60_000, b"holder")}
    counts = collections.Counter()
    for _ in range(20_000):
        (record,) = b.claim_random(b"acct:", 1, 60_000, b"me")
        counts[record.key] += 1
        assert b.release_claims([(record.key, record.token)]) == [True]
    assert not held & set(counts)
    mean = 20_000 / 16
    assert len(counts) == 16 and all(abs(n - mean) < 0.25 * mean for n in counts.values()), counts


@pytest.mark.parametrize("n", [200, 1000], ids=["walk", "exact"])
def test_claim_random_is_uniform_when_nearly_every_key_is_held(b, n: int) -> None:
    # 4 free keys: the rejection draws mostly miss; then 200 keys are walked
    # (one wanted >= 200/256), 1000 are not (the exact draw).
    keys = seed(b, n)
    free = {keys[3], keys[77], keys[150], keys[n - 1]}
    b.claim_keys([k for k in keys if k not in free], 60_000, b"holder")
    counts = collections.Counter()
    for _ in range(8_000):
        (record,) = b.claim_random(b"acct:", 1, 60_000, b"me")
        counts[record.key] += 1
        b.release_claims([(record.key, record.token)])
    assert set(counts) == free and all(abs(n - 2_000) < 500 for n in counts.values()), counts


def test_the_exact_draw_alone_is_uniform(b) -> None:
    keys = seed(b, 60)
    b.claim_keys([k for i, k in enumerate(keys) if i % 3 or i in (0, 57)], 60_000, b"holder")
    free = {k for i, k in enumerate(keys) if not i % 3 and i not in (0, 57)}
    counts = collections.Counter(b._pick_free_exact(b"acct:") for _ in range(18_000))
    assert set(counts) == free
    mean = 18_000 / len(free)
    assert all(abs(n - mean) < 0.25 * mean for n in counts.values()), counts
    b.claim_keys(sorted(free), 60_000, b"rest")
    assert b._pick_free_exact(b"acct:") is None


@pytest.mark.parametrize("op", ["claim", "pop"])
def test_many_keys_at_once_are_a_uniform_subset(b, op: str) -> None:
    keys = seed(b, 6)
    b.claim_keys(keys[2:3], 60_000, b"holder")
    counts = collections.Counter()
    for _ in range(10_000):
        if op == "claim":
            records = b.claim_random(b"acct:", 2, 60_000, b"me")
            picked = frozenset(r.key for r in records)
            b.release_claims([(r.key, r.token) for r in records])
        else:
            rows = b.pop_random(b"acct:", 2)
            picked = frozenset(k for k, _ in rows)
            b.set_many(rows)
        assert len(picked) == 2
        counts[picked] += 1
    assert len(counts) == 10 and all(keys[2] not in s for s in counts)
    assert all(abs(n - 1_000) < 250 for n in counts.values()), counts


def test_claiming_more_than_are_free_takes_every_free_key(b) -> None:
    keys = seed(b, 50)
    b.claim_keys(keys[::2], 60_000, b"holder")
    records = b.claim_random(b"acct:", 100, 60_000, b"me")
    assert sorted(r.key for r in records) == keys[1::2]
    assert [r.token for r in records] == list(range(26, 51))
    assert b.claim_random(b"acct:", 1, 60_000, b"me") == []
    assert b.pop_random(b"acct:", 1) == []
    assert b.allocation_stats(b"acct:") == (50, 0, 50, 0)


# -- contention ------------------------------------------------------------------------------


@pytest.fixture
def fast_thread_switching() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def _on_threads(count: int, work: Callable[[int], None]) -> Callable[[], None]:
    """Start ``work(i)`` on ``count`` OS threads; a function that waits for them and raises their first error."""
    errors: list[BaseException] = []
    finished = [_allocate_lock() for _ in range(count)]

    def body(index: int) -> None:
        try:
            work(index)
        except BaseException as exc:  # surfaced by join
            errors.append(exc)
        finally:
            finished[index].release()

    for index in range(count):
        finished[index].acquire()
        _start_new_thread(body, (index,))

    def join() -> None:
        for lock in finished:
            while not lock.acquire(blocking=False):
                gevent.sleep(0.001)
        if errors:
            raise errors[0]

    return join


@pytest.mark.usefixtures("fast_thread_switching")
def test_greenlets_and_threads_never_hold_one_key_at_once(b) -> None:
    seed(b, 40)
    guard = _allocate_lock()
    holding: set[bytes] = set()
    last_token: dict[bytes, int] = {}
    claims = collections.Counter()

    def worker(index: int, rounds: int, yield_: Callable[[], None]) -> None:
        seen = 0
        for n in range(rounds):
            records = b.claim_random(b"acct:", 1 + n % 3, 60_000, b"w%d" % index)
            with guard:
                for r in records:
                    assert r.key not in holding, "a key held twice at once"
                    assert r.token > last_token.get(r.key, 0)
                    assert r.token > seen
                    seen = r.token
                    holding.add(r.key)
                    last_token[r.key] = r.token
                    claims[index] += 1
            yield_()
            with guard:
                for r in records:
                    holding.remove(r.key)
            if n % 2:
                assert b.release_claims([(r.key, r.token) for r in records]) == [True] * len(records)
            else:
                assert b.complete_claims([(r.key, r.token) for r in records], False) == [True] * len(records)

    join = _on_threads(4, lambda i: worker(100 + i, 1_500, lambda: time.sleep(0)))
    gevent.joinall([gevent.spawn(worker, i, 300, lambda: gevent.sleep(0)) for i in range(50)], raise_error=True)
    join()
    assert not holding and sum(claims.values()) > 5_000
    assert all(claims[100 + i] > 0 for i in range(4))
    tokens = sorted(last_token.values())
    assert tokens[-1] == sum(claims.values())  # one token per claim, none skipped or repeated
    assert b.allocation_stats(b"acct:") == (40, 40, 0, 0)


@pytest.mark.usefixtures("fast_thread_switching")
def test_every_entry_is_consumed_exactly_once_by_pops_and_completed_claims(b) -> None:
    keys = seed(b, 3_000)
    guard = _allocate_lock()
    consumed: list[bytes] = []

    def worker(index: int) -> None:
        while True:
            if index % 2:
                rows = b.pop_random(b"acct:", 1 + index % 4)
                got = [k for k, _ in rows]
            else:
                records = b.claim_random(b"acct:", 1 + index % 4, 60_000, b"")
                if index % 4 == 0 and records:
                    b.release_claims([(records[-1].key, records[-1].token)])  # given back: someone takes it later
                    records.pop()
                flags = b.complete_claims([(r.key, r.token) for r in records], True)
                assert all(flags)
                got = [r.key for r in records]
            with guard:
                consumed.extend(got)
            if not got and b.count(b"acct:", b"acct;") == 0:
                return
            if index < 50:  # a greenlet (the threads are 100 and up)
                gevent.sleep(0)

    join = _on_threads(4, lambda i: worker(100 + i))
    gevent.joinall([gevent.spawn(worker, i) for i in range(50)], raise_error=True)
    join()
    assert sorted(consumed) == keys
    assert b.size() == 0 and b.stats() == {"keys": 0, "bytes": 0, "claims": 0, "expired_claims": 0}


# -- cost ----------------------------------------------------------------------------------


def _per_call(fn: Callable[[], object], calls: int) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def test_a_claim_costs_about_the_same_in_a_small_and_a_large_store() -> None:
    costs = {}
    for n in (1_000, 200_000):
        b = new_backend()
        keys = seed(b, n)

        def cycle() -> None:
            (r,) = b.claim_random(b"acct:", 1, 60_000, b"me")
            b.release_claims([(r.key, r.token)])

        free = _per_call(cycle, 2_000)
        b.claim_keys(keys[5:], 60_000, b"holder")  # only 5 free: the exact draw
        scarce = _per_call(cycle, 200)
        costs[n] = (free, scarce)
        b.close()
    # An O(n) step would make the large store 200x slower; O(log n) steps cost about 2x.
    assert costs[200_000][0] < 4 * costs[1_000][0], costs
    assert costs[200_000][1] < 10 * costs[1_000][1], costs
    assert costs[200_000][1] < 0.005, costs


def test_a_batch_drawn_by_rejection_is_uniform_per_key(b) -> None:
    # 3 of 40 keys: too few to walk the keys, so each is a rejection draw.
    keys = seed(b, 40)
    b.claim_keys(keys[:1], 60_000, b"holder")
    counts = collections.Counter()
    for _ in range(6_000):
        records = b.claim_random(b"acct:", 3, 60_000, b"me")
        assert len({r.key for r in records}) == 3
        counts.update(r.key for r in records)
        b.release_claims([(r.key, r.token) for r in records])
    mean = 6_000 * 3 / 39
    assert set(counts) == set(keys[1:]) and all(abs(n - mean) < 0.25 * mean for n in counts.values()), counts


def test_a_large_batch_takes_exactly_the_free_keys(b) -> None:
    keys = seed(b, 5_000)
    b.claim_keys(keys[::3], 60_000, b"holder")
    records = b.claim_random(b"acct:", 10_000, 60_000, b"me")
    assert sorted(r.key for r in records) == [k for i, k in enumerate(keys) if i % 3]
    assert b.allocation_stats(b"acct:") == (5_000, 0, 5_000, 0)
    b.release_claims([(r.key, r.token) for r in records])
    rows = b.pop_random(b"acct:", 10_000)
    assert len(rows) == len(records) and b.stats()["claims"] == len(keys[::3])
