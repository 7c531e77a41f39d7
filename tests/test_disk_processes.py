"""One disk store shared by real processes: atomicity, fork safety, kill -9, reader slots, growth."""

from __future__ import annotations

import collections
import json
import os
import signal
import threading
import time
from pathlib import Path

import lmdb
import pytest

from locust_kv import KV, open_kv
from locust_kv.errors import BackupInProgressError, DiskStoreFullError

from .disk_helpers import (
    fork_call,
    python_child,
    reader_pids,
    run_python,
    wait_all_ok,
    wait_exit,
)

PROCESSES = 4


# -- atomicity across processes -----------------------------------------------------


def _increment(kv: KV, times: int) -> None:
    for _ in range(times):
        kv.increment_by("counter", 1)


def test_forked_processes_incrementing_one_key_end_exact(tmp_path: Path) -> None:
    """As with Locust's --processes: the handle is opened before the fork, used only in the children."""
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb")
    pids = [fork_call(_increment, kv, 5_000) for _ in range(PROCESSES)]
    wait_all_ok(pids)
    assert kv.get("counter") == PROCESSES * 5_000
    kv.close()


def test_separate_programs_incrementing_one_key_end_exact(tmp_path: Path) -> None:
    path = tmp_path / "s.lmdb"
    script = f"""
        from locust_kv import open_kv
        kv = open_kv(backend="disk", path={str(path)!r})
        for _ in range(5000):
            kv.increment_by("counter", 1)
        kv.set("pid:" + str(__import__("os").getpid()), True)
    """
    children = [python_child(script) for _ in range(PROCESSES)]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    with open_kv(backend="disk", path=path) as kv:
        assert kv.get("counter") == PROCESSES * 5_000
        assert kv.size() == 1 + PROCESSES


def _race(kv: KV, race: str, rounds: int, out: Path) -> None:
    wins = []
    for n in range(rounds):
        key = f"race:{n}"
        while not kv.exists(f"go:{n}"):
            pass
        if race == "compare_and_swap":
            won = kv.compare_and_swap(key, None, os.getpid())
        elif race == "get_or_set":
            won = not kv.get_or_set(key, os.getpid()).loaded
        elif race == "delete_if_exists":
            won = kv.delete_if_exists(key)
        else:
            won = kv.compare_and_delete(key, "present")
        if won:
            wins.append(n)
    out.write_text(json.dumps(wins))


@pytest.mark.parametrize("race", ["compare_and_swap", "get_or_set", "delete_if_exists", "compare_and_delete"])
def test_a_race_across_processes_has_exactly_one_winner(tmp_path: Path, race: str) -> None:
    rounds = 150
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb")
    if race in ("delete_if_exists", "compare_and_delete"):
        for n in range(rounds):
            kv.set(f"race:{n}", "present")
    outs = [tmp_path / f"wins{i}.json" for i in range(PROCESSES)]
    pids = [fork_call(_race, kv, race, rounds, out) for out in outs]
    for n in range(rounds):
        kv.set(f"go:{n}", True)  # every child spins on this, then races
    wait_all_ok(pids)
    wins = collections.Counter(n for out in outs for n in json.loads(out.read_text()))
    assert wins == {n: 1 for n in range(rounds)}
    if race in ("compare_and_swap", "get_or_set"):
        assert all(kv.get(f"race:{n}") in set(pids) for n in range(rounds))
    else:
        assert kv.list(prefix="race:") == []
    kv.close()


def _write_range(kv: KV, start: int, count: int) -> None:
    for i in range(start, start + count):
        kv.set(f"key:{i:06d}", i)


def test_random_key_and_size_see_keys_written_by_every_process(tmp_path: Path) -> None:
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb")
    kv.set("key:parent", -1)
    pids = [fork_call(_write_range, kv, 1_000 * p, 1_000) for p in range(PROCESSES)]
    wait_all_ok(pids)
    assert kv.size() == PROCESSES * 1_000 + 1
    draws = 20_000
    by_writer = collections.Counter(
        "parent" if key == "key:parent" else int(key[4:]) // 1_000 for key in (kv.random_key() for _ in range(draws))
    )
    for p in range(PROCESSES):
        # each writer's thousand keys: expected draws / (4001 / 1000), far from zero
        assert abs(by_writer[p] - draws * 1_000 / 4_001) < 400, by_writer
    pids = [fork_call(_delete_range, kv, 1_000 * p, 1_000) for p in range(PROCESSES)]
    wait_all_ok(pids)
    assert kv.size() == 1
    assert {kv.random_key() for _ in range(50)} == {"key:parent"}
    kv.close()


