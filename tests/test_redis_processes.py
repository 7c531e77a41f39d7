"""One redis store shared by real OS processes: exact counters, one winner per race, fork safety."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import pytest

from locust_kv import KV, open_kv

from .conftest import store_options
from .disk_helpers import fork_call, python_child, wait_all_ok

PROCESSES = 4


def _increment(kv: KV, times: int) -> None:
    for _ in range(times):
        kv.increment_by("counter", 1)
        kv.increment_by("down", -3)


def test_forked_processes_incrementing_one_key_end_exact(tmp_path: Path) -> None:
    """As with Locust's --processes: the handle is opened (and its pool connected) before the fork."""
    kv = open_kv(**store_options("redis", tmp_path))
    kv.set("before-fork", True)  # the parent's pool holds a live connection now
    pids = [fork_call(_increment, kv, 2_000) for _ in range(PROCESSES)]
    _increment(kv, 500)  # the parent keeps using its own connections meanwhile
    wait_all_ok(pids)
    assert kv.get("counter") == PROCESSES * 2_000 + 500
    assert kv.get("down") == -3 * (PROCESSES * 2_000 + 500)
    kv.close()


def _pool_identity(kv: KV, out: Path) -> None:
    pool = kv._store.backend._pool  # type: ignore[attr-defined]
    kv.set(f"child:{os.getpid()}", os.getpid())
    sockets = [id(c._sock) for c in pool._connections if c._sock is not None]
    out.write_text(json.dumps({"pool_pid": pool.pid, "pid": os.getpid(), "sockets": sockets}))


def test_a_forked_child_gets_a_fresh_connection_pool(tmp_path: Path) -> None:
    kv = open_kv(**store_options("redis", tmp_path))
    kv.set("parent", 1)
    pool = kv._store.backend._pool  # type: ignore[attr-defined]
    parent_sockets = {id(c._sock) for c in pool._connections if c._sock is not None}
    assert parent_sockets
    out = tmp_path / "child.json"
    wait_all_ok([fork_call(_pool_identity, kv, out)])
    child = json.loads(out.read_text())
    assert child["pool_pid"] == child["pid"] != os.getpid()
    # The child's first call found the pool of another pid and started its own;
    # the parent's connection, shared by the fork, was left to the parent.
    assert kv.get(f"child:{child['pid']}") == child["pid"]
    assert kv.increment_by("parent", 1) == 2
    assert pool.pid == os.getpid()
    kv.close()


def test_separate_programs_incrementing_one_key_end_exact(tmp_path: Path) -> None:
    options = store_options("redis", tmp_path)
    script = f"""
        import os
        from locust_kv import open_kv
        kv = open_kv(**{options!r})
        for _ in range(3000):
            kv.increment_by("counter", 1)
        kv.set("pid:" + str(os.getpid()), True)
    """
    children = [python_child(script) for _ in range(PROCESSES)]
    for child in children:
        _, err = child.communicate(timeout=180)
        assert child.returncode == 0, err
    with open_kv(**options) as kv:
        assert kv.get("counter") == PROCESSES * 3_000
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
        elif race == "swap":
            won = not kv.swap(key, os.getpid()).loaded
        elif race == "delete_if_exists":
            won = kv.delete_if_exists(key)
        else:
            won = kv.compare_and_delete(key, "present")
        if won:
            wins.append(n)
    out.write_text(json.dumps(wins))


@pytest.mark.parametrize("race", ["compare_and_swap", "get_or_set", "swap", "delete_if_exists", "compare_and_delete"])
def test_a_race_across_processes_has_exactly_one_winner(tmp_path: Path, race: str) -> None:
    rounds = 150
    kv = open_kv(**store_options("redis", tmp_path))
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
    elif race != "swap":
        assert kv.list(prefix="race:") == []
    kv.close()


def _write_range(kv: KV, start: int, count: int) -> None:
    for i in range(start, start + count):
        kv.set(f"key:{i:06d}", i)


def test_size_scan_and_random_key_see_keys_written_by_every_process(tmp_path: Path) -> None:
    kv = open_kv(**store_options("redis", tmp_path))
    pids = [fork_call(_write_range, kv, 1_000 * p, 1_000) for p in range(PROCESSES)]
    wait_all_ok(pids)
    assert kv.size() == PROCESSES * 1_000
    assert [e.key for e in kv.scan("key:").entries] == [f"key:{i:06d}" for i in range(PROCESSES * 1_000)]
    draws = collections.Counter(int(kv.random_key("key:")[4:]) // 1_000 for _ in range(8_000))
    assert set(draws) == set(range(PROCESSES))
    kv.close()
