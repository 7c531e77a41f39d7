"""Several processes incrementing shared counters: throughput and exactness.

P processes (started with ``spawn``, so none inherits an open store) each
open the store themselves, wait at a barrier, then do ``n`` increments of 1
spread round-robin over ``COUNTERS`` shared counter keys. Throughput is
``P * n`` over the span from the first process's start to the last one's
end; exactness is the sum of the counters read back afterwards, which must be
``P * n`` exactly.

Reads (:func:`run_reads`): P processes each open the store, wait at a
barrier, then call one read (``get`` of keys drawn uniformly, ``random_key``,
``random_key(prefix)``) for a fixed time; throughput is the sum over
processes of each one's calls over its own span. LMDB readers take no lock,
so reads should scale with the cores the machine has; the same run of bare
py-lmdb (the same environment flags) shows what scaling LMDB itself reaches
here.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

__all__ = ["COUNTERS", "READ_OPS", "run_config", "run_reads"]

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


def _run_processes(processes: int, what: str, job: Any) -> list[Any]:
    """Start ``processes`` spawned processes, ``job(i, barrier, results)`` giving each its target and
    arguments; what each put on the results queue, once all have exited with 0."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    workers = []
    for i in range(processes):
        target, args = job(i, barrier, results)
        workers.append(ctx.Process(target=target, args=args))
    for w in workers:
        w.start()
    spans = [results.get(timeout=600) for _ in workers]
    for w in workers:
        w.join(timeout=60)
        if w.exitcode != 0:
            raise RuntimeError(f"{what} exited with {w.exitcode}")
    return spans


def run_config(kind: str, target: Any, processes: int, n: int, read_total: Any) -> dict[str, Any]:
    """One run: ``processes`` workers of ``kind`` doing ``n`` increments each."""
    before = read_total(_keys())
    spans = _run_processes(processes, f"a {kind} worker", lambda i, barrier, results: (
        _worker, (kind, target, n, barrier, results)))
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


# ---------------------------------------------------------------------------
# Reads.

READ_OPS = ["get", "random_key", "random_key (prefix)"]
"""The reads measured across processes; the prefix is ``peers.PREFIX`` (a tenth of the keys)."""


def _open_reader(kind: str, target: Any, op: str) -> tuple[Any, Any]:
    """(a call taking one key, closer) doing ``op`` on ``kind`` in this process."""
    from peers import PREFIX

    if kind == "disk":
        from locust_kv import open_kv

        store = open_kv(backend="disk", path=target["path"])
        get, random_key, close = store.get, store.random_key, store.close
    elif kind == "lmdb":
        from peers import LmdbFloor

        floor = LmdbFloor(target["path"], target["flags"], create=False)
        get, random_key, close = floor.get, floor.random_key, floor.env.close
    else:
        raise ValueError(kind)
    if op == "get":
        return get, close
    if op == "random_key":
        return (lambda _key: random_key()), close
    if op == "random_key (prefix)":
        return (lambda _key: random_key(PREFIX)), close
    raise ValueError(op)


def _read_worker(kind: str, target: Any, op: str, n_keys: int, seconds: float, seed: int, barrier: Any,
                 results: Any) -> None:
    import random

    from peers import user_key

    call, close = _open_reader(kind, target, op)
    try:
        rng = random.Random(seed)
        keys = [user_key(rng.randrange(n_keys)) for _ in range(4096)]
        for key in keys[:500]:
            call(key)
        barrier.wait()
        done = 0
        start = time.monotonic_ns()
        deadline = start + int(seconds * 1e9)
        now = start
        batches = [keys[i : i + 512] for i in range(0, len(keys), 512)]
        cpu, waited = time.process_time_ns(), _run_queue_wait_ns()
        while now < deadline:
            for key in batches[(done // 512) % len(batches)]:
                call(key)
            done += 512
            now = time.monotonic_ns()
        cpu, waited = time.process_time_ns() - cpu, _run_queue_wait_ns() - waited
        results.put((start, now, done, cpu, waited))
    finally:
        close()


def _run_queue_wait_ns() -> int:
    """Nanoseconds this process has been runnable but waiting for a CPU (Linux schedstat; 0 elsewhere)."""
    try:
        with open("/proc/self/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def run_reads(kind: str, target: Any, op: str, processes: int, seconds: float, n_keys: int) -> dict[str, Any]:
    """One run: ``processes`` workers of ``kind`` each calling ``op`` for ``seconds``."""
    spans = _run_processes(processes, f"a {kind} reader", lambda i, barrier, results: (
        _read_worker, (kind, target, op, n_keys, seconds, 1000 + i, barrier, results)))
    wall = sum(e - s for s, e, *_ in spans)
    return {
        "processes": processes,
        "calls": sum(d for _, _, d, *_ in spans),
        "seconds": (max(e for _, e, *_ in spans) - min(s for s, *_ in spans)) / 1e9,
        "per_second": sum(d / ((e - s) / 1e9) for s, e, d, *_ in spans),
        # Where the readers' time went: on a CPU, waiting for one (other processes), or neither (blocked).
        "cpu_ns_per_call": sum(c for *_, c, _ in spans) / sum(d for _, _, d, *_ in spans),
        "on_cpu": sum(c for *_, c, _ in spans) / wall,
        "run_queue": sum(q for *_, q in spans) / wall,
    }
