"""Several processes incrementing shared counters: throughput and exactness.

P processes (started with ``spawn``, so none inherits an open store) each
open the store themselves, wait at a barrier, then do ``n`` increments of 1
spread round-robin over ``COUNTERS`` shared counter keys. Throughput is
``P * n`` over the span from the first process's start to the last one's
end; exactness is the sum of the counters read back afterwards, which must be
``P * n`` exactly.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

__all__ = ["COUNTERS", "run_config"]

COUNTERS = 10


def _keys() -> list[str]:
    return [f"shared:{j}" for j in range(COUNTERS)]


def _open(kind: str, target: Any) -> tuple[Any, Any]:
    """(increment function taking key and delta, closer) for one process."""
    if kind == "disk":
        from locust_kv import open_kv

        kv = open_kv(backend="disk", path=target["path"])
        return kv.increment_by, kv.close
    if kind == "lmdb":
        from peers import LmdbFloor

        floor = LmdbFloor(target["path"], target["flags"], create=False)
        return floor.increment_by, floor.env.close
    if kind == "redis":
        import redis

        r = redis.Redis(host="127.0.0.1", port=target["port"], protocol=2)
        return r.incrby, r.close
    raise ValueError(kind)


def _worker(kind: str, target: Any, n: int, barrier: Any, results: Any) -> None:
    increment, close = _open(kind, target)
    try:
        for _ in range(200):
            increment("warm-up", 1)
        keys = _keys()
        barrier.wait()
        start = time.monotonic_ns()
        for i in range(n):
            increment(keys[i % COUNTERS], 1)
        end = time.monotonic_ns()
        results.put((start, end))
    finally:
        close()


def run_config(kind: str, target: Any, processes: int, n: int, read_total: Any) -> dict[str, Any]:
    """One run: ``processes`` workers of ``kind`` doing ``n`` increments each."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    before = read_total(_keys())
    workers = [ctx.Process(target=_worker, args=(kind, target, n, barrier, results)) for _ in range(processes)]
    for w in workers:
        w.start()
    spans = [results.get(timeout=600) for _ in workers]
    for w in workers:
        w.join(timeout=60)
        if w.exitcode != 0:
            raise RuntimeError(f"a {kind} worker exited with {w.exitcode}")
    after = read_total(_keys())
    seconds = (max(e for _, e in spans) - min(s for s, _ in spans)) / 1e9
    return {
        "processes": processes,
        "increments": processes * n,
        "seconds": seconds,
        "per_second": processes * n / seconds,
        "counted": after - before,
        "exact": after - before == processes * n,
    }
