"""Atomicity under real contention: gevent greenlets and OS threads, on every backend.

Greenlets yield between operations so that thousands of them interleave; OS
threads run truly concurrently (with a tiny switch interval) and meet at a
barrier before racing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import gevent
import pytest
from gevent.monkey import get_original

from locust_kv import KV

# Real OS threads and locks, even if importing locust has patched threading.
_start_new_thread = get_original("_thread", "start_new_thread")
_allocate_lock = get_original("_thread", "allocate_lock")


@pytest.fixture
def fast_thread_switching() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def _run_threads(count: int, work: Callable[[int], object]) -> list[object]:
    """Run ``work(i)`` on ``count`` OS threads released together; their results."""
    results: list[object] = [None] * count
    errors: list[BaseException] = []
    start_gate = _allocate_lock()
    start_gate.acquire()
    finished = [_allocate_lock() for _ in range(count)]

    def body(index: int) -> None:
        try:
            with start_gate:
                pass
            results[index] = work(index)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            finished[index].release()

    for index in range(count):
        finished[index].acquire()
        _start_new_thread(body, (index,))
    start_gate.release()
    for lock in finished:
        lock.acquire()
    if errors:
        raise errors[0]
    return results


def test_1000_greenlets_incrementing_one_key_end_exact(kv: KV) -> None:
    def worker() -> None:
        for _ in range(100):
            kv.increment_by("hits", 1)
            gevent.sleep(0)

    gevent.joinall([gevent.spawn(worker) for _ in range(1000)], raise_error=True)
    assert kv.get("hits") == 100_000


def test_threads_incrementing_one_key_end_exact(kv: KV, fast_thread_switching: None) -> None:
    def work(index: int) -> None:
        for _ in range(2_000):
            kv.increment_by("hits", 1)
            kv.increment_by("down", -1)

    _run_threads(8, work)
    assert kv.get("hits") == 16_000
    assert kv.get("down") == -16_000


RACES: dict[str, tuple[Callable[[KV, str], object], Callable[[KV, str, int], bool]]] = {
    "compare_and_swap_absent": (lambda kv, k: None, lambda kv, k, i: kv.compare_and_swap(k, None, i)),
    "compare_and_swap_value": (lambda kv, k: kv.set(k, "old"), lambda kv, k, i: kv.compare_and_swap(k, "old", i)),
    "get_or_set_first_insert": (lambda kv, k: None, lambda kv, k, i: not kv.get_or_set(k, i).loaded),
    "delete_if_exists": (lambda kv, k: kv.set(k, 1), lambda kv, k, i: kv.delete_if_exists(k)),
    "compare_and_delete": (lambda kv, k: kv.set(k, "v"), lambda kv, k, i: kv.compare_and_delete(k, "v")),
    "swap_not_loaded": (lambda kv, k: None, lambda kv, k, i: not kv.swap(k, i).loaded),
}
"""Each race: how to prepare a key, and one contender's attempt (True when it won)."""

WRITES_WINNER = {"compare_and_swap_absent", "compare_and_swap_value", "get_or_set_first_insert"}


@pytest.mark.parametrize("race", sorted(RACES))
def test_greenlet_race_has_exactly_one_winner(kv: KV, race: str) -> None:
    prepare, attempt = RACES[race]
    keys = [f"race:{n}" for n in range(20)]
    for key in keys:
        prepare(kv, key)
    wins: dict[str, list[int]] = {key: [] for key in keys}

    def contender(index: int) -> None:
        for key in keys:
            gevent.sleep(0)
            if attempt(kv, key, index):
                wins[key].append(index)

    gevent.joinall([gevent.spawn(contender, i) for i in range(100)], raise_error=True)
    assert all(len(winners) == 1 for winners in wins.values()), wins
    if race in WRITES_WINNER:
        assert {key: winners[0] for key, winners in wins.items()} == {key: kv.get(key) for key in keys}


@pytest.mark.parametrize("race", sorted(RACES))
def test_thread_race_has_exactly_one_winner(kv: KV, race: str, fast_thread_switching: None) -> None:
    prepare, attempt = RACES[race]
    keys = [f"race:{n}" for n in range(2_000)]
    for key in keys:
        prepare(kv, key)

    def contender(index: int) -> list[str]:
        return [key for key in keys if attempt(kv, key, index)]

    won = [key for keys_won in _run_threads(8, contender) for key in keys_won]  # type: ignore[attr-defined]
    assert sorted(won) == sorted(keys)


def test_get_or_set_claims_are_unique_under_greenlets(kv: KV) -> None:
    """A flash sale: every item is won by exactly one of many buyers."""
    items = [f"item:{i}" for i in range(50)]
    wins: dict[str, list[int]] = {item: [] for item in items}

    def buyer(user: int) -> None:
        for item in items:
            gevent.sleep(0)
            value, loaded = kv.get_or_set(item, user)
            if not loaded:
                wins[item].append(user)
            assert value == kv.get(item)

    gevent.joinall([gevent.spawn(buyer, u) for u in range(40)], raise_error=True)
    assert all(len(winners) == 1 for winners in wins.values())
    assert {item: winners[0] for item, winners in wins.items()} == {e.key: e.value for e in kv.list("item:")}
