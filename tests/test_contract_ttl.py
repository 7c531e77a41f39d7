"""Expiring keys: the contract every backend passes (docs/ttl.md).

Keys expire by the backend's clock (the server's on redis), so these tests
use real short lives and real sleeps, not a fake clock (the model test and
the backends' own tests use one). Each test lets many keys expire in one
sleep, so the suite waits a fraction of a second per test.

The rules checked here: an expired key is absent for every operation at
once, whether or not anything removed it yet; each write says what becomes
of an expiry (set, swap, set_many and a successful compare_and_swap replace
it, None dropping it; get_or_set and set_if_absent set it only when they
store; increment_by only when it creates the counter); snapshots keep
expiries and a restore leaves out what has expired; purge_expired frees the
room; a quota counts no expired key for long.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from locust_kv import KV, open_kv
from locust_kv.errors import InvalidArgumentError, KeyNotFoundError, ReadOnlyStoreError

from .conftest import store_options

SHORT = 0.3
"""A life that ends within the test: long enough that the writes before the sleep all see it live."""

LONG = 600.0
"""A life that outlasts every test."""


def _past(seconds: float = SHORT) -> None:
    """Sleep until every key written up to now with a life of ``seconds`` has expired, on any backend's clock."""
    time.sleep(seconds + 0.15)


def _close_to(remaining: float | None, expected: float) -> bool:
    return remaining is not None and 0 < remaining <= expected and remaining > expected - 5


# ---------------------------------------------------------------------------
# Arguments.


