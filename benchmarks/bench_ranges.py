"""What a key range costs on each backend: ``count(start=, end=)`` and a page at an ``offset``; what the disk rank index costs writers.

    python benchmarks/bench_ranges.py [--quick] [--out FILE]

Each backend holds the same 1,100,000 keys (``k:0000000`` ...), loaded by a
restore. For ranges of 1,000, 10,000, 100,000 and 1,000,000 keys in the middle of
the store, it times through the ``KV`` handle:

- ``count(start=..., end=...)``;
- ``list_keys(start=..., end=..., offset=size - 10, limit=10)``: the last ten
  keys of the range, reached by the offset;
- ``list_keys(start=..., end=..., limit=10)``: the first ten, for comparison.

Medians of several calls (wall clock: the redis backend waits on its
server). Every backend keeps ranks: memory a SortedList's positional index,
redis a sorted set's spans, disk its rank index (``locust_kv.backends.lmdb.ranks``,
part of the key index). So their figures should not grow with the range.
``disk-walk`` is the disk store without the key index (``track_keys=False``),
which walks the range with an LMDB cursor: O(k), for comparison.

The second table is what the rank index costs the writes that keep it: the
median microseconds of ``set`` of a new key, ``set`` of an existing one and
``delete``, one call per key of 200,000, on a disk store with the key index
and on one without it, side by side in the same run (the difference is the
whole key index: slots and ranks).

Nothing here asserts; it prints, and ``--out`` writes the tables as text.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import redis_server  # noqa: E402
from locust_kv import open_kv  # noqa: E402

VALUE = b'{"user":12345,"name":"someone","active":true}'
SIZES = (1_000, 10_000, 100_000, 1_000_000)


def _key(i: int) -> str:
    return f"k:{i:07d}"


def _batches(total: int) -> Iterator[tuple[list[tuple[bytes, bytes]], None]]:
    for first in range(0, total, 10_000):
        yield [(_key(i).encode(), VALUE) for i in range(first, min(first + 10_000, total))], None


def _median_ms(call: Callable[[], Any], repeats: int) -> float:
    call()  # warm: caches, the positional index, the server's script cache
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure(kv: Any, total: int, sizes: tuple[int, ...], repeats: int) -> list[tuple[int, float, float, float]]:
    rows = []
    for size in sizes:
        first = (total - size) // 2
        start, end = _key(first), _key(first + size)
        assert kv.count(start=start, end=end) == size
        last_ten = kv.list_keys(start=start, end=end, offset=size - 10, limit=10)
        assert last_ten == [_key(i) for i in range(first + size - 10, first + size)], last_ten
        rows.append(
            (
                size,
                _median_ms(lambda: kv.count(start=start, end=end), repeats),
                _median_ms(lambda: kv.list_keys(start=start, end=end, offset=size - 10, limit=10), repeats),
                _median_ms(lambda: kv.list_keys(start=start, end=end, limit=10), repeats),
            )
        )
    return rows


def _per_call_us(calls: Callable[[int], Any], total: int) -> float:
    """Median microseconds of one call over 20 rounds of ``total / 20`` calls."""
    rounds = []
    step = total // 20
    for first in range(0, total, step):
        started = time.perf_counter()
        for i in range(first, first + step):
            calls(i)
        rounds.append((time.perf_counter() - started) / step)
    return statistics.median(rounds) * 1e6


def writes_table(total: int) -> list[str]:
    """``set`` of new keys, ``set`` of existing ones and ``delete``, with and without the key index, alternated."""
    results: dict[bool, list[list[float]]] = {True: [], False: []}
    for _ in range(3):
        for indexed in (True, False):
            with tempfile.TemporaryDirectory() as place:
                kv = open_kv(backend="disk", path=f"{place}/writes.lmdb", map_size=1 << 30, track_keys=indexed)
                try:
                    results[indexed].append(
                        [
                            _per_call_us(lambda i: kv.set(_key(i), i), total),
                            _per_call_us(lambda i: kv.set(_key(i), i), total),
                            _per_call_us(lambda i: kv.delete(_key(i)), total),
                        ]
                    )
                finally:
                    kv.close()
    best = {indexed: [min(run[i] for run in runs) for i in range(3)] for indexed, runs in results.items()}
    lines = [
        f"Disk writes, {total:,} keys: best of 3 alternated runs of the median µs per call",
        "",
        f"{'key index':<10} {'set (new key)':>14} {'set (existing)':>15} {'delete':>8}",
    ]
    for indexed, label in ((True, "on"), (False, "off")):
        lines.append(f"{label:<10} {best[indexed][0]:>14.2f} {best[indexed][1]:>15.2f} {best[indexed][2]:>8.2f}")
    ratios = [best[True][i] / best[False][i] for i in range(3)]
    lines.append(f"{'on / off':<10} {ratios[0]:>13.2f}x {ratios[1]:>14.2f}x {ratios[2]:>7.2f}x")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a store of 110,000 keys, ranges of 1,000, 10,000 and 100,000")
    parser.add_argument("--out", type=Path, help="also write the table here")
    parser.add_argument(
        "--backends", default="memory,disk,disk-walk,redis", help="comma-separated (default: memory,disk,disk-walk,redis)"
    )
    args = parser.parse_args()
    total = 110_000 if args.quick else 1_100_000
    sizes = tuple(s for s in SIZES if s < total)
    lines = [
        f"Key ranges on a store of {total:,} keys: median ms per call through the KV handle",
        "",
        f"{'backend':<8} {'range':>10} {'count(start,end)':>17} {'page at offset k-10':>20} {'first page':>11}",
    ]
    server = None
    try:
        for backend in args.backends.split(","):
            with tempfile.TemporaryDirectory() as place:
                options: dict[str, Any] = {"backend": backend}
                if backend.startswith("disk"):
                    options.update(
                        backend="disk", path=f"{place}/ranges.lmdb", map_size=1 << 30, track_keys=backend == "disk"
                    )
                elif backend == "redis":
                    try:
                        server = server or redis_server.start(allow_install=False)
                    except redis_server.Skipped as exc:
                        lines.append(f"{backend:<8} skipped: {exc}")
                        continue
                    options.update(url=f"redis://127.0.0.1:{server.port}/0", namespace="bench-ranges")
                elif backend == "memory":
                    options.update(name=f"{place}/ranges")
                kv = open_kv(**options)
                try:
                    loaded = time.perf_counter()
                    assert kv._backend.replace_all(_batches(total)) == total
                    print(f"{backend}: {total:,} keys restored in {time.perf_counter() - loaded:.1f}s", file=sys.stderr)
                    repeats = 5 if backend == "disk-walk" else 21
                    for size, count_ms, offset_ms, first_ms in measure(kv, total, sizes, repeats):
                        lines.append(f"{backend:<8} {size:>10,} {count_ms:>17.3f} {offset_ms:>20.3f} {first_ms:>11.3f}")
                    kv.clear()
                finally:
                    kv.close()
    finally:
        if server is not None:
            server.stop()
    lines += ["", *writes_table(20_000 if args.quick else 200_000)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
