"""The memory backend's long operations let other greenlets run, and stay atomic while they do.

Issue 14's stall budget: rebuild_key_list, clear, backup and delete_prefix
work in short slices with a pause between them, and a store's dropped
structures are freed a slice at a time. No timing is asserted (machines
are noisy): a ticker greenlet must wake up during each call, and writers
interleaved with it must find the atomicity each operation promises.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
from gevent.monkey import get_original

from locust_kv import open_kv
from locust_kv.backends import memory
from locust_kv.backends.base import Batch
from locust_kv.backends.memory import _SHARDS, MemoryBackend
from locust_kv.errors import BackupInProgressError

_start_new_thread = get_original("_thread", "start_new_thread")
_allocate_lock = get_original("_thread", "allocate_lock")

KEYS = 100_000


def _filled(count: int = KEYS, track_keys: bool = True) -> MemoryBackend:
    backend = MemoryBackend(track_keys=track_keys, name="stalls")
    rows = [(b"k:%07d" % i, b"%d" % i) for i in range(count)]
    backend.replace_all(iter([(rows[i : i + 10_000], None) for i in range(0, count, 10_000)]))
    return backend


def _check_index(backend: MemoryBackend) -> set[bytes]:
    """The index agrees with the data exactly; the keys."""
    keys = {key for data in backend._shards for key in data}
    index = backend._index
    assert type(index) is memory._Index and not index.journals  # no rebuild follows it any more
    assert list(index.order) == sorted(keys)
    index.order._check()  # sortedcontainers' own invariant check: sublists, maxes, load (bulk appends use its internals)
    if keys:  # the positional index (dropped by bulk appends) is rebuilt right
        middle = sorted(keys)[len(keys) // 2]
        assert index.order.bisect_left(middle) == len(keys) // 2 and index.order[len(keys) // 2] == middle
    assert backend.size() == len(keys) == backend.count(b"", None)
    if index.tracked:
        assert len(index.slots) == len(keys) and set(index.slots) == keys
        for slot, key in enumerate(index.slots):
            assert index.slot_of[hash(key) % _SHARDS][key] == slot
        assert sum(len(slots) for slots in index.slot_of) == len(keys)
    assert backend._bytes == sum(len(k) + len(v) for data in backend._shards for k, v in data.items())
    if keys:
        assert all(backend.random_key(b"") in keys for _ in range(200))
        scanned, more = backend.scan_keys(b"", None, 0, 0)
        assert scanned == sorted(keys) and not more
    return keys


def _ticking(work: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``work`` in this greenlet while a ticker greenlet counts its wake-ups; the result and the count."""
    ticks = 0

    def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            gevent.sleep(0)

    spinner = gevent.spawn(ticker)
    gevent.sleep(0)
    try:
        before = ticks
        result = work()
        during = ticks - before
    finally:
        spinner.kill()
    return result, during


class _Writer:
    """A greenlet that changes keys, a random one at a time, until stopped; what it did and when."""

    def __init__(self, backend: MemoryBackend, seed: int) -> None:
        self.backend = backend
        self.rng = random.Random(seed)
        self.phase = "before"  # set by the test: "during" once the operation began, "after" once it returned
        self.writes: dict[bytes, str] = {}  # key -> the phase of its last write
        self.done = {"before": 0, "during": 0, "after": 0}
        self.stopped = False
        self.greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        n = 0
        while not self.stopped:
            n += 1
            key = b"k:%07d" % self.rng.randrange(KEYS * 2)  # half of them exist, spread over the whole range
            if n % 3 == 0:
                self.backend.delete(key)
            else:
                self.backend.set(key, b"w%d" % n)
                self.writes[key] = self.phase
            self.done[self.phase] += 1
            gevent.sleep(0)

    def stop(self) -> None:
        self.stopped = True
        self.greenlet.get(timeout=30)


