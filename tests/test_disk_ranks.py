"""The disk store's rank index: counts and offsets of key ranges in O(log n), checked against the keys themselves.

Most tests make fences 4 or 8 keys apart (``use_fanout``), so that a few
thousand keys use four to six levels, and every split, merge and new level
happens many times. ``rank_index_problems`` recounts every fence's span from
the indexed keys after each step.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

from locust_kv import KV, open_kv
from locust_kv.backends.base import Batch
from locust_kv.backends.lmdb import engine, layout, ranges, ranks

from .disk_helpers import (
    assert_rank_index_matches,
    fork_call,
    rank_index_problems,
    rebuild_beside_writers,
    use_fanout,
    wait_all_ok,
)


@pytest.fixture
def kv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KV]:
    use_fanout(monkeypatch, 2)
    handle = open_kv(backend="disk", path=tmp_path / "s.lmdb")
    yield handle
    handle.close()


def _walks_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any count or offset that walks the range instead of asking the rank index, however small the range."""
    monkeypatch.setattr(ranges, "WALK_FIRST", -1)

    def walk(*args: object, **kwargs: object) -> object:
        raise AssertionError("the range was walked")

    monkeypatch.setattr(ranges, "nth_key_steps", walk)
    import locust_kv.backends.lmdb.ops as ops

    monkeypatch.setattr(ops, "count_between_steps", walk)


def _check_ranges(kv: KV, model: list[str], rng: random.Random, tries: int = 60) -> None:
    """Counts and offset pages of random ranges equal the sorted model's."""
    assert kv.count(start="k") == len(model)
    for _ in range(tries):
        low, high = sorted(f"k{rng.randrange(1_200):04d}" for _ in range(2))
        first, last = bisect_left(model, low), bisect_left(model, high)
        assert kv.count(start=low, end=high) == last - first, (low, high)
        assert kv.count(start=low) == len(model) - first
        offset = rng.randrange(0, last - first + 3)
        page = kv.list_keys(start=low, end=high, offset=offset, limit=4)
        assert page == model[first + offset : min(first + offset + 4, last)], (low, high, offset)


def test_levels_follow_the_crc_of_the_key() -> None:
    keys = [b"k%06d" % i for i in range(200_000)]
    levels = [ranks.level_of(key) for key in keys]
    fences = sum(1 for level in levels if level >= 1)
    assert 200_000 / 4096 / 2 < fences < 200_000 / 4096 * 2  # about one key in 4,096
    assert all(ranks.level_of(key) == level for key, level in zip(keys[:1000], levels))  # the same in every process
    # A CRC of 0 takes its further levels from Adler-32's bits (1 for b"": bits 32 and up).
    assert ranks.level_of(b"") == 2 and ranks.MAX_LEVEL == 5


def test_counts_and_offsets_match_a_sorted_model_through_random_writes(kv: KV, monkeypatch: pytest.MonkeyPatch) -> None:
    _walks_forbidden(monkeypatch)
    rng = random.Random(11)
    model: set[str] = set()
    for step in range(6):
        for _ in range(1_500):
            key = f"k{rng.randrange(1_200):04d}"
            roll = rng.random()
            if roll < 0.55:
                kv.set(key, step)
                model.add(key)
            elif roll < 0.8:
                kv.delete(key)
                model.discard(key)
            elif roll < 0.9:
                batch = {f"k{rng.randrange(1_200):04d}": step for _ in range(5)}
                kv.set_many(batch)
                model.update(batch)
            else:
                gone = [f"k{rng.randrange(1_200):04d}" for _ in range(5)]
                kv.delete_many(gone)
                model.difference_update(gone)
        assert_rank_index_matches(kv)
        _check_ranges(kv, sorted(model), rng)
    top = max(record[0] for record in _records(kv))
    assert top >= 4  # 1,200 keys, fences 4 apart: levels 1 to 4 or 5 were all split and merged


@pytest.mark.parametrize("size", [0, 1, 64, 65, 66, 1_023, 1_024, 1_025, 2_500])
def test_counts_read_small_ranges_and_rank_larger_ones(kv: KV, size: int) -> None:
    """At most WALK_FIRST (1,024) keys: a read of the range; more: two ranks. The same answer either way."""
    kv.set_many({f"k{i:04d}": i for i in range(3_000)})
    start = "k0100"
    end = f"k{100 + size:04d}"
    assert kv.count(start=start, end=end) == size
    assert kv.count(start=f"k{3_000 - size:04d}") == size  # no end
    assert ranges.WALK_FIRST == 1_024  # the sizes above straddle it


