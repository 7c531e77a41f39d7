"""The contract of the batch, prefix and detailed operations, on every backend, through the front-end."""

from __future__ import annotations

import collections

import gevent
import pytest

from locust_kv import (
    KV,
    CompareAndDeleteResult,
    CompareAndSwapResult,
    DeletePrefixResult,
    Entry,
    KeyScanPage,
    Lookup,
)
from locust_kv.errors import (
    InvalidArgumentError,
    InvalidCursorError,
    InvalidKeyError,
    KeyNotFoundError,
    KeyTooLongError,
    SerializerError,
    UnsupportedValueTypeError,
)

# -- get with a default, set_if_absent ------------------------------------------------


def test_get_with_a_default_returns_it_for_an_absent_key_only(kv: KV) -> None:
    assert kv.get("missing", None) is None
    assert kv.get("missing", default=0) == 0
    kv.set("present", {"a": 1})
    assert kv.get("present", default=0) == {"a": 1}
    kv.set("null", None)
    assert kv.get("null", default=5) is None  # a stored null is a value
    with pytest.raises(KeyNotFoundError):
        kv.get("missing")


def test_set_if_absent_writes_once(kv: KV) -> None:
    assert kv.set_if_absent("k", 1) is True
    assert kv.set_if_absent("k", 2) is False
    assert kv.get("k") == 1


def test_set_if_absent_has_one_winner_among_greenlets(kv: KV) -> None:
    wins = []
    gevent.joinall([gevent.spawn(lambda n=n: wins.append(n) if kv.set_if_absent("seat", n) else None) for n in range(50)])
    assert len(wins) == 1 and kv.get("seat") == wins[0]


# -- detailed compare-and-swap / delete ----------------------------------------------------


def test_compare_and_swap_detailed_says_why(kv: KV) -> None:
    assert kv.compare_and_swap_detailed("k", None, 1) == CompareAndSwapResult(True, "swapped", False, None)
    assert kv.compare_and_swap_detailed("k", None, 2) == CompareAndSwapResult(False, "mismatch", True, 1)
    assert kv.compare_and_swap_detailed("k", 7, 2) == CompareAndSwapResult(False, "mismatch", True, 1)
    assert kv.compare_and_swap_detailed("k", 1, 2) == CompareAndSwapResult(True, "swapped", True, None)
    assert kv.compare_and_swap_detailed("gone", 1, 2) == CompareAndSwapResult(False, "mismatch", False, None)
    assert kv.get("k") == 2 and not kv.exists("gone")


def test_compare_and_delete_detailed_says_why(kv: KV) -> None:
    kv.set("k", {"v": 1})
    assert kv.compare_and_delete_detailed("k", {"v": 2}) == CompareAndDeleteResult(False, "mismatch", True, {"v": 1})
    assert kv.compare_and_delete_detailed("k", {"v": 1}) == CompareAndDeleteResult(True, "deleted", True, None)
    assert kv.compare_and_delete_detailed("k", {"v": 1}) == CompareAndDeleteResult(False, "mismatch", False, None)
    assert not kv.exists("k")


def test_compare_and_swap_detailed_has_one_winner(kv: KV) -> None:
    kv.set("v", 0)
    results = []
    gevent.joinall([gevent.spawn(lambda n=n: results.append(kv.compare_and_swap_detailed("v", 0, n + 1))) for n in range(30)])
    assert sum(r.swapped for r in results) == 1
    assert all(r.current == kv.get("v") for r in results if not r.swapped)


# -- get_many / set_many / delete_many ----------------------------------------------------


def test_get_many_reads_values_with_found_flags_in_order(kv: KV) -> None:
    kv.set_many({"a": 1, "b": None, "c": [3]})
    assert kv.get_many(["c", "x", "a", "b", "a"]) == [
        Lookup("c", [3], True),
        Lookup("x", None, False),
        Lookup("a", 1, True),
        Lookup("b", None, True),
        Lookup("a", 1, True),
    ]
    assert kv.get_many([]) == []


def test_set_many_takes_a_dict_or_pairs_and_keeps_the_last_of_a_repeated_key(kv: KV) -> None:
    assert kv.set_many({"a": 1, "b": 2}) == 2
    assert kv.set_many([("c", 3), ("a", 10), ("a", 11)]) == 3
    assert kv.list() == [Entry("a", 11), Entry("b", 2), Entry("c", 3)]
    assert kv.size() == 3 and kv.count() == 3
    assert kv.set_many({}) == 0