@pytest.mark.parametrize("ttl", [0, -1, 0.0, -0.5, math.nan, math.inf, 10 * 365 * 24 * 3600 + 1, "5", True, [1]])
def test_a_ttl_must_be_seconds_more_than_zero_and_at_most_ten_years(kv: KV, ttl: object) -> None:
    calls: list[Callable[[], object]] = [
        lambda: kv.set("k", 1, ttl=ttl),  # type: ignore[arg-type]
        lambda: kv.swap("k", 1, ttl=ttl),  # type: ignore[arg-type]
        lambda: kv.get_or_set("k", 1, ttl=ttl),  # type: ignore[arg-type]
        lambda: kv.set_if_absent("k", 1, ttl=ttl),  # type: ignore[arg-type]
        lambda: kv.increment_by("k", 1, ttl=ttl),  # type: ignore[arg-type]
        lambda: kv.compare_and_swap("k", None, 1, ttl=ttl),  # type: ignore[arg-type]
        lambda: kv.compare_and_swap_detailed("k", None, 1, ttl=ttl),  # type: ignore[arg-type]
        lambda: kv.set_many({"k": 1}, ttl=ttl),  # type: ignore[arg-type]
        lambda: kv.expire("k", ttl),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(InvalidArgumentError):
            call()
    assert kv.size() == 0  # nothing was written


def test_the_ttl_is_keyword_only_and_a_fraction_of_a_millisecond_rounds_up(kv: KV) -> None:
    with pytest.raises(TypeError):
        kv.set("k", 1, 5)  # type: ignore[misc]
    kv.set("k", 1, ttl=0.0001)  # rounds up to one millisecond: stored, then gone
    time.sleep(0.05)
    assert not kv.exists("k")


def test_ttl_of_an_absent_key_is_key_not_found_and_of_a_plain_key_none(kv: KV) -> None:
    with pytest.raises(KeyNotFoundError) as caught:
        kv.ttl("missing")
    assert caught.value.operation == "ttl" and caught.value.key == "missing"
    kv.set("plain", 1)
    assert kv.ttl("plain") is None
    kv.set("brief", 1, ttl=LONG)
    assert _close_to(kv.ttl("brief"), LONG)


# ---------------------------------------------------------------------------
# An expired key is absent for every operation.


def test_an_expired_key_is_absent_for_every_read(kv: KV, tmp_path: Path) -> None:
    kv.set("live", "L")
    kv.set("gone", "G", ttl=SHORT)
    kv.set("gone2", "G2", ttl=SHORT)
    kv.increment_by("gone:counter", 5, ttl=SHORT)
    assert kv.size() == 4 and kv.exists("gone") and kv.get("gone") == "G"
    _past()

    assert kv.get("gone", None) is None
    with pytest.raises(KeyNotFoundError):
        kv.get("gone")
    assert not kv.exists("gone")
    assert kv.size() == 1
    assert kv.count() == 1 and kv.count("gone") == 0 and kv.count(start="a", end="z") == 1
    assert kv.list_keys() == ["live"] and kv.list() == [("live", "L")]
    assert kv.scan("gone").entries == [] and kv.scan_keys().keys == ["live"]
    assert kv.scan(offset=1).entries == []
    assert [lookup.found for lookup in kv.get_many(["live", "gone", "gone2"])] == [True, False, False]
    assert kv.random_key("gone") == ""
    assert kv.random_keys("gone", count=5, unique=False) == []
    assert kv.random_keys("", count=5, unique=True) == ["live"]
    assert kv.stats().keys == 1
    stats = kv.allocation_stats("gone")
    assert (stats.total, stats.claimable) == (0, 0)
    with pytest.raises(KeyNotFoundError):
        kv.ttl("gone")
    assert kv.backup(tmp_path / "after.kv").total_entries == 1


def test_an_expired_key_is_absent_for_every_write(kv: KV) -> None:
    for name in ("cas", "cad", "swap", "gos", "sia", "inc", "del", "exp", "per", "casn", "cadd"):
        kv.set(name, "old", ttl=SHORT)
    _past()

    assert not kv.compare_and_swap("cas", "old", "new")  # the old value is gone
    assert not kv.compare_and_delete("cad", "old")
    detail = kv.compare_and_delete_detailed("cadd", "old")
    assert (detail.deleted, detail.existed) == (False, False)
    assert tuple(kv.swap("swap", "new")) == (None, False)
    assert tuple(kv.get_or_set("gos", "new")) == ("new", False)
    assert kv.set_if_absent("sia", "new")
    kv.set("inc", 7, ttl=SHORT)
    _past()
    assert kv.increment_by("inc", 1) == 1  # counts from 0 again
    assert not kv.delete_if_exists("del")
    assert not kv.expire("exp", LONG)
    assert not kv.persist("per")
    assert kv.compare_and_swap("casn", None, "new")  # "only if absent": it is
    assert kv.get("swap") == "new" and kv.ttl("swap") is None


def test_claims_and_pops_skip_expired_keys_and_a_lease_ends_with_its_key(kv: KV) -> None:
    for i in range(20):
        kv.set(f"job:{i:02d}", i, ttl=SHORT if i < 18 else None)
    held = kv.claim_key("job:00", ttl=60)
    assert held is not None
    _past()
    assert kv.claim_key("job:01", ttl=60) is None  # expired: nothing to claim
    claims = kv.claim_random_many("job:", ttl=60, count=10)
    assert sorted(claim.key for claim in claims) == ["job:18", "job:19"]
    kv.release_claims(claims)
    popped = kv.pop_random_many("job:", count=10)
    assert sorted(entry.key for entry in popped) == ["job:18", "job:19"]
    assert kv.allocation_stats("job:").total == 0
    # The lease on job:00 ended with its key: a new key of that name is claimable at once.
    kv.set("job:00", "again")
    again = kv.claim_key("job:00", ttl=60)
    assert again is not None and again.value == "again"


def test_random_key_draws_only_live_keys_however_many_have_expired(kv: KV) -> None:
    kv.set_many({f"r:{i:03d}": i for i in range(200)}, ttl=SHORT)
    kv.set("r:live-a", 1)
    kv.set("r:live-b", 2)
    _past()
    drawn = {kv.random_key("r:") for _ in range(100)}
    assert drawn == {"r:live-a", "r:live-b"}
    assert sorted(kv.random_keys("r:", count=10, unique=True)) == ["r:live-a", "r:live-b"]
    assert set(kv.random_keys("r:", count=50, unique=False)) == {"r:live-a", "r:live-b"}


def test_counts_scans_offsets_and_cursors_count_only_live_keys(kv: KV) -> None:
    for i in range(40):
        kv.set(f"s:{i:02d}", i, ttl=SHORT if i % 2 else None)
    _past()
    live = [f"s:{i:02d}" for i in range(0, 40, 2)]
    assert kv.count("s:") == 20
    assert kv.count(start="s:10", end="s:20") == 5
    keys: list[str] = []
    cursor = ""
    while True:
        page = kv.scan_keys("s:", limit=3, cursor=cursor)
        keys += page.keys
        if page.done:
            break
        cursor = page.cursor
    assert keys == live
    assert kv.scan_keys("s:", offset=5, limit=2).keys == live[5:7]
    assert kv.list_keys("s:", start="s:30") == live[15:]


# ---------------------------------------------------------------------------
# What each write does to an expiry.


def test_set_swap_and_set_many_replace_the_expiry_and_none_drops_it(kv: KV) -> None:
    kv.set("a", 1, ttl=LONG)
    kv.set("a", 2)
    assert kv.ttl("a") is None
    kv.set("a", 3, ttl=100)
    assert _close_to(kv.ttl("a"), 100)
    kv.set("a", 4, ttl=LONG)
    assert _close_to(kv.ttl("a"), LONG)

    kv.swap("b", 1, ttl=LONG)
    assert _close_to(kv.ttl("b"), LONG)
    assert kv.swap("b", 2).previous == 1
    assert kv.ttl("b") is None

    kv.set_many({"c": 1, "d": 2}, ttl=100)
    assert _close_to(kv.ttl("c"), 100) and _close_to(kv.ttl("d"), 100)
    kv.set_many({"c": 3})
    assert kv.ttl("c") is None and _close_to(kv.ttl("d"), 100)


def test_compare_and_swap_sets_the_expiry_only_when_it_stores(kv: KV) -> None:
    kv.set("k", "v1", ttl=LONG)
    assert not kv.compare_and_swap("k", "other", "v2", ttl=100)
    assert _close_to(kv.ttl("k"), LONG) and kv.get("k") == "v1"
    assert kv.compare_and_swap("k", "v1", "v2", ttl=100)
    assert _close_to(kv.ttl("k"), 100)
    assert kv.compare_and_swap("k", "v2", "v3")
    assert kv.ttl("k") is None
    result = kv.compare_and_swap_detailed("k", "v3", "v4", ttl=50)
    assert result.swapped and _close_to(kv.ttl("k"), 50)
    assert not kv.compare_and_swap_detailed("k", "nope", "v5").swapped
    assert _close_to(kv.ttl("k"), 50)
    assert kv.compare_and_swap("fresh", None, "v", ttl=100)
    assert _close_to(kv.ttl("fresh"), 100)


def test_get_or_set_and_set_if_absent_set_the_expiry_only_when_they_store(kv: KV) -> None:
    assert not kv.get_or_set("g", "first", ttl=100).loaded
    assert _close_to(kv.ttl("g"), 100)
    hit = kv.get_or_set("g", "second", ttl=LONG)
    assert tuple(hit) == ("first", True) and _close_to(kv.ttl("g"), 100)
    assert kv.get_or_set("g", "third").loaded and _close_to(kv.ttl("g"), 100)  # a hit without ttl keeps it too

    kv.set("plain", 1)
    assert kv.get_or_set("plain", 2, ttl=100).loaded and kv.ttl("plain") is None

    assert kv.set_if_absent("s", 1, ttl=100) and _close_to(kv.ttl("s"), 100)
    assert not kv.set_if_absent("s", 2, ttl=LONG) and _close_to(kv.ttl("s"), 100)


def test_increment_by_sets_the_expiry_only_when_it_creates_the_counter(kv: KV) -> None:
    assert kv.increment_by("window", 1, ttl=100) == 1
    assert _close_to(kv.ttl("window"), 100)
    assert kv.increment_by("window", 1, ttl=LONG) == 2  # the window keeps its end
    assert kv.increment_by("window", 1) == 3  # and so does a plain increment
    assert _close_to(kv.ttl("window"), 100)

    kv.increment_by("forever", 1)
    assert kv.increment_by("forever", 1, ttl=100) == 2 and kv.ttl("forever") is None


def test_a_fixed_window_counter_starts_again_after_it_expires(kv: KV) -> None:
    for _ in range(5):
        kv.increment_by("rate:user1", 1, ttl=SHORT)
    assert kv.get("rate:user1") == 5
    _past()
    assert kv.increment_by("rate:user1", 1, ttl=LONG) == 1  # a new window, with the new life
    assert _close_to(kv.ttl("rate:user1"), LONG)


def test_deletes_claims_and_reads_never_change_an_expiry(kv: KV) -> None:
    kv.set("k", "v", ttl=100)
    assert not kv.compare_and_delete("k", "other")
    kv.get("k")
    kv.get_or_set("k", "x")
    claim = kv.claim_key("k", ttl=30)
    assert claim is not None
    kv.renew_claim(claim, ttl=60)
    kv.release_claim(claim)
    assert _close_to(kv.ttl("k"), 100)
    kv.delete("k")
    kv.set("k", "again")
    assert kv.ttl("k") is None  # a removed key's expiry went with it


def test_expire_and_persist(kv: KV) -> None:
    assert not kv.expire("absent", 10)
    kv.set("k", 1)
    assert not kv.persist("k")  # no expiry to drop
    assert kv.expire("k", 100) and _close_to(kv.ttl("k"), 100)
    assert kv.expire("k", LONG) and _close_to(kv.ttl("k"), LONG)  # replaces, also to a later end
    assert kv.persist("k") and kv.ttl("k") is None
    assert kv.expire("k", SHORT)
    _past()
    assert not kv.exists("k") and not kv.persist("k")


def test_expiries_survive_other_keys_being_cleared_and_clear_drops_them(kv: KV) -> None:
    kv.set("a", 1, ttl=100)
    kv.delete_prefix("b")
    assert _close_to(kv.ttl("a"), 100)
    kv.clear()
    kv.set("a", 2)
    assert kv.ttl("a") is None


# ---------------------------------------------------------------------------
# Purging.


def test_purge_expired_removes_what_has_expired_and_nothing_else(kv: KV) -> None:
    kv.set_many({f"p:{i:03d}": i for i in range(120)}, ttl=SHORT)
    kv.set_many({f"q:{i:03d}": i for i in range(30)}, ttl=LONG)
    kv.set("plain", 1)
    assert kv.purge_expired() == 0  # nothing has expired yet
    _past()
    assert kv.purge_expired(limit=10) == 10
    assert kv.purge_expired() == 110
    assert kv.purge_expired() == 0
    assert kv.size() == 31 and kv.count("q:") == 30 and kv.get("plain") == 1


def test_purge_expired_takes_a_limit_as_scan_does(kv: KV) -> None:
    with pytest.raises(InvalidArgumentError):
        kv.purge_expired(limit="all")  # type: ignore[arg-type]
    assert kv.purge_expired(limit=-1) == 0


def test_writes_shed_expired_keys_on_their_way(kv: KV) -> None:
    kv.set_many({f"w:{i:03d}": i for i in range(64)}, ttl=SHORT)
    _past()
    for i in range(20):
        kv.set(f"new:{i}", i)
    # Each write may remove a few: whatever they removed, the purge finds the rest, and no more.
    assert kv.purge_expired() <= 64
    assert kv.size() == 20


# ---------------------------------------------------------------------------
# Snapshots.


def test_a_snapshot_keeps_expiries_and_a_restore_leaves_out_what_has_expired(kv: KV, tmp_path: Path) -> None:
    kv.set("long", "L", ttl=LONG)
    kv.set("plain", "P")
    kv.set("short", "S", ttl=SHORT)
    summary = kv.backup(tmp_path / "s.kv")
    assert summary.total_entries == 3
    kv.clear()
    restored = kv.restore(tmp_path / "s.kv")
    assert (restored.total_entries, restored.expired_skipped) == (3, 0)
    assert _close_to(kv.ttl("long"), LONG) and kv.ttl("plain") is None and _close_to(kv.ttl("short"), SHORT)
    _past()
    kv.clear()
    restored = kv.restore(tmp_path / "s.kv")
    assert (restored.total_entries, restored.expired_skipped) == (2, 1)
    assert kv.list_keys() == ["long", "plain"] and kv.size() == 2
    assert _close_to(kv.ttl("long"), LONG)


def test_a_snapshot_without_expiring_entries_is_format_1(kv: KV, tmp_path: Path) -> None:
    from locust_kv.snapshot import inspect

    kv.set("a", 1)
    kv.backup(tmp_path / "plain.kv")
    assert inspect(tmp_path / "plain.kv").format_version == 1
    kv.set("b", 1, ttl=LONG)
    kv.backup(tmp_path / "expiring.kv")
    assert inspect(tmp_path / "expiring.kv").format_version == 2


def test_a_snapshot_moves_expiries_between_backends(kv: KV, tmp_path: Path) -> None:
    kv.set("long", "L", ttl=LONG)
    kv.set("plain", "P")
    kv.backup(tmp_path / "s.kv")
    other = open_kv(backend="memory", name=f"{tmp_path}/other")
    try:
        other.restore(tmp_path / "s.kv")
        assert _close_to(other.ttl("long"), LONG) and other.ttl("plain") is None
        other.backup(tmp_path / "back.kv")
        kv.clear()
        kv.restore(tmp_path / "back.kv")
        assert _close_to(kv.ttl("long"), LONG) and kv.ttl("plain") is None
    finally:
        other.close()


# ---------------------------------------------------------------------------
# Handles and quotas.


def test_a_read_only_handle_reads_expiries_and_refuses_to_change_them(open_store: Callable[..., KV]) -> None:
    writer = open_store()
    writer.set("k", 1, ttl=100)
    reader = open_store(read_only=True)
    assert _close_to(reader.ttl("k"), 100)
    for call in (lambda: reader.expire("k", 5), lambda: reader.persist("k"), lambda: reader.purge_expired()):
        with pytest.raises(ReadOnlyStoreError):
            call()
    with pytest.raises(ReadOnlyStoreError):
        reader.set("k", 2, ttl=5)


def test_expired_keys_do_not_hold_a_quota_for_long(open_store: Callable[..., KV], backend_name: str, tmp_path: Path) -> None:
    limited = open_kv(**store_options(backend_name, tmp_path, "quota"), max_keys=10)
    try:
        limited.set_many({f"old:{i}": i for i in range(10)}, ttl=SHORT)
        _past()
        for i in range(10):
            limited.set(f"new:{i}", i)  # each write that would pass the quota removes expired keys first
        assert limited.size() == 10 and limited.count("old:") == 0
    finally:
        limited.close()