def _records(kv: KV) -> list[bytes]:
    backend = kv._backend
    backend.size()
    with backend._env.begin() as txn:
        return [record for record, _ in txn.cursor(backend._view.ranks)]


def test_every_write_that_adds_or_removes_a_key_keeps_the_ranks(kv: KV) -> None:
    """The less common writers: increments, get_or_set, swaps, compare-and-*, claims, pops, prefix deletes."""
    for i in range(0, 600, 2):
        kv.set(f"k{i:04d}", i)
    kv.increment_by("k0001", 1)
    kv.get_or_set("k0003", 1)
    kv.set_if_absent("k0005", 1)
    kv.swap("k0007", 1)
    kv.compare_and_swap("k0009", None, 1)
    kv.compare_and_delete("k0010", 10)
    kv.delete_if_exists("k0012")
    kv.pop_random_many(prefix="k01", count=7)
    kv.delete_prefix("k02")
    assert_rank_index_matches(kv)
    model = sorted(kv.list_keys(start="k"))
    _check_ranges(kv, model, random.Random(3))
    kv.clear()
    assert _records(kv) == [] and kv.count(start="k") == 0
    kv.set("k0001", 1)
    assert_rank_index_matches(kv)


def test_expired_keys_are_left_out_of_ranked_counts(kv: KV, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000_000.0]
    monkeypatch.setattr(kv._backend, "clock", lambda: int(now[0] * 1000))
    for i in range(400):
        kv.set(f"k{i:04d}", i, ttl=5 if i % 3 == 0 else None)
    now[0] += 10  # a third expire, none purged yet
    live = [f"k{i:04d}" for i in range(400) if i % 3]
    assert kv.count(start="k0100", end="k0200") == sum(1 for key in live if "k0100" <= key < "k0200")
    assert kv.list_keys(start="k0100", end="k0200", offset=10, limit=3) == [k for k in live if k >= "k0100"][10:13]
    kv.purge_expired()
    assert_rank_index_matches(kv)
    _check_ranges(kv, live, random.Random(5))


def test_a_fence_key_toggled_on_and_off_splits_only_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deleting a fence key keeps its fence (counting the keys after it): inserting it again is a count, not a split."""
    with open_kv(backend="disk", path=tmp_path / "s.lmdb") as kv:
        kv.set_many({f"k{i:05d}": i for i in range(20_000)})
        fence = next(f"k{i:05d}" for i in range(100, 20_000) if ranks.level_of(f"k{i:05d}".encode()) >= 1)
        splits = []
        span = ranks._span
        monkeypatch.setattr(ranks, "_span", lambda *args: splits.append(args[-1]) or span(*args))
        for _ in range(50):
            kv.delete(fence)
            assert kv.count(start=fence) == 20_000 - int(fence[1:]) - 1
            kv.set(fence, 1)
            assert kv.count(start=fence) == 20_000 - int(fence[1:])
        assert splits == []
        assert_rank_index_matches(kv)
        kv.delete_prefix("k")  # every span empties: the kept fences go with the last key of theirs
        assert [record for record in _records(kv) if len(record) > 1] == []


def _batches(keys: list[bytes], size: int) -> Iterator[Batch]:
    for start in range(0, len(keys), size):
        yield [(key, b"1") for key in keys[start : start + size]], None


def test_a_restore_in_key_order_appends_the_ranks_batch_after_batch(kv: KV, monkeypatch: pytest.MonkeyPatch) -> None:
    _walks_forbidden(monkeypatch)
    kv.set("k9999", 1)
    keys = [b"k%04d" % i for i in range(0, 1_200, 3)]
    assert kv._backend.replace_all(_batches(keys, 37)) == len(keys)
    assert_rank_index_matches(kv)
    _check_ranges(kv, [key.decode() for key in keys], random.Random(1))
    kv.set("k0001", 1)  # writers go on from the restored ranks
    kv.delete("k0003")
    assert_rank_index_matches(kv)


def test_a_restore_whose_ranks_come_out_inconsistent_restores_nothing(
    kv: KV, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh generation cannot hold a damaged rank index; if one ever did, ``restore`` raises DiskStoreIndexError
    and the live data stays.

    (The only fault here that cannot be produced for real: the function that would find it is replaced.)
    """
    from locust_kv.backends.lmdb import generations
    from locust_kv.errors import DiskStoreIndexError

    kv.set_many({f"k{i:04d}": i for i in range(100)})
    kv.backup(tmp_path / "seed.kv")
    kv.clear()
    kv.set("live", 1)
    monkeypatch.setattr(generations, "append_ranks", lambda *args: False)
    with pytest.raises(DiskStoreIndexError, match="nothing was restored"):
        kv.restore(tmp_path / "seed.kv")
    assert kv.list_keys() == ["live"] and kv.count(start="a") == 1
    kv.set("after", 1)  # writers go on
    assert_rank_index_matches(kv)