@pytest.mark.parametrize("track_keys", [True, False], ids=["tracked", "untracked"])
def test_rebuild_lets_other_greenlets_run_and_swaps_in_an_exact_index(track_keys: bool) -> None:
    backend = _filled(track_keys=track_keys)
    old = backend._index
    _, ticks = _ticking(backend.rebuild_key_list)
    assert ticks >= 5
    assert backend._index is not old  # rebuilt and swapped in
    assert len(old.order) == 0 and not old.slots  # the old index was freed (a slice at a time)
    assert len(_check_index(backend)) == KEYS


def test_rebuild_beside_writers_follows_their_changes_and_ends_exact() -> None:
    backend = _filled()
    old = backend._index
    writer = _Writer(backend, seed=1)
    writer.phase = "during"
    _, ticks = _ticking(backend.rebuild_key_list)
    writer.phase = "after"
    during = writer.done["during"]
    writer.stop()
    assert ticks >= 5 and during >= 5  # every attempt saw changes: the last one followed them
    assert backend._index is not old
    _check_index(backend)


def test_a_rebuild_that_follows_writers_replays_changes_on_both_sides_of_its_cursor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_REBUILD_ATTEMPTS", 0)  # straight to the build that follows the writers
    monkeypatch.setattr(memory, "_REBUILD_SLICE", 500)
    backend = _filled(20_000)
    rng = random.Random(2)
    real_pause = memory.pause

    def pause() -> None:  # between two slices: changes below and above the keys copied so far
        for _ in range(20):
            key = b"k:%07d" % rng.randrange(40_000)
            if rng.random() < 0.4:
                backend.delete(key)
            else:
                backend.set(key, b"x")
        backend.set_many([(b"k:%07d.5" % rng.randrange(40_000), b"y") for _ in range(5)])
        real_pause()

    monkeypatch.setattr(memory, "pause", pause)
    old = backend._index
    backend.rebuild_key_list()
    assert backend._index is not old
    assert type(old) is memory._Index and not old.journals  # following ended
    _check_index(backend)


def test_a_clear_during_a_rebuild_wins_and_the_rebuild_gives_up() -> None:
    backend = _filled()
    rebuilding = gevent.spawn(backend.rebuild_key_list)
    gevent.sleep(0)
    gevent.sleep(0)
    backend.clear()
    backend.set(b"after", b"1")
    rebuilding.get(timeout=30)
    assert _check_index(backend) == {b"after"}


def test_a_killed_rebuild_stops_following_the_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_REBUILD_ATTEMPTS", 0)
    backend = _filled()
    rebuilding = gevent.spawn(backend.rebuild_key_list)
    gevent.sleep(0)
    assert type(backend._index) is memory._FollowedIndex
    rebuilding.kill(timeout=30)
    backend.set(b"k:9999999", b"1")
    assert len(_check_index(backend)) == KEYS + 1


def test_clear_lets_other_greenlets_run_and_is_one_instant_for_writers() -> None:
    backend = _filled()
    writer = _Writer(backend, seed=3)
    gevent.sleep(0)
    writer.phase = "during"  # clear empties the store in its first step, before it pauses
    _, ticks = _ticking(backend.clear)
    writer.phase = "after"
    during = writer.done["during"]
    writer.stop()
    assert ticks >= 5 and during >= 5  # the old data is freed while writers go on
    keys = _check_index(backend)
    # Every key left was written after the clear began: nothing from before survives.
    assert keys and all(writer.writes.get(key) in ("during", "after") for key in keys)


def test_close_and_a_failed_restore_free_a_slice_at_a_time() -> None:
    backend = _filled()
    _, ticks = _ticking(backend.close)
    assert ticks >= 5 and backend.size() == 0

    backend = _filled()

    def failing() -> Iterator[Batch]:
        yield [(b"n:%07d" % i, b"1") for i in range(KEYS)], None
        raise RuntimeError("the snapshot broke")

    def restore() -> None:
        with pytest.raises(RuntimeError):
            backend.replace_all(failing())

    _, ticks = _ticking(restore)
    assert ticks >= 5
    assert len(_check_index(backend)) == KEYS  # the old data kept
    backend.set(b"k:9999999", b"1")  # writers accepted again


