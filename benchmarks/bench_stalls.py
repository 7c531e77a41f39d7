"""Stall budget: how long each KV operation holds a gevent process's hub.

Locust runs every user as a greenlet of one hub per process: an operation
that runs for 50 ms without yielding freezes every other user of that
process (their timers, their sockets, the worker's heartbeat) for 50 ms.
Issue 14's target: no call holds the hub for more than 10 ms, on a store of
1,000,000 keys, for every operation, the long ones (clear, restore, backup,
delete_prefix, the key-index rebuild) included.

How it measures: this file runs as its own process, monkey-patched the way
Locust patches (``monkey.patch_all()`` before anything else is imported). A
ticker greenlet sleeps 1 ms in a loop and records, while an operation runs,
the longest gap between two of its wake-ups beyond the 1 ms it asked for:
the longest time nothing else could run. Each operation runs in a greenlet
of its own, as a user's task would call it; the short ones run a few times
(the worst is kept), the long ones once. A full garbage collection runs
before each operation (untimed), so a collection that an earlier operation
made due does not land on a later one.

    python benchmarks/bench_stalls.py --backend disk --keys 1000000 --snapshot S --workdir D --json OUT

``run.py --only stalls`` runs it once per backend (memory, disk, and redis
when run.py has a redis-server) and reports the longest stall per operation.
"""

from __future__ import annotations

if __name__ == "__main__":  # as Locust does, before anything else is imported
    from gevent import monkey

    monkey.patch_all()

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from time import perf_counter
from typing import Any

__all__ = ["BUDGET_MS", "run"]

BUDGET_MS = 10.0
"""Issue 14: no KV call holds the hub longer than this."""

TICK = 0.001
"""The ticker's sleep: stalls are measured beyond it."""

HERE = os.path.dirname(os.path.abspath(__file__))


class Ticker:
    """A greenlet that wakes every ``TICK`` seconds and keeps the longest gap beyond it."""

    def __init__(self) -> None:
        import gevent

        self.gevent = gevent
        self.max_gap = 0.0
        self.max_gap_wait = 0.0
        self.ticks = 0
        self.greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        sleep = self.gevent.sleep
        last, last_wait = perf_counter(), _run_queue_wait_ns()
        while True:
            sleep(TICK)
            now = perf_counter()
            waited = _run_queue_wait_ns()  # about 10 us a read
            gap = now - last - TICK
            if gap > self.max_gap:
                self.max_gap, self.max_gap_wait = gap, (waited - last_wait) / 1e9
            self.ticks += 1
            last, last_wait = now, waited

    def measure(self, fn: Callable[[], Any]) -> tuple[float, float, float]:
        """(longest stall, wall time, time waiting for a CPU within that stall), in seconds, of ``fn()`` in a greenlet.

        The third figure is the process's run-queue wait (Linux schedstat)
        over the longest gap: on a busy machine the OS can hold the process
        off a CPU for tens of ms, which the ticker sees as a stall the store
        did not make.
        """
        gc.collect()
        self.gevent.sleep(0.003)  # the ticker runs, so its last wake-up is recent
        self.max_gap = self.max_gap_wait = 0.0
        start = perf_counter()
        self.gevent.spawn(fn).get()
        wall = perf_counter() - start
        self.gevent.sleep(0.003)  # the ticker wakes once after the operation, closing the gap it spans
        return self.max_gap, wall, self.max_gap_wait

    def stop(self) -> None:
        self.greenlet.kill()