def _delete_range(kv: KV, start: int, count: int) -> None:
    for i in range(start, start + count):
        assert kv.delete_if_exists(f"key:{i:06d}")


def test_clear_in_one_process_is_seen_at_once_by_another(tmp_path: Path) -> None:
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb")
    for i in range(100):
        kv.set(f"k{i}", i)
    assert kv.size() == 100  # this process has seen the state
    wait_all_ok([fork_call(lambda: open_kv(backend="disk", path=tmp_path / "s.lmdb").clear())])
    assert kv.size() == 0 and kv.random_key() == "" and not kv.exists("k1")
    kv.set("after", 1)
    assert kv.random_key() == "after"
    kv.close()


# -- fork safety --------------------------------------------------------------------


def _use_after_fork(kv: KV, out: Path) -> None:
    backend = kv._backend
    inherited = backend._env
    kv.increment_by("child", 1)
    out.write_text(json.dumps({"inherited_closed": inherited is None, "own": backend._env is not None}))


def test_a_handle_used_before_fork_works_in_the_child_on_its_own_environment(tmp_path: Path) -> None:
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb")
    kv.set("parent", 1)  # the parent's environment is open at the fork
    parent_env = kv._backend._env
    assert parent_env is not None
    out = tmp_path / "child.json"
    wait_all_ok([fork_call(_use_after_fork, kv, out)])
    assert json.loads(out.read_text()) == {"inherited_closed": True, "own": True}
    assert kv._backend._env is parent_env  # the parent keeps its own
    kv.set("parent", 2)
    assert kv.get("child") == 1 and kv.get("parent") == 2
    kv.close()


def _work_beside_a_backup(kv: KV, out: Path) -> None:
    try:
        kv.backup(out.with_suffix(".kv"))
        refused = False
    except BackupInProgressError:
        refused = True  # the parent's backup, in another process now
    kv.set("from-child", 1)
    out.write_text(json.dumps([refused, len(kv.list())]))


def test_a_fork_during_a_backup_leaves_the_parents_reader_slot_alone(tmp_path: Path) -> None:
    """The child drops the inherited read transaction unaborted; the parent's snapshot stays valid."""
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb")
    for i in range(1_000):
        kv.set(f"k{i:04d}", i)
    reader = kv._backend.begin_backup(False)
    batches = reader.batches(100)
    first, _ = next(batches)
    env = kv._backend._env
    assert os.getpid() in reader_pids(env)

    out = tmp_path / "child.json"
    wait_all_ok([fork_call(_work_beside_a_backup, kv, out)])
    assert json.loads(out.read_text()) == [True, 1_001]
    assert os.getpid() in reader_pids(env)
    for i in range(1_000):  # the snapshot must not see these, however many pages they recycle
        kv.set(f"k{i:04d}", -i)
    rows = first + [row for batch, _ in batches for row in batch]
    reader.close()
    assert [int(value) for _, value in rows] == list(range(1_000))  # no "from-child", no negatives
    kv.close()


# -- kill -9 --------------------------------------------------------------------------


def test_committed_writes_survive_kill_9_of_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "s.lmdb"
    child = python_child(
        f"""
        import sys
        from locust_kv import open_kv
        kv = open_kv(backend="disk", path={str(path)!r})
        i = 0
        while True:
            kv.set(f"seq:{{i:07d}}", i)   # committed when set() returns
            kv.increment_by("count", 1)
            print(i, flush=True)            # so the parent knows i is committed
            i += 1
        """
    )
    assert child.stdout is not None
    acknowledged = -1
    deadline = time.monotonic() + 60
    while acknowledged < 3_000 and time.monotonic() < deadline:
        acknowledged = int(child.stdout.readline())
    child.send_signal(signal.SIGKILL)  # most likely inside a write transaction
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    with open_kv(backend="disk", path=path) as kv:
        keys = [entry.key for entry in kv.scan(prefix="seq:").entries]
        assert len(keys) > acknowledged
        assert keys == [f"seq:{i:07d}" for i in range(len(keys))]  # nothing committed lost, no hole
        assert kv.get("count") in (len(keys) - 1, len(keys))  # the kill may fall between the two writes
        assert kv.size() == len(keys) + 1
        kv.set("after", "writable")
        assert kv.get("after") == "writable"


