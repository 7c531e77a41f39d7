"""What expiring keys cost (issue 15), on each backend, side by side in one run.

    python benchmarks/bench_ttl.py [--quick] [--keys N] [--purge-keys N] [--out FILE]

Two sections, printed as a table (``--out`` also writes it as text); nothing
is asserted:

1. **Reads and writes with and without a ttl.** Two stores per backend with
   the same N keys (100,000 by default): one where no key ever had a ttl,
   one where every key expires in an hour. Rounds alternate between them
   (so machine noise lands on both), each timing a batch of ``get`` of
   random keys through the ``KV`` handle, then ``exists``, ``set`` (with and
   without ``ttl=``), ``increment_by`` with ``ttl=`` (which applies only on
   creation). The median per call and the ratio with ttl / without are
   reported. Issue 15's target: ``get`` on the store where every key has a
   ttl within 1.2x of ``get`` on the store without.

2. **Purging a million expired keys without stalling the hub.** Two stores
   of ``--purge-keys`` keys (1,000,000 by default), every one expired. On the
   first, ``purge_expired()`` runs from a greenlet while a ticker greenlet
   sleeping 1 ms records the longest gap beyond its sleep (as
   ``bench_stalls.py`` does). On the second, the reads a user would make run
   under the same ticker: they must not pay for the expired keys with a
   stall (the range reads purge them first, in steps). Target: no stall
   over 10 ms. On memory and disk the keys are made
   to expire by moving the backend's clock an hour ahead (the store cannot
   tell); on redis the benchmark waits for the server's clock.

Run as its own process, monkey-patched as Locust does.
"""

from __future__ import annotations

if __name__ == "__main__":  # as Locust does, before anything else is imported
    from gevent import monkey

    monkey.patch_all()

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import redis_server  # noqa: E402
from bench_stalls import BUDGET_MS, Ticker  # noqa: E402
from locust_kv import open_kv  # noqa: E402
from locust_kv.snapshot import write_snapshot  # noqa: E402

VALUE = {"user": 12345, "name": "someone", "active": True}
HOUR = 3600.0
TARGET = 1.2


def _key(i: int) -> str:
    return f"k:{i:07d}"


def _open(backend: str, place: Path, name: str, redis_url: str | None) -> Any:
    if backend == "memory":
        return open_kv(backend="memory", name=f"{place}/{name}")
    if backend == "disk":
        return open_kv(backend="disk", path=str(place / f"{name}.lmdb"), map_size=8 << 30)
    kv = open_kv(backend="redis", url=redis_url, namespace=f"bench-ttl-{name}")
    kv.clear()
    return kv


def _fill(kv: Any, n: int, place: Path, expires_ms: int) -> None:
    """N keys by a restore (fast on every backend), each expiring at ``expires_ms`` (0: never)."""
    path = place / f"fill-{n}-{expires_ms}.kv"
    if not path.exists():
        value = b'{"active":true,"name":"someone","user":12345}'
        batches = []
        for first in range(0, n, 10_000):
            rows = [(_key(i).encode(), value) for i in range(first, min(first + 10_000, n))]
            batches.append((rows, [expires_ms] * len(rows) if expires_ms else None))
        write_snapshot(path, batches, "memory", "json")
    kv.restore(path)


def _per_call_ns(call: Callable[[int], Any], calls: int) -> float:
    started = time.perf_counter_ns()
    for i in range(calls):
        call(i)
    return (time.perf_counter_ns() - started) / calls


def section_ops(backends: list[str], n: int, rounds: int, calls: int, place: Path, redis_url: str | None) -> list[str]:
    lines = ["", f"## Operations, {n:,} keys, median ns per call over {rounds} rounds of {calls:,} calls", ""]
    lines.append(f"| backend | operation | no ttl (ns) | every key with a ttl (ns) | ratio | target |")
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for backend in backends:
        if backend == "redis" and redis_url is None:
            lines.append(f"| redis | SKIPPED: no redis-server | | | | |")
            continue
        plain = _open(backend, place, "plain", redis_url)
        timed = _open(backend, place, "timed", redis_url)
        _fill(plain, n, place, 0)
        _fill(timed, n, place, int((time.time() + 2 * HOUR) * 1000))
        picks = [_key(random.randrange(n)) for _ in range(calls)]
        ops: list[tuple[str, Callable[[Any], Callable[[int], Any]], Callable[[Any], Callable[[int], Any]]]] = [
            ("get", lambda kv: lambda i: kv.get(picks[i]), lambda kv: lambda i: kv.get(picks[i])),
            ("exists", lambda kv: lambda i: kv.exists(picks[i]), lambda kv: lambda i: kv.exists(picks[i])),
            ("set / set(ttl=)", lambda kv: lambda i: kv.set(picks[i], VALUE),
             lambda kv: lambda i: kv.set(picks[i], VALUE, ttl=HOUR)),
            ("increment_by / increment_by(ttl=)", lambda kv: lambda i: kv.increment_by(f"c:{i % 100}", 1),
             lambda kv: lambda i: kv.increment_by(f"c:{i % 100}", 1, ttl=HOUR)),
        ]
        for name, without, with_ttl in ops:
            a_times, b_times = [], []
            a_call, b_call = without(plain), with_ttl(timed)
            a_call(0), b_call(0)  # warm
            for _ in range(rounds):
                a_times.append(_per_call_ns(a_call, calls))
                b_times.append(_per_call_ns(b_call, calls))
            a, b = statistics.median(a_times), statistics.median(b_times)
            target = (f"≤ {TARGET}x: {'PASS' if b / a <= TARGET else 'MISS'}") if name == "get" else ""
            lines.append(f"| {backend} | {name} | {a:,.0f} | {b:,.0f} | {b / a:.2f}x | {target} |")
            print(lines[-1], file=sys.stderr, flush=True)
        plain.clear(), timed.clear()
        plain.close(), timed.close()
    return lines