def test_a_restore_out_of_order_with_repeated_keys_counts_each_key_once(kv: KV) -> None:
    rng = random.Random(2)
    keys = [b"k%04d" % rng.randrange(1_200) for _ in range(2_000)]
    assert kv._backend.replace_all(_batches(keys, 100)) == len(set(keys))
    assert_rank_index_matches(kv)
    _check_ranges(kv, sorted(key.decode() for key in set(keys)), rng)


def test_a_rebuild_beside_writers_leaves_exact_ranks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fanout(monkeypatch, 2)
    monkeypatch.setattr(layout, "SLICE_SECONDS", 0.0)  # a slice per 256 keys
    with open_kv(backend="disk", path=tmp_path / "s.lmdb", track_keys=False) as kv:
        for i in range(3_000):
            kv.set(f"k{i:04d}", i)
        assert _records(kv) == []  # no key index, no ranks
        assert rebuild_beside_writers(kv, lambda i: f"k{i:04d}", 3_500, 4) is True
        assert kv._backend._view.indexed
        assert_rank_index_matches(kv)
        _check_ranges(kv, kv.list_keys(start="k"), random.Random(4))


def test_a_rebuild_alone_appends_the_ranks_slice_after_slice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No writer indexes a key ahead of the build: each slice's ranks are appended, with no search per key."""
    use_fanout(monkeypatch, 2)
    monkeypatch.setattr(layout, "SLICE_SECONDS", 0.0)  # a slice per 256 keys
    added = []
    rank_add = ranks.rank_add
    import locust_kv.backends.lmdb.index as index

    monkeypatch.setattr(index, "rank_add", lambda *args: added.append(args[-1]) or rank_add(*args))
    with open_kv(backend="disk", path=tmp_path / "s.lmdb", track_keys=False) as kv:
        kv.set_many({f"k{i:04d}": i for i in range(3_000)})
        assert kv.rebuild_key_list() is True
        assert added == []
        assert_rank_index_matches(kv)
        _check_ranges(kv, kv.list_keys(start="k"), random.Random(8))


def _churn(path: Path, seed: int, rounds: int) -> None:
    """In a forked child: inserts and deletes of shared keys, every one in its own transaction."""
    with open_kv(backend="disk", path=path) as kv:
        rng = random.Random(seed)
        for _ in range(rounds):
            key = f"k{rng.randrange(1_500):04d}"
            if rng.random() < 0.6:
                kv.set(key, seed)
            else:
                kv.delete(key)


def test_processes_writing_at_once_keep_one_exact_rank_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fanout(monkeypatch, 2)  # inherited by the forked children
    path = tmp_path / "s.lmdb"
    with open_kv(backend="disk", path=path) as kv:
        kv.set("k0000", 0)
        wait_all_ok([fork_call(_churn, path, seed, 3_000) for seed in range(4)])
        assert_rank_index_matches(kv)
        _check_ranges(kv, kv.list_keys(start="k"), random.Random(6))


def _make_rankless(path: Path) -> None:
    """Make the store file at ``path`` what the release before the rank index left: format 1, no ranks databases."""
    env = lmdb.open(str(path), subdir=False, max_dbs=layout.MAX_DBS, lock=True)
    with env.begin(write=True) as txn:
        for name in layout.RANKS_DB_NAMES:
            txn.drop(env.open_db(name, txn=txn), delete=True)
        txn.put(layout.FORMAT_KEY, layout.RANKLESS_FORMAT)
    env.close()


def _format(path: Path) -> bytes | None:
    with lmdb.open(str(path), subdir=False, max_dbs=layout.MAX_DBS, lock=True) as env, env.begin() as txn:
        return txn.get(layout.FORMAT_KEY)