def _hold_write_transaction(kv: KV, ready: Path) -> None:
    backend = kv._backend
    kv.set("committed", 1)
    txn = backend._begin(None, None, True)
    txn.put(b"uncommitted", b"1", db=backend._view.data)
    ready.write_text("holding the writer lock")
    time.sleep(600)


def test_a_writer_killed_inside_its_transaction_releases_the_lock_and_loses_only_that_transaction(tmp_path: Path) -> None:
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb")
    ready = tmp_path / "ready"
    pid = fork_call(_hold_write_transaction, kv, ready)
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.exists()
    os.kill(pid, signal.SIGKILL)
    assert wait_exit(pid) == -signal.SIGKILL
    kv.set("parent", 1)  # LMDB's robust mutex: the dead owner's lock is recovered
    assert kv.get("committed") == 1
    assert not kv.exists("uncommitted")
    kv.close()


def test_reader_slots_of_killed_processes_are_reclaimed(tmp_path: Path) -> None:
    path = tmp_path / "s.lmdb"
    with open_kv(backend="disk", path=path) as kv:
        kv.set("k", 1)
    child = python_child(
        f"""
        import time
        from locust_kv import open_kv
        kv = open_kv(backend="disk", path={str(path)!r})
        reader = kv._backend.begin_backup(False)   # holds a read transaction and the backup lock
        print("reading", flush=True)
        time.sleep(600)
        """
    )
    assert child.stdout is not None and child.stdout.readline() == "reading\n"
    with open_kv(backend="disk", path=path) as kv:
        assert kv.size() == 1  # opens this process's environment
        assert child.pid in reader_pids(kv._backend._env)
        with pytest.raises(BackupInProgressError):
            kv.backup(tmp_path / "refused.kv")
    child.kill()
    child.wait(timeout=30)
    with open_kv(backend="disk", path=path) as kv:
        assert kv.size() == 1  # opening the environment runs reader_check()
        assert child.pid not in reader_pids(kv._backend._env)
        assert kv.backup(tmp_path / "ok.kv").total_entries == 1  # its backup lock died with it


# -- growth -------------------------------------------------------------------------------


def _grow(kv: KV, writer: int, count: int) -> None:
    for i in range(count):
        kv.set(f"w{writer}:{i:05d}", {"writer": writer, "i": i, "pad": "x" * 200})


def test_the_map_grows_from_a_tiny_size_while_several_processes_write(tmp_path: Path) -> None:
    path = tmp_path / "s.lmdb"
    kv = open_kv(backend="disk", path=path, map_size=1 << 16)
    count = 3_000
    wait_all_ok([fork_call(_grow, kv, writer, count) for writer in range(PROCESSES)])
    assert kv.size() == PROCESSES * count
    assert kv._backend._map_size >= PROCESSES * count * 200  # adopted what the writers grew it to
    for writer in range(PROCESSES):
        entries = kv.list(prefix=f"w{writer}:")
        assert [e.value["i"] for e in entries] == list(range(count))
    kv.close()
    # A fresh program reads every page: the environment was never damaged.
    out = run_python(
        f"""
        import lmdb
        from locust_kv import open_kv
        kv = open_kv(backend="disk", path={str(path)!r})
        print(kv.size(), sum(1 for _ in kv.scan().entries), kv.random_key()[:1])
        """
    )
    assert out.split() == [str(PROCESSES * count), str(PROCESSES * count), "w"]