def _run_queue_wait_ns() -> int:
    """Nanoseconds this process has been runnable but waiting for a CPU (Linux schedstat; 0 elsewhere)."""
    try:
        with open("/proc/self/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _operations(kv: Any, n: int, snapshot: str, backup_path: str) -> list[tuple[str, Callable[[], Any], int]]:
    """(name, call, times) for every public operation, in an order where each finds what it needs.

    Keys are ``peers.dataset(n)``'s: ``user:D:NNNNNNNN`` (``user:3:`` is a tenth
    of them) and ``counter:NNN``.
    """
    from peers import user_key

    state: dict[str, Any] = {}
    key, other = user_key(7), user_key(17)
    small = "user:3:0000001"  # ten keys
    big = "user:3:"  # a tenth of the store
    value = {"name": "x", "n": 1}

    def claims(name: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        def call() -> Any:
            state[name] = fn()
            return state[name]
        return call

    def next_page() -> Any:  # each call one page further (a user would page on between tasks)
        page = kv.scan(big, 1000, state.get("cursor", ""))
        state["cursor"] = page.cursor
        return page

    short = 5
    ops: list[tuple[str, Callable[[], Any], int]] = [
        ("restore (into an empty store)", lambda: kv.restore(snapshot), 1),
        ("get", lambda: kv.get(key), short),
        ("set", lambda: kv.set(other, value), short),
        ("exists", lambda: kv.exists(key), short),
        ("increment_by", lambda: kv.increment_by("counter:001", 1), short),
        ("get_or_set", lambda: kv.get_or_set(key, value), short),
        ("swap", lambda: kv.swap(other, value), short),
        ("compare_and_swap", lambda: kv.compare_and_swap(other, value, value), short),
        ("compare_and_swap_detailed", lambda: kv.compare_and_swap_detailed(other, value, value), short),
        ("set_if_absent", lambda: kv.set_if_absent("new:1", value), short),
        ("compare_and_delete", lambda: kv.compare_and_delete("new:1", value), short),
        ("compare_and_delete_detailed", lambda: kv.compare_and_delete_detailed("new:1", value), short),
        ("delete", lambda: kv.delete("new:2"), short),
        ("delete_if_exists", lambda: kv.delete_if_exists("new:3"), short),
        ("get_many (100 keys)", lambda: kv.get_many([user_key(i) for i in range(0, n, max(1, n // 100))]), short),
        ("set_many (100 keys)", lambda: kv.set_many((f"many:{i:03d}", value) for i in range(100)), short),
        ("delete_many (100 keys)", lambda: kv.delete_many([f"many:{i:03d}" for i in range(100)]), short),
        ("size", kv.size, short),
        ("count ()", kv.count, short),
        (f"count ({big}, a tenth)", lambda: kv.count(big), short),
        (f"scan (a page of 1,000 of {big})", lambda: kv.scan(big, 1000), short),
        (f"scan (the next page of 1,000 of {big}, 10 pages)", next_page, 10),
        (f"scan_keys (a page of 1,000 of {big})", lambda: kv.scan_keys(big, 1000), short),
        ("list (10 keys)", lambda: kv.list(small), short),
        ("list_keys (10 keys)", lambda: kv.list_keys(small), short),
        ("random_key ()", kv.random_key, short),
        (f"random_key ({big})", lambda: kv.random_key(big), short),
        ("random_key (10 keys)", lambda: kv.random_key(small), short),
        (f"random_keys ({big}, 10)", lambda: kv.random_keys(big, 10), short),
        (f"pop_random ({big})", lambda: kv.pop_random(big), short),
        (f"pop_random_many ({big}, 10)", lambda: kv.pop_random_many(big, 10), short),
        ("claim_key", claims("one", lambda: kv.claim_key(user_key(1))), 1),
        ("renew_claim", lambda: kv.renew_claim(state["one"], 30.0), 1),
        ("release_claim", lambda: kv.release_claim(state["one"]), 1),
        ("claim_keys (10)", claims("keys", lambda: kv.claim_keys([user_key(i) for i in range(10, 20)])), 1),
        ("renew_claims (10)", lambda: kv.renew_claims(state["keys"], 30.0), 1),
        ("release_claims (10)", lambda: kv.release_claims(state["keys"]), 1),
        (f"claim_random ({big})", claims("random", lambda: kv.claim_random(big)), 1),
        ("complete_claim", lambda: kv.complete_claim(state["random"]), 1),
        (f"claim_random_many ({big}, 10)", claims("many", lambda: kv.claim_random_many(big, 10)), 1),
        ("complete_claims (10)", lambda: kv.complete_claims(state["many"]), 1),
        ("allocation_stats ()", kv.allocation_stats, 1),
        (f"allocation_stats ({big}, a tenth)", lambda: kv.allocation_stats(big), 1),
        ("stats", kv.stats, 1),
        ("rebuild_key_list", kv.rebuild_key_list, 1),
        ("backup", lambda: kv.backup(backup_path), 1),
        (f"delete_prefix ({big}, a tenth)", lambda: kv.delete_prefix(big), 1),
        ("restore (replacing a store)", lambda: kv.restore(snapshot), 1),
        ("delete_prefix (user:, the whole store)", lambda: kv.delete_prefix("user:"), 1),
        ("restore (again)", lambda: kv.restore(snapshot), 1),
        ("clear", kv.clear, 1),
    ]
    return ops


def _open(backend: str, n: int, workdir: str, redis_port: int | None) -> Any:
    from locust_kv import open_kv

    if backend == "memory":
        return open_kv(backend="memory", name=f"kvbench-stalls-{n}")
    if backend == "disk":
        return open_kv(backend="disk", path=os.path.join(workdir, f"stalls-{n}.lmdb"))
    if backend == "redis":
        kv = open_kv(backend="redis", url=f"redis://127.0.0.1:{redis_port}/0", namespace=f"stalls-{n}")
        kv.clear()
        return kv
    raise ValueError(backend)


def measure_backend(backend: str, n: int, snapshot: str, workdir: str, redis_port: int | None,
                    log: Callable[[str], None], only: list[str] | None = None) -> dict[str, Any]:
    """Every operation's longest stall on ``backend``, in this (monkey-patched) process.

    ``only``: run just the operations whose names start with one of these
    (the first restore always runs: it fills the store).
    """
    import gevent

    kv = _open(backend, n, workdir, redis_port)
    ticker = Ticker()
    backup_path = os.path.join(workdir, f"stalls-{backend}-{n}.snapshot")
    rows = []
    try:
        for position, (name, call, times) in enumerate(_operations(kv, n, snapshot, backup_path)):
            if only and position > 0 and not any(name.startswith(o) for o in only):
                continue
            worst, total, worst_wait, error = 0.0, 0.0, 0.0, None
            for _ in range(times):
                try:
                    stall, wall, waited = ticker.measure(call)
                except Exception as exc:  # noqa: BLE001 (an operation that fails is reported in its row, not fatal)
                    error = f"{type(exc).__name__}: {exc}"
                    break
                if stall >= worst:
                    worst, worst_wait = stall, waited
                total += wall
            rows.append({"op": name, "stall_ms": worst * 1e3, "wall_ms": total / max(1, times) * 1e3,
                         "cpu_wait_ms": worst_wait * 1e3, "times": times, "error": error})
            log(f"stalls {backend}: {name}: longest stall {worst * 1e3:.2f} ms, "
                f"{total / max(1, times) * 1e3:.1f} ms a call" + (f" ERROR {error}" if error else ""))
        gevent.sleep(0)
    finally:
        ticker.stop()
        kv.close()
        if os.path.exists(backup_path):
            os.remove(backup_path)
    from locust_kv.store import _OPERATIONS

    measured = {row["op"].split(" ")[0] for row in rows}
    return {"n": n, "ops": rows, "not_measured": [op for op in _OPERATIONS if op not in measured]}


def run(backends: list[str], n: int, snapshot: str, workdir: str, redis_port: int | None,
        log: Callable[[str], None]) -> dict[str, Any]:
    """Each backend in a process of its own (Locust-like monkey patching), the figures as one dict."""
    out: dict[str, Any] = {"n": n, "budget_ms": BUDGET_MS, "tick_ms": TICK * 1e3, "backends": {}, "skipped": {}}
    for backend in backends:
        if backend == "redis" and redis_port is None:
            out["skipped"][backend] = "no redis-server in this run"
            continue
        result_path = os.path.join(workdir, f"stalls-{backend}.json")
        command = [sys.executable, os.path.join(HERE, "bench_stalls.py"), "--backend", backend, "--keys", str(n),
                   "--snapshot", snapshot, "--workdir", workdir, "--json", result_path]
        if redis_port is not None:
            command += ["--redis-port", str(redis_port)]
        log(f"stalls: {backend} at {n:,} keys")
        start = time.monotonic()
        done = subprocess.run(command, check=False)
        if done.returncode != 0 or not os.path.exists(result_path):
            out["skipped"][backend] = f"the benchmark process exited with status {done.returncode}"
            continue
        with open(result_path) as f:
            out["backends"][backend] = json.load(f)
        os.remove(result_path)
        log(f"stalls: {backend} done in {time.monotonic() - start:.0f}s")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", required=True, choices=["memory", "disk", "redis"])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--snapshot", help="a snapshot of peers.dataset(keys) (written here when not given)")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--redis-port", type=int)
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--ops", help="comma-separated name prefixes: measure only these operations "
                        "(after the first restore, which fills the store)")
    args = parser.parse_args(argv)
    sys.path.insert(0, HERE)
    t0 = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {message}", file=sys.stderr, flush=True)

    snapshot = args.snapshot
    if snapshot is None:
        from peers import dataset

        from locust_kv.snapshot import write_snapshot

        snapshot = os.path.join(args.workdir, f"stalls-seed-{args.keys}.snapshot")
        rows = [(k.encode(), v) for k, v in dataset(args.keys)]
        write_snapshot(snapshot, (rows[i : i + 10_000] for i in range(0, len(rows), 10_000)), "memory", "json")
        del rows
    only = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else None
    data = measure_backend(args.backend, args.keys, snapshot, args.workdir, args.redis_port, log, only)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f)
    worst = sorted(data["ops"], key=lambda r: -r["stall_ms"])
    over = [r for r in worst if r["stall_ms"] > BUDGET_MS]
    print(f"{args.backend} at {args.keys:,} keys: " + (
        "no stall over budget" if not over else
        "over budget: " + ", ".join(f"{r['op']} {r['stall_ms']:.1f} ms" for r in over)))
    if args.snapshot is None:
        os.remove(snapshot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