def section_purge(backends: list[str], n: int, place: Path, redis_url: str | None) -> list[str]:
    import gevent

    lines = ["", f"## {n:,} expired keys: purge_expired(), then the reads of a store full of them, longest hub stall "
             f"(budget {BUDGET_MS:.0f} ms)", ""]
    lines.append("| backend | operation | longest stall (ms) | wall (ms) | verdict |")
    lines.append("| --- | --- | --- | --- | --- |")
    for backend in backends:
        if backend == "redis" and redis_url is None:
            lines.append("| redis | SKIPPED: no redis-server | | | |")
            continue
        # Two stores of n expired keys: one purged by purge_expired() alone, one read as a user would
        # (its range reads purge on their own first). On a server clock the keys must really expire:
        # a minute after the fills start, then wait.
        server = backend == "redis"
        ends = int((time.time() + (60 if server else HOUR)) * 1000)
        stores = {}
        for name in ("purged", "read"):
            kv = _open(backend, place, f"expired-{name}", redis_url)
            _fill(kv, n, place, ends)
            kv.set("live:1", VALUE)
            kv.set("live:2", VALUE)
            stores[name] = kv
        if server:
            gevent.sleep(max(0.0, ends / 1000 - time.time() + 1))
        else:
            for kv in stores.values():
                real = kv._backend.clock
                kv._backend.clock = lambda real=real: real() + int(2 * HOUR * 1000)
        purged, read = stores["purged"], stores["read"]
        calls: list[tuple[str, Callable[[], Any]]] = [
            (f"purge_expired () of {n:,}", purged.purge_expired),
            ("size (after the purge)", purged.size),
            ("get (an expired key)", lambda: read.get(_key(7), None)),
            ("exists", lambda: read.exists(_key(7))),
            ("size", read.size),
            ("set (a write that purges a few)", lambda: read.set("live:3", VALUE)),
            ("count () (purges first where it must)", read.count),
            ("count (k:05, a tenth)", lambda: read.count("k:05")),
            ("list_keys (a page of 100)", lambda: read.list_keys(limit=100)),
            ("random_key ()", read.random_key),
            ("random_keys (10)", lambda: read.random_keys("", 10)),
            ("claim_random", lambda: read.claim_random("")),
            ("stats", read.stats),
        ]
        ticker = Ticker()
        try:
            for name, call in calls:
                stall, wall, _ = ticker.measure(call)
                verdict = "PASS" if stall * 1e3 <= BUDGET_MS else "MISS"
                lines.append(f"| {backend} | {name} | {stall * 1e3:.2f} | {wall * 1e3:.1f} | {verdict} |")
                print(lines[-1], file=sys.stderr, flush=True)
            lines.append(f"| {backend} | (keys left: {purged.size()} and {read.size()}) | | | |")
        finally:
            ticker.stop()
            for kv in stores.values():
                kv.clear()
                kv.close()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 keys, 100,000 to purge, fewer rounds")
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--purge-keys", type=int, default=1_000_000)
    parser.add_argument("--backends", default="memory,disk,redis")
    parser.add_argument("--only", choices=["ops", "purge"])
    parser.add_argument("--out", help="also write the tables here")
    args = parser.parse_args(argv)
    keys, purge_keys, rounds, calls = args.keys, args.purge_keys, 9, 20_000
    if args.quick:
        keys, purge_keys, rounds, calls = 10_000, 100_000, 3, 2_000
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    server = None
    if "redis" in backends:
        try:
            server = redis_server.start(allow_install=False)
        except redis_server.Skipped as exc:
            print(f"redis skipped: {exc}", file=sys.stderr)
    url = f"redis://127.0.0.1:{server.port}/0" if server else None
    lines = ["# Expiring keys: costs (benchmarks/bench_ttl.py)", "",
             f"{time.strftime('%Y-%m-%d %H:%M')}, python {sys.version.split()[0]}"]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ttl-", dir="/var/tmp") as place:
            if args.only in (None, "ops"):
                lines += section_ops(backends, keys, rounds, calls, Path(place), url)
            if args.only in (None, "purge"):
                lines += section_purge(backends, purge_keys, Path(place), url)
    finally:
        if server is not None:
            server.stop()
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