@pytest.mark.parametrize(
    ("items", "error"),
    [
        ([("a", 1), ("", 2)], InvalidKeyError),
        ([("a", 1), ("k" * 512, 2)], KeyTooLongError),
        ([("a", 1), ("b", {1, 2})], UnsupportedValueTypeError),
        ([("a", 1), ("b", float("nan"))], SerializerError),
        ([("a", 1), ("b",)], InvalidArgumentError),
        ("ab", InvalidArgumentError),
        (5, InvalidArgumentError),
    ],
)
def test_set_many_checks_every_item_before_writing_any(kv: KV, items: object, error: type) -> None:
    with pytest.raises(error):
        kv.set_many(items)  # type: ignore[arg-type]
    assert kv.size() == 0


def test_set_many_is_seen_whole_or_not_at_all(kv: KV) -> None:
    batch = {f"k{i:03d}": i for i in range(200)}
    seen = []

    def reader() -> None:
        for _ in range(200):
            seen.append(sum(found for _, _, found in kv.get_many(list(batch))))
            gevent.sleep(0)

    def writer() -> None:
        for _ in range(20):
            kv.set_many(batch)
            gevent.sleep(0)
            kv.delete_many(list(batch))
            gevent.sleep(0)

    gevent.joinall([gevent.spawn(reader), gevent.spawn(writer)], raise_error=True)
    assert set(seen) <= {0, 200}


def test_delete_many_counts_the_keys_that_existed(kv: KV) -> None:
    kv.set_many({"a": 1, "b": 2, "c": 3})
    assert kv.delete_many(["a", "x", "c", "a"]) == 2
    assert kv.list_keys() == ["b"]
    assert kv.delete_many([]) == 0


@pytest.mark.parametrize("keys", ["abc", None, {"a": 1}, ["a", 3]])
def test_batches_refuse_what_is_not_a_list_of_keys(kv: KV, keys: object) -> None:
    with pytest.raises((InvalidArgumentError, InvalidKeyError)):
        kv.get_many(keys)  # type: ignore[arg-type]
    with pytest.raises((InvalidArgumentError, InvalidKeyError)):
        kv.delete_many(keys)  # type: ignore[arg-type]


def test_batches_are_capped(kv: KV) -> None:
    with pytest.raises(InvalidArgumentError):
        kv.get_many(["k"] * 100_001)
    with pytest.raises(InvalidArgumentError):
        kv.set_many(("k", 1) for _ in range(100_001))


# -- count, scan_keys, list_keys -------------------------------------------------------------


def test_count_counts_by_prefix(kv: KV) -> None:
    kv.set_many({"a:1": 1, "a:2": 2, "ab": 3, "b:1": 4, "\u00e9:1": 5})
    assert kv.count() == 5
    assert kv.count("a") == 3
    assert kv.count("a:") == 2
    assert kv.count("b:1") == 1
    assert kv.count("\u00e9") == 1
    assert kv.count("zz") == 0
    with pytest.raises(InvalidArgumentError):
        kv.count(5)  # type: ignore[arg-type]


def test_scan_keys_pages_like_scan(kv: KV) -> None:
    kv.set_many({f"item:{i:03d}": i for i in range(25)})
    kv.set("other", 0)
    keys, cursor = [], ""
    while True:
        page = kv.scan_keys("item:", limit=7, cursor=cursor)
        assert isinstance(page, KeyScanPage) and len(page.keys) <= 7
        keys += page.keys
        if page.done:
            assert page.cursor == ""
            break
        # A cursor of scan_keys resumes scan too, and the reverse.
        assert [e.key for e in kv.scan("item:", limit=7, cursor=page.cursor).entries] == kv.scan_keys(
            "item:", limit=7, cursor=page.cursor
        ).keys
        cursor = page.cursor
    assert keys == [f"item:{i:03d}" for i in range(25)]
    assert kv.list_keys("item:", limit=3) == keys[:3]
    assert kv.list_keys() == keys + ["other"]
    with pytest.raises(InvalidCursorError):
        kv.scan_keys("item:", cursor="not a cursor!")


# -- random_keys ------------------------------------------------------------------------------