def test_a_map_that_cannot_grow_is_full_and_stays_readable(tmp_path: Path) -> None:
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb", map_size=1 << 16, max_map_size=1 << 20)
    written = 0
    with pytest.raises(DiskStoreFullError) as caught:
        for written in range(100_000):
            kv.set(f"k{written:06d}", "x" * 500)
    assert "max_map_size" in str(caught.value)
    # LMDB's MapFullError, or refused before it: the last part of the map is kept for deletes.
    assert isinstance(caught.value.__cause__, lmdb.MapFullError) or "kept for deletes" in str(caught.value)
    assert kv._backend._map_size == 1 << 20
    assert written > 100 and kv.size() == written
    assert kv.get("k000000") == "x" * 500
    assert kv.random_key().startswith("k")
    kv.close()


def test_the_map_grows_while_os_threads_read_and_write(tmp_path: Path) -> None:
    """Resizing ends every transaction of the process: other threads' reads retry, their writes are waited for."""

    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb", map_size=1 << 16)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(1_500):
                kv.set(f"t{n}:{i:05d}", "x" * 150)
                assert kv.get(f"t{n}:{i:05d}") == "x" * 150
                kv.random_key()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert kv.size() == 4 * 1_500
    assert kv._backend._resizes >= 3
    kv.close()


def _count_in_child(kv: KV, out: Path) -> None:
    kv.set("from-child", 1)
    out.write_text(json.dumps([kv.count("p:"), kv.get("from-child") == 1]))


def test_a_fork_during_a_count_in_steps_leaves_the_parents_reader_slot_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A count paused between steps holds a read transaction: the child drops it unaborted, the parent's count goes on.

    Without the key index, so that the count walks the range in steps.
    """
    import gevent

    from locust_kv.backends.lmdb import ranges

    monkeypatch.setattr(ranges, "COUNT_STEP", 64)
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb", track_keys=False)
    kv.set_many([(f"p:{i:05d}", i) for i in range(5_000)])
    counting = gevent.spawn(kv.count, "p:")
    gevent.sleep(0)  # the count ran its first steps and paused, its transaction open
    env = kv._backend._env
    assert kv._backend._step_reads and os.getpid() in reader_pids(env)

    out = tmp_path / "child.json"
    wait_all_ok([fork_call(_count_in_child, kv, out)])
    assert json.loads(out.read_text()) == [5_000, True]
    assert os.getpid() in reader_pids(env)  # the child did not free the parent's slot
    kv.delete_many([f"p:{i:05d}" for i in range(0, 5_000, 2)])  # pages the count's snapshot still needs
    assert counting.get(timeout=60) == 5_000
    # (The child's copy of the counting greenlet may have left a slot of its dead pid: reclaimed as any other.)
    assert not kv._backend._step_reads and os.getpid() not in reader_pids(env)
    kv.close()


@pytest.mark.parametrize("change", ["set", "clear", "restore"])
def test_reads_that_skip_the_state_record_see_another_process_change_the_generation(
    tmp_path: Path, change: str
) -> None:
    """get, exists, size and random_key remember the snapshot whose state they checked; any commit elsewhere ends that."""
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb")
    kv.set("k", "before")
    snapshot = tmp_path / "other.kv"
    with open_kv(backend="memory", name=str(tmp_path)) as other:
        other.set("other", "restored")
        other.backup(snapshot)
    for _ in range(3):  # the second and third reads skip the state record
        assert kv.get("k") == "before" and kv.exists("k") and kv.size() == 1 and kv.random_key() == "k"
    backend = kv._backend
    assert backend._verified_txn != -1

    def elsewhere(handle: KV) -> None:
        if change == "set":
            handle.set("k", "after")
        elif change == "clear":
            handle.clear()
        else:
            handle.restore(snapshot)

    wait_all_ok([fork_call(lambda: elsewhere(open_kv(backend="disk", path=tmp_path / "s.lmdb")))])
    if change == "set":
        assert kv.get("k") == "after" and kv.size() == 1
    elif change == "clear":
        assert kv.get("k", None) is None and not kv.exists("k") and kv.size() == 0 and kv.random_key() == ""
    else:
        assert kv.get("k", None) is None and kv.get("other") == "restored" and kv.size() == 1
        assert kv.random_key() == "other"
    kv.close()
