"""Long work on a million keys never freezes the gevent hub; many greenlets never exhaust reader slots.

A heartbeat greenlet ticks every 5 ms and records the longest gap between
ticks in two clocks. The thread's CPU time counts only what ran on the
hub's thread: a gap there is work that did not yield, which is what the
disk backend controls, and it must stay under 50 ms. Wall-clock gaps also
count the time other processes of a busy 2-core machine took the CPU, and
the kernel's page-fault stalls; they are reported, and only checked for
what a freeze of a whole million-key operation would look like.

The objects alive before a measurement are frozen out of the garbage
collector (``gc.freeze()``), as Locust does before it starts its users:
otherwise a full collection walks every object of the pytest session, and
its pause says nothing about the store.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest

from locust_kv import open_kv
from locust_kv.backends.base import Batch
from locust_kv.errors import KVError

from .disk_helpers import reader_pids

MILLION = 1_000_000
MAX_GAP = 0.050
"""The longest the hub may go without running another greenlet, in CPU time of its thread."""
MAX_WALL_GAP = 0.500
"""Wall-clock gaps above this are no machine noise: a freeze for a good part of the operation."""


class Heartbeat:
    """A greenlet ticking every 5 ms; the longest gaps between two ticks while it ran: (CPU, wall)."""

    def __init__(self) -> None:
        gc.freeze()
        self.cpu_gap = self.wall_gap = 0.0
        self._greenlet = gevent.spawn(self._beat)
        gevent.sleep(0.02)
        self.cpu_gap = self.wall_gap = 0.0

    def _beat(self) -> None:
        last_cpu, last_wall = time.thread_time(), time.perf_counter()
        while True:
            gevent.sleep(0.005)
            cpu, wall = time.thread_time(), time.perf_counter()
            self.cpu_gap = max(self.cpu_gap, cpu - last_cpu)
            self.wall_gap = max(self.wall_gap, wall - last_wall)
            last_cpu, last_wall = cpu, wall

    def stop(self) -> tuple[float, float]:
        self._greenlet.kill()
        gc.unfreeze()
        return self.cpu_gap, self.wall_gap


def _check(gaps: tuple[float, float], report: str) -> None:
    cpu, wall = gaps
    assert cpu <= MAX_GAP and wall <= MAX_WALL_GAP, report


def _million() -> Iterator[Batch]:
    value = b'{"user":12345,"name":"someone","active":true}'
    for start in range(0, MILLION, 10_000):
        yield [(b"user:%07d" % i, value) for i in range(start, start + 10_000)], None


def test_a_million_keys_never_freeze_the_hub(tmp_path: Path) -> None:
    # Filled without an index (a track_keys=False restore), so that random_key must walk.
    loader = open_kv(backend="disk", path=tmp_path / "s.lmdb", track_keys=False)
    assert loader._backend.replace_all(_million()) == MILLION
    loader.close()
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb")
    report = []

    gaps = []

    def timed(what: str, work):  # type: ignore[no-untyped-def]
        heartbeat = Heartbeat()
        started = time.perf_counter()
        result = work()
        cpu, wall = heartbeat.stop()
        gaps.append((cpu, wall))
        report.append(
            f"{what} {time.perf_counter() - started:.2f}s "
            f"(longest hub gap {cpu * 1000:.0f} ms CPU, {wall * 1000:.0f} ms wall)"
        )
        return result

    assert timed("random_key walking 1M keys", kv.random_key).startswith("user:")
    assert timed("count of a 900k-key range", lambda: kv.count(start="user:0050000", end="user:0950000")) == 900_000
    assert timed("list_keys at offset 900,000", lambda: kv.list_keys("user:", 2, offset=900_000)) == ["user:0900000", "user:0900001"]
    timed("rebuild_key_list on 1M keys", kv.rebuild_key_list)
    assert kv._backend._view.indexed and kv.size() == MILLION
    timed("clear of 1M keys", kv.clear)
    assert kv.size() == 0 and kv.random_key() == ""
    kv.close()
    print("; ".join(report))
    for pair in gaps:
        _check(pair, "; ".join(report))


def test_many_greenlets_never_exhaust_reader_slots(tmp_path: Path) -> None:
    """Every read transaction ends before its greenlet yields: two slots serve a thousand greenlets."""
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb", max_readers=2)
    for i in range(100):
        kv.set(f"k{i}", i)
    failures: list[BaseException] = []

    def user(n: int) -> None:
        try:
            for i in range(50):
                kv.get(f"k{(n + i) % 100}")
                kv.exists("k1")
                kv.random_key()
                kv.list(prefix="k9")
                kv.increment_by(f"c{n % 10}", 1)
                gevent.sleep(0)
        except KVError as exc:
            failures.append(exc)

    gevent.joinall([gevent.spawn(user, n) for n in range(1_000)], timeout=120)
    assert failures == []
    assert sum(kv.get(f"c{n}") for n in range(10)) == 1_000 * 50
    assert reader_pids(kv._backend._env) == []  # no read transaction left open
    kv.close()


@pytest.mark.parametrize("track_keys", [True, False])
def test_a_restore_of_a_million_keys_never_freezes_the_hub(tmp_path: Path, track_keys: bool) -> None:
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb", track_keys=track_keys)
    heartbeat = Heartbeat()
    started = time.perf_counter()
    assert kv._backend.replace_all(_million()) == MILLION
    cpu, wall = heartbeat.stop()
    report = f"restore {time.perf_counter() - started:.2f}s (longest hub gap {cpu * 1000:.0f} ms CPU, {wall * 1000:.0f} ms wall)"
    assert kv.size() == MILLION
    kv.close()
    print(report)
    _check((cpu, wall), report)