def test_random_keys_unique_is_a_subset_of_the_prefix(kv: KV) -> None:
    keys = {f"p:{i}" for i in range(20)}
    kv.set_many(dict.fromkeys(keys, 0))
    kv.set("q:1", 0)
    drawn = kv.random_keys("p:", count=8)
    assert len(drawn) == 8 and len(set(drawn)) == 8 and set(drawn) <= keys
    assert sorted(kv.random_keys("p:", count=50)) == sorted(keys)
    assert kv.random_keys("none:", count=3) == []


def test_random_keys_with_repeats_draws_count_times_uniformly(kv: KV) -> None:
    kv.set_many({"p:1": 0, "p:2": 0, "p:3": 0})
    drawn = kv.random_keys("p:", count=3000, unique=False)
    counts = collections.Counter(drawn)
    assert len(drawn) == 3000 and set(counts) == {"p:1", "p:2", "p:3"}
    assert all(800 < n < 1200 for n in counts.values()), counts
    assert kv.random_keys("none:", count=3, unique=False) == []
    with pytest.raises(InvalidArgumentError):
        kv.random_keys("p:", count=2, unique=1)  # type: ignore[arg-type]


# -- pop_random ------------------------------------------------------------------------------------


def test_pop_random_takes_each_entry_once(kv: KV) -> None:
    kv.set_many({f"job:{i}": {"n": i} for i in range(10)})
    kv.set("other", 1)
    popped = [kv.pop_random("job:") for _ in range(10)]
    assert sorted(e.value["n"] for e in popped if e is not None) == list(range(10))
    assert kv.pop_random("job:") is None
    assert kv.size() == 1


def test_pop_random_many_takes_up_to_count(kv: KV) -> None:
    kv.set_many({f"job:{i}": i for i in range(10)})
    first = kv.pop_random_many("job:", count=4)
    second = kv.pop_random_many("job:", count=100)
    assert len(first) == 4 and len(second) == 6
    assert sorted(e.value for e in first + second) == list(range(10))
    assert kv.pop_random_many("job:", count=3) == []


def test_greenlets_popping_share_the_entries_without_overlap(kv: KV) -> None:
    kv.set_many({f"job:{i:03d}": i for i in range(300)})
    taken: list[int] = []

    def worker() -> None:
        while True:
            batch = kv.pop_random_many("job:", count=3)
            if not batch:
                return
            taken.extend(e.value for e in batch)
            gevent.sleep(0)

    gevent.joinall([gevent.spawn(worker) for _ in range(20)], raise_error=True)
    assert sorted(taken) == list(range(300))


# -- delete_prefix -------------------------------------------------------------------------------------


def test_delete_prefix_removes_the_prefix_only(kv: KV) -> None:
    kv.set_many({**{f"tmp:{i:04d}": i for i in range(2500)}, "tmpx": 1, "keep:1": 2})
    assert kv.delete_prefix("tmp:") == DeletePrefixResult(2500, True)
    assert kv.list_keys() == ["keep:1", "tmpx"]
    assert kv.delete_prefix("tmp:") == DeletePrefixResult(0, True)


def test_delete_prefix_with_a_limit_goes_in_ascending_order(kv: KV) -> None:
    kv.set_many({f"s:{i:02d}": i for i in range(10)})
    assert kv.delete_prefix("s:", limit=4) == DeletePrefixResult(4, False)
    assert kv.list_keys("s:") == [f"s:{i:02d}" for i in range(4, 10)]
    assert kv.delete_prefix("s:", limit=6) == DeletePrefixResult(6, True)
    assert kv.count("s:") == 0


def test_delete_prefix_refuses_the_empty_prefix(kv: KV) -> None:
    kv.set("a", 1)
    with pytest.raises(InvalidArgumentError):
        kv.delete_prefix("")
    assert kv.exists("a")


def test_delete_prefix_lets_other_greenlets_run_meanwhile(kv: KV) -> None:
    kv.set_many({f"big:{i:05d}": i for i in range(20_000)})
    ticks = []

    def ticker() -> None:
        while True:
            ticks.append(1)
            gevent.sleep(0)

    spinner = gevent.spawn(ticker)
    gevent.sleep(0)
    try:
        assert kv.delete_prefix("big:") == DeletePrefixResult(20_000, True)
    finally:
        spinner.kill()
    assert len(ticks) > 2  # the hub ran other greenlets between the steps