def test_delete_prefix_lets_other_greenlets_run_and_keeps_the_index_exact() -> None:
    backend = _filled()
    writer = _Writer(backend, seed=4)
    writer.phase = "during"
    (deleted, complete), ticks = _ticking(lambda: backend.delete_prefix(b"k:00", 0))
    writer.stop()
    assert complete and deleted > 0 and ticks >= 5
    # Whatever is left under the prefix, the writer wrote meanwhile (delete_prefix is atomic per slice only).
    assert all(writer.writes.get(key) == "during" for key in backend.scan_keys(b"k:00", b"k:01", 0, 0)[0])
    _check_index(backend)


@pytest.mark.parametrize("concurrent", [False, True], ids=["strict", "concurrent"])
def test_backup_lets_other_greenlets_run(tmp_path: Path, concurrent: bool) -> None:
    kv = open_kv(backend="memory", name=f"stalls-backup-{concurrent}", serialization="string")
    try:
        rows = [(b"k:%07d" % i, b"%d" % i) for i in range(KEYS)]
        kv._backend.replace_all(iter([(rows, None)]))  # type: ignore[attr-defined]
        summary, ticks = _ticking(lambda: kv.backup(tmp_path / "b.kv", allow_concurrent_writes=concurrent))
        assert ticks >= 5 and summary.total_entries == KEYS
        copy = open_kv(backend="memory", name=f"stalls-backup-copy-{concurrent}", serialization="string")
        try:
            copy.restore(tmp_path / "b.kv")
            assert copy.size() == KEYS and copy.get("k:0012345") == "12345"
        finally:
            copy.close()
    finally:
        kv.close()


def test_a_strict_backup_read_in_slices_is_still_point_in_time() -> None:
    backend = _filled()
    reader = backend.begin_backup(allow_concurrent_writes=False)
    refused = 0

    def writer() -> None:
        nonlocal refused
        for i in range(200):
            try:
                backend.set(b"k:%07d" % (KEYS - 1 - i), b"new")
            except BackupInProgressError:
                refused += 1
            gevent.sleep(0)

    writing = gevent.spawn(writer)
    got = [row for batch, _ in reader.batches(7_000) for row in batch]
    reader.close()
    writing.get(timeout=30)
    assert refused > 0
    assert got == [(b"k:%07d" % i, b"%d" % i) for i in range(KEYS)]


def test_batches_keep_their_size_when_read_in_slices() -> None:
    backend = _filled(25_000)
    reader = backend.begin_backup(allow_concurrent_writes=True)
    sizes = [len(batch) for batch, _ in reader.batches(10_000)]
    reader.close()
    assert sizes == [10_000, 10_000, 5_000]


def test_rebuild_and_clear_in_os_threads_beside_a_writer_thread() -> None:
    """Outside gevent the pauses do nothing; a rebuild in one OS thread still follows a writer in another."""
    backend = _filled()
    stop = False
    errors: list[BaseException] = []
    done = [_allocate_lock(), _allocate_lock()]

    def run(work: Callable[[], object], finished: Any) -> None:
        try:
            work()
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            finished.release()

    def writes() -> None:
        rng = random.Random(5)
        while not stop:
            key = b"k:%07d" % rng.randrange(KEYS * 2)
            if rng.random() < 0.6:
                backend.set(key, b"t")
            else:
                backend.delete(key)

    old = backend._index
    for lock in done:
        lock.acquire()
    _start_new_thread(run, (writes, done[0]))
    _start_new_thread(run, (backend.rebuild_key_list, done[1]))
    done[1].acquire()
    stop = True
    done[0].acquire()
    assert not errors
    assert backend._index is not old
    _check_index(backend)
    backend.clear()
    assert not _check_index(backend)
