"""The disk store's key index, random keys, rebuild, restore and backup, checked against the data itself."""

from __future__ import annotations

import collections
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest

from locust_kv import KV, open_kv
from locust_kv.backends.base import Batch
from locust_kv.backends.lmdb import layout, sampling
from locust_kv.errors import DiskStoreScanError, RestoreInProgressError

from .disk_helpers import (
    assert_rank_index_matches,
    fork_call,
    rebuild_beside_writers,
    use_fanout,
    wait_all_ok,
    wait_exit,
)


@pytest.fixture(autouse=True)
def small_fanout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fences 8 keys apart: every test here keeps a rank index of several levels, checked with the slots."""
    use_fanout(monkeypatch, 3)


def index_of(kv: KV) -> tuple[set[bytes], list[tuple[int, bytes]], dict[bytes, int], bytes]:
    """(data keys, slots in order, key -> slot, index status) read straight from LMDB."""
    backend = kv._backend
    backend.size()  # open the environment and adopt the current state
    view = backend._view
    with backend._env.begin() as txn:
        keys = {k for k, _ in txn.cursor(view.data)}
        slots = [(int.from_bytes(s, "big"), k) for s, k in txn.cursor(view.slots)]
        slot_of = {k: int.from_bytes(s, "big") for k, s in txn.cursor(view.slotof)}
    return keys, slots, slot_of, view.state.index


def assert_index_matches_data(kv: KV) -> None:
    keys, slots, slot_of, status = index_of(kv)
    assert status == b"v"
    assert [slot for slot, _ in slots] == list(range(len(slots)))  # dense
    assert {key for _, key in slots} == keys == set(slot_of)
    assert all(slot_of[key] == slot for slot, key in slots)
    assert_rank_index_matches(kv)


def chi2(counts: collections.Counter[str], expected_keys: list[str], draws: int) -> float:
    expected = draws / len(expected_keys)
    return sum((counts[k] - expected) ** 2 / expected for k in expected_keys)


@pytest.fixture
def kv(tmp_path: Path) -> Iterator[KV]:
    handle = open_kv(backend="disk", path=tmp_path / "s.lmdb")
    yield handle
    handle.close()


# -- the index follows every write ----------------------------------------------------------------


def test_the_index_matches_the_data_after_random_operations(kv: KV) -> None:
    rng = random.Random(7)
    keys = [f"k{i}" for i in range(60)]
    for step in range(4_000):
        key = rng.choice(keys)
        op = rng.randrange(9)
        if op == 0:
            kv.set(key, step)
        elif op == 1:
            kv.delete(key)
        elif op == 2:
            kv.delete_if_exists(key)
        elif op == 3:
            kv.swap(key, step)
        elif op == 4:
            kv.get_or_set(key, step)
        elif op == 5:
            kv.compare_and_swap(key, None, step)
        elif op == 6:
            kv.compare_and_delete(key, kv.get(key) if kv.exists(key) else None)
        elif op == 7:
            kv.set(f"i{key}", 0) if rng.random() < 0.5 else kv.increment_by(f"i{key}", 1)
        elif step % 500 == 0:
            kv.clear()
        if step % 400 == 0:
            assert_index_matches_data(kv)
    assert_index_matches_data(kv)


def test_overwrites_leave_the_index_alone(kv: KV) -> None:
    kv.set("a", 1)
    before = index_of(kv)
    for i in range(50):
        kv.set("a", i)
        kv.swap("a", i)
        kv.increment_by("a", 0) if isinstance(kv.get("a"), int) else None
    assert index_of(kv) == before


# -- random keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matching", "others"),
    [(5, 300), (64, 300), (300, 300), (100, 20_000)],
    ids=["small-range", "just-probed", "rejection", "rare-prefix-walk"],
)
def test_random_key_with_a_prefix_is_uniform(kv: KV, matching: int, others: int) -> None:
    wanted = [f"p:{i:05d}" for i in range(matching)]
    for key in wanted + [f"q:{i:05d}" for i in range(others)]:
        kv.set(key, 1)
    draws = 40 * matching
    counts = collections.Counter(kv.random_key("p:") for _ in range(draws))
    assert set(counts) == set(wanted)
    # 99.99th percentile of chi-square with matching - 1 degrees of freedom, roughly
    assert chi2(counts, wanted, draws) < matching + 6 * (2 * matching) ** 0.5 + 20


def test_random_key_without_an_index_walks_and_is_uniform(tmp_path: Path) -> None:
    with open_kv(backend="disk", path=tmp_path / "s.lmdb", track_keys=False) as kv:
        keys = [f"k{i:03d}" for i in range(30)]
        for key in keys:
            kv.set(key, 1)
        assert index_of(kv)[3] == b"n" and index_of(kv)[1] == []  # nothing indexed
        draws = 3_000
        counts = collections.Counter(kv.random_key() for _ in range(draws))
        assert set(counts) == set(keys)
        assert chi2(counts, keys, draws) < 65
        assert {kv.random_key("k00") for _ in range(100)} == {f"k00{i}" for i in range(10)}


def test_random_key_walks_past_one_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampling, "WALK_CHUNK", 7)
    with open_kv(backend="disk", path=tmp_path / "s.lmdb", track_keys=False) as kv:
        keys = [f"k{i:03d}" for i in range(40)]
        for key in keys:
            kv.set(key, 1)
        draws = 4_000
        counts = collections.Counter(kv.random_key() for _ in range(draws))
        assert set(counts) == set(keys) and chi2(counts, keys, draws) < 85


# -- who keeps an index --------------------------------------------------------------------------------


def test_an_index_is_built_by_rebuild_and_then_kept_by_every_writer(tmp_path: Path) -> None:
    path = tmp_path / "s.lmdb"
    with open_kv(backend="disk", path=path, track_keys=False) as kv:
        for i in range(500):
            kv.set(f"k{i}", i)
        assert index_of(kv)[3] == b"n"
        assert kv.rebuild_key_list() is True
        assert_index_matches_data(kv)
        for i in range(0, 500, 3):  # a track_keys=False writer keeps the store's index up
            kv.delete(f"k{i}")
        kv.set("new", 1)
        assert_index_matches_data(kv)
        kv.clear()  # cleared by a process that does not want an index
        assert index_of(kv)[3] == b"n"
    with open_kv(backend="disk", path=path) as kv:
        kv.set("a", 1)
        assert index_of(kv)[3] == b"n"  # a store without an index: random_key walks
        assert kv.random_key() == "a"
        kv.clear()
        kv.set("b", 1)
        assert_index_matches_data(kv)


def test_rebuild_runs_in_slices_beside_writers(kv: KV, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout, "SLICE_SECONDS", 0.0)  # a slice per 256 keys
    for i in range(5_000):
        kv.set(f"k{i:05d}", i)
    rebuild_beside_writers(kv, lambda i: f"k{i:05d}", 6_000, 5)
    assert_index_matches_data(kv)


def test_a_rebuild_taken_over_by_clear_stops(kv: KV, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout, "SLICE_SECONDS", 0.0)
    for i in range(3_000):
        kv.set(f"k{i:05d}", i)
    rebuilding = gevent.spawn(kv.rebuild_key_list)
    gevent.sleep(0)
    kv.clear()
    assert rebuilding.get(timeout=30) is True
    kv.set("only", 1)
    assert_index_matches_data(kv)
    assert kv.random_key() == "only"


# -- restore -----------------------------------------------------------------------------------------


def _batches(keys: list[bytes], size: int) -> Iterator[Batch]:
    for start in range(0, len(keys), size):
        yield [(key, b'"restored"') for key in keys[start : start + size]], None


def test_restore_replaces_everything_and_random_key_sees_it_at_once(kv: KV) -> None:
    for i in range(100):
        kv.set(f"old{i}", i)
    assert kv.random_key().startswith("old")
    keys = [b"new:%05d" % i for i in range(12_345)]
    assert kv._backend.replace_all(_batches(keys, 1_000)) == len(keys)
    assert kv.size() == len(keys)
    assert all(kv.random_key().startswith("new:") for _ in range(200))
    assert not kv.exists("old1") and kv.get("new:00042") == "restored"
    assert_index_matches_data(kv)
    assert kv._backend._view.state.generation == 1


def test_restore_of_unordered_batches_with_repeated_keys(kv: KV) -> None:
    rows = [[(b"b", b"1"), (b"a", b"2")], [(b"a", b"3"), (b"c", b"4")], [(b"0", b"5")]]
    assert kv._backend.replace_all(iter((batch, None) for batch in rows)) == 4
    assert [(e.key, e.value) for e in kv.list()] == [("0", 5), ("a", 3), ("b", 1), ("c", 4)]
    assert_index_matches_data(kv)


def test_a_failing_restore_leaves_the_data_and_writers_as_they_were(kv: KV) -> None:
    for i in range(50):
        kv.set(f"live{i}", i)

    def broken() -> Iterator[Batch]:
        yield [(b"new:%05d" % i, b"1") for i in range(3_000)], None
        raise ValueError("the snapshot is damaged")

    with pytest.raises(ValueError, match="damaged"):
        kv._backend.replace_all(broken())
    assert kv.size() == 50 and kv.get("live7") == 7
    kv.set("after", 1)
    assert_index_matches_data(kv)
    staging = kv._backend._dbs[1][0]
    with kv._backend._env.begin() as txn:
        assert txn.stat(staging)["entries"] == 0  # the half-filled generation was dropped


def _write_during_restore(path: Path, restoring: Path, result: Path) -> None:
    kv = open_kv(backend="disk", path=path)
    while not restoring.exists():
        time.sleep(0.005)
    try:
        kv.set("child", 1)
        result.write_text("written")
    except RestoreInProgressError:
        assert kv.get("live") == 1  # readers go on
        result.write_text("RestoreInProgressError")


def test_writers_in_another_process_fail_fast_during_a_restore(kv: KV, tmp_path: Path) -> None:
    kv.set("live", 1)
    restoring, result = tmp_path / "restoring", tmp_path / "result"
    pid = fork_call(_write_during_restore, tmp_path / "s.lmdb", restoring, result)

    def batches() -> Iterator[Batch]:
        yield [(b"a", b"1")], None
        restoring.write_text("now")
        deadline = time.monotonic() + 60
        while not result.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        yield [(b"b", b"2")], None

    assert kv._backend.replace_all(batches()) == 2
    wait_all_ok([pid])
    assert result.read_text() == "RestoreInProgressError"
    assert kv.list() == kv.scan().entries and [e.key for e in kv.list()] == ["a", "b"]


def _restore_then_die(path: Path) -> None:
    kv = open_kv(backend="disk", path=path)

    def batches() -> Iterator[Batch]:
        yield [(b"half:%04d" % i, b"1") for i in range(2_500)], None
        os.kill(os.getpid(), signal.SIGKILL)
        yield [], None

    kv._backend.replace_all(batches())


def test_a_restore_whose_process_died_is_cleaned_up_by_the_next_writer(kv: KV, tmp_path: Path) -> None:
    kv.set("live", 1)
    pid = fork_call(_restore_then_die, tmp_path / "s.lmdb")
    assert wait_exit(pid) == -signal.SIGKILL
    assert kv._backend.random_key(b"") == b"live"
    with kv._backend._env.begin() as txn:
        assert layout.State.decode(txn.get(layout.STATE_KEY)).restorer == pid  # the dead restorer's flag
    kv.set("after", 2)  # its lock is free: the writer drops its half-filled generation and goes on
    assert {e.key for e in kv.list()} == {"live", "after"}
    with kv._backend._env.begin() as txn:
        assert layout.State.decode(txn.get(layout.STATE_KEY)).restorer == 0
        assert txn.stat(kv._backend._dbs[1][0])["entries"] == 0
    assert_index_matches_data(kv)


# -- backup ------------------------------------------------------------------------------------------


def test_a_backup_reads_one_snapshot_while_writers_go_on(kv: KV) -> None:
    for i in range(3_000):
        kv.set(f"k{i:05d}", i)
    reader = kv._backend.begin_backup(False)
    assert reader.point_in_time is True
    rows = []
    for n, (batch, expiries) in enumerate(reader.batches(500)):
        assert expiries is None  # no entry expires
        rows += batch
        kv.set(f"k{n:05d}", -1)  # a writer between batches
        kv.delete(f"k{2_999 - n:05d}")
        kv.set(f"z{n}", 1)
    reader.close()
    assert [int(v) for _, v in rows] == list(range(3_000))


def test_a_backup_stops_with_an_error_when_the_map_must_grow_under_it(tmp_path: Path) -> None:
    with open_kv(backend="disk", path=tmp_path / "s.lmdb", map_size=1 << 16) as kv:
        for i in range(100):
            kv.set(f"k{i:03d}", i)
        reader = kv._backend.begin_backup(False)
        batches = reader.batches(10)
        assert len(next(batches)[0]) == 10
        for i in range(2_000):  # the map doubles: every transaction of the process ends
            kv.set(f"big{i}", "x" * 300)
        with pytest.raises(DiskStoreScanError, match="retry the backup"):
            next(batches)
        reader.close()
        assert kv.backup(tmp_path / "again.kv").total_entries == 2_100


@pytest.mark.parametrize(("window", "matching"), [(200, 150), (100, 150)], ids=["range-in-window", "draws-again"])
def test_random_key_when_every_draw_misses_is_uniform_and_never_walks(
    kv: KV, monkeypatch: pytest.MonkeyPatch, window: int, matching: int
) -> None:
    """Draws that all miss read at most WINDOW keys of the range: sampled from them, or drawn again."""
    monkeypatch.setattr(sampling, "REJECTION_TRIES", 1)  # the first probe's draws mostly miss
    monkeypatch.setattr(sampling, "CHUNK_TRIES", 3)  # and so do several retries
    monkeypatch.setattr(sampling, "WINDOW", window)
    walked: list[bytes] = []
    monkeypatch.setattr(sampling, "walk_chunk", lambda *args: walked.append(b"") or ([], None, True))
    probe = sampling.random_probe
    answers: collections.Counter[object] = collections.Counter()

    def counted(*args: object) -> object:
        answer = probe(*args)  # type: ignore[arg-type]
        answers[answer if answer is sampling.RETRY else type(answer)] += 1
        return answer

    monkeypatch.setattr(sampling, "random_probe", counted)
    wanted = [f"p:{i:05d}" for i in range(matching)]
    for key in wanted + [f"q:{i:05d}" for i in range(2_000)]:
        kv.set(key, 1)
    draws = 40 * matching
    counts = collections.Counter(kv.random_key("p:") for _ in range(draws))
    assert not walked
    assert (answers[sampling.RETRY] > 0) == (matching > window)
    assert set(counts) == set(wanted)
    assert chi2(counts, wanted, draws) < matching + 6 * (2 * matching) ** 0.5 + 20


# -- several keys: random slots raced against a read of the range ------------------------------


class _CountingReader(sampling.RangeReader):
    read_keys: list[int] = []

    def read(self, wanted: int) -> None:
        before = len(self.keys)
        super().read(wanted)
        _CountingReader.read_keys.append(len(self.keys) - before)


@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    _CountingReader.read_keys = []
    monkeypatch.setattr(sampling, "RangeReader", _CountingReader)
    return _CountingReader.read_keys


def _fill(kv: KV, matching: int, others: int) -> list[str]:
    wanted = [f"p:{i:05d}" for i in range(matching)]
    kv.set_many([(key, 1) for key in wanted] + [(f"q:{i:05d}", 1) for i in range(others)])
    return wanted


@pytest.mark.parametrize("call", ["random_keys", "random_keys_repeats", "claim_random_many", "pop_random_many"])
def test_draws_for_several_keys_of_a_tenth_never_read_the_whole_range(
    kv: KV, counted_reads: list[int], call: str
) -> None:
    """A prefix holding a tenth of the store (3,000 of 30,000 keys), 10 keys a call.

    The 64 + 40 misses a first round allows run out in a good share of the
    calls (90 are expected); the range is then read only as far as the draws
    went, and the next round finds the keys. Reading all 3,000 keys (what
    the draws' fallback did before the race) never happens.
    """
    wanted = set(_fill(kv, 3_000, 27_000))
    per_call = []
    for _ in range(60):
        counted_reads.clear()
        if call == "random_keys":
            got = kv.random_keys("p:", 10)
        elif call == "random_keys_repeats":
            got = kv.random_keys("p:", 10, unique=False)
        elif call == "claim_random_many":
            claims = kv.claim_random_many("p:", 10)
            got = [claim.key for claim in claims]
            kv.release_claims(claims)
        else:
            got = [entry.key for entry in kv.pop_random_many("p:", 10)]
            kv.set_many([(key, 1) for key in got])
        assert len(got) == 10 and set(got) <= wanted
        per_call.append(sum(counted_reads))
    assert any(per_call)  # some first rounds ran out (else this test shows nothing)
    assert max(per_call) < 1_000


@pytest.mark.parametrize("call", ["random_keys", "claim_random_many"])
def test_several_keys_of_a_small_share_are_a_uniform_subset_whichever_side_wins(
    kv: KV, counted_reads: list[int], call: str
) -> None:
    """150 of 5,150 keys: rounds of draws often miss, the range read sometimes ends first; the subsets stay uniform."""
    wanted = _fill(kv, 150, 5_000)
    calls = 600
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(calls):
        if call == "random_keys":
            got = kv.random_keys("p:", 5)
        else:
            claims = kv.claim_random_many("p:", 5)
            got = [claim.key for claim in claims]
            kv.release_claims(claims)
        assert len(got) == len(set(got)) == 5
        counts.update(got)
    assert set(counts) <= set(wanted)
    assert sum(counted_reads) > 0  # the range was read in some calls: both sides of the race answered
    assert chi2(counts, wanted, 5 * calls) < 150 + 6 * 300**0.5 + 20


def test_independent_draws_of_a_small_share_are_uniform(kv: KV) -> None:
    wanted = _fill(kv, 150, 5_000)
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(600):
        counts.update(kv.random_keys("p:", 5, unique=False))
    assert set(counts) <= set(wanted)
    assert chi2(counts, wanted, 3_000) < 150 + 6 * 300**0.5 + 20


# -- counts of a large range: one read transaction held across pauses ----------------------------


def test_a_count_of_a_large_range_lets_other_greenlets_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the key index (so without ranks), a count walks the range, pausing between steps."""
    from locust_kv.backends.lmdb import ranges

    monkeypatch.setattr(ranges, "COUNT_STEP", 256)
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb", track_keys=False)
    _fill(kv, 20_000, 100)
    woke = 0

    def ticker() -> None:
        nonlocal woke
        while True:
            woke += 1
            gevent.sleep(0)

    running = gevent.spawn(ticker)
    gevent.sleep(0)
    before = woke
    assert kv.count("p:") == 20_000
    during = woke - before
    assert kv.allocation_stats("p:").total == 20_000
    running.kill()
    kv.close()
    assert during >= 20  # about 20,000 / 256 pauses


@pytest.mark.parametrize("grow", [False, True], ids=["writers", "writers-growing-the-map"])
def test_a_count_in_steps_is_of_one_snapshot_while_writers_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grow: bool
) -> None:
    """Writers add keys of the range ten at a time between the count's steps: every count is of one moment.

    Without the key index, so that the count walks the range in steps.

    With ``grow``, the writes also make the map grow, which ends every
    transaction of the process: the count starts again and still answers
    for one moment.
    """
    from locust_kv.backends.lmdb import engine, ranges

    restarts = 0

    class Counted(engine._Interrupted):
        def __init__(self) -> None:
            nonlocal restarts
            restarts += 1

    monkeypatch.setattr(engine, "_Interrupted", Counted)
    monkeypatch.setattr(ranges, "COUNT_STEP", 128)
    with open_kv(
        backend="disk", path=tmp_path / "s.lmdb", map_size=1 << 20 if grow else 64 << 20, track_keys=False
    ) as kv:
        _fill(kv, 5_003, 0)
        stop = False
        written = 0

        def writer() -> None:
            nonlocal written
            while not stop and written < 3_000:  # bounded: each count's pauses let it add keys to the range
                batch = [(f"p:w{written + i:07d}", "x" * (2_000 if grow else 1)) for i in range(10)]
                kv.set_many(batch)
                written += 10
                gevent.sleep(0)

        writers = gevent.spawn(writer)
        resizes = kv._backend._resizes
        counts = []
        for _ in range(20):
            counts.append(kv.count("p:"))
            gevent.sleep(0)
        stop = True
        writers.get(timeout=60)
        assert written > 0
        assert all(count % 10 == 3 for count in counts), counts  # never a count that mixes two moments
        if grow:
            # Each growth restarts the count, which may then end only once the writer has: the restarts
            # are the proof that the writes came between its steps.
            assert kv._backend._resizes > resizes and restarts > 0
        else:
            assert counts[-1] > counts[0] and restarts == 0