def test_a_store_made_before_the_rank_index_gets_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its key index is emptied and left as an orphaned build on open; the first count finishes the build."""
    use_fanout(monkeypatch, 2)
    path = tmp_path / "s.lmdb"
    with open_kv(backend="disk", path=path) as kv:
        for i in range(2_000):
            kv.set(f"k{i:04d}", i)
    _make_rankless(path)
    with open_kv(backend="disk", path=path) as kv:
        kv.set("k5000", 1)  # a writer of the half-built index keeps it up
        assert kv._backend._view.state.index == engine.ORPHANED_RANKING
        assert kv.count(start="k0100", end="k0200") == 100
        assert kv._backend._view.indexed
        assert_rank_index_matches(kv)
        assert kv.size() == 2_001
    with open_kv(backend="disk", path=path) as kv:  # opened again: nothing more to do
        assert kv._backend.size() == 2_001 and kv._backend._view.indexed
    assert _format(path) == layout.FORMAT == b"2"  # which the release before refuses to open


def test_a_release_that_reads_only_the_rankless_format_refuses_a_store_of_this_one(tmp_path: Path) -> None:
    """What the release before the rank index does with a file of this one: its format check, run here."""
    path = tmp_path / "s.lmdb"
    with open_kv(backend="disk", path=path) as kv:
        kv.set("a", 1)
    assert _format(path) == b"2"
    from locust_kv.errors import DiskStoreOpenError

    with pytest.MonkeyPatch.context() as older:
        older.setattr(engine, "FORMAT", layout.RANKLESS_FORMAT)
        older.setattr(engine, "RANKLESS_FORMAT", layout.RANKLESS_FORMAT)
        with pytest.raises(DiskStoreOpenError, match="format b'2' is not supported"):
            open_kv(backend="disk", path=path)


def test_a_store_without_a_key_index_opens_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "s.lmdb"
    with open_kv(backend="disk", path=path, track_keys=False) as kv:
        kv.set("a", 1)
    _make_rankless(path)
    with open_kv(backend="disk", path=path) as kv:
        assert kv.count(start="a", end="b") == 1 and kv._backend._view.state.index == layout.NONE


def _damage(kv: KV, record: bytes, raw: bytes | None) -> None:
    backend = kv._backend
    backend.size()
    with backend._env.begin(write=True) as txn:
        if raw is None:
            txn.delete(record, db=backend._view.ranks)
        else:
            txn.put(record, raw, db=backend._view.ranks)


def test_a_writer_that_finds_the_ranks_damaged_stops_trusting_the_index(kv: KV) -> None:
    for i in range(500):
        kv.set(f"k{i:04d}", i)
    _damage(kv, b"\x01", None)  # the head of level 1
    kv.set("j", 1)  # a new key below every other finds no fence before it
    assert kv.size() == 501 and kv._backend._view.state.index == layout.NONE
    assert kv.count(start="k0100", end="k0200") == 100  # the walk answers
    assert kv.rebuild_key_list() is True
    assert_rank_index_matches(kv)


def test_a_count_with_a_damaged_rank_index_still_answers_by_walking(kv: KV) -> None:
    for i in range(500):
        kv.set(f"k{i:04d}", i)
    top = max(record[0] for record in _records(kv))
    _damage(kv, bytes((top,)), None)  # the top level's head: a rank cannot start
    assert kv.count(start="k0100", end="k0200") == 100
    assert kv.list_keys(start="k0100", offset=5, limit=1) == ["k0105"]


def test_the_checker_finds_a_count_off_by_one(tmp_path: Path) -> None:
    """``rank_index_problems`` itself sees a wrong count, so that the tests above can fail."""
    with open_kv(backend="disk", path=tmp_path / "s.lmdb") as kv:
        for i in range(20_000):
            kv.set(f"k{i:05d}", i)
        backend = kv._backend
        backend.size()
        view = backend._view
        with backend._env.begin(write=True) as txn:
            assert rank_index_problems(txn, view.slotof, view.ranks) == []
            cursor = txn.cursor(view.ranks)
            assert cursor.set_range(b"\x01\x00")  # the first fence of level 1
            cursor.put(cursor.key(), (int.from_bytes(cursor.value(), "big") + 1).to_bytes(8, "big"))
            assert any("counts" in problem for problem in rank_index_problems(txn, view.slotof, view.ranks))
