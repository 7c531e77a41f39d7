"""Backup and restore speed: a million entries of 100-byte values, per backend.

    python benchmarks/bench_snapshot.py [--entries N] [--value-size B] [--rounds R] [--backends memory,disk]

Prints, per backend and operation, the median over the rounds (and the
slowest round) of microseconds per entry and MB/s of snapshot file. The
"format" rows write and read the same snapshot without a store: what the
file format costs on its own. Measurements only; nothing is asserted. The
goal of issue 4 is <= 2 us/entry for backup and <= 4 us/entry for restore on
the disk backend.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from locust_kv import open_kv
from locust_kv.snapshot import SnapshotReader, write_snapshot


def _batches(entries: int, value_size: int) -> Iterator[list[tuple[bytes, bytes]]]:
    value = b'"' + b"v" * (value_size - 2) + b'"'  # a JSON string of value_size bytes
    for start in range(0, entries, 10_000):
        yield [(b"key:%09d" % i, value) for i in range(start, min(entries, start + 10_000))]


def _timed(action: Callable[[], object]) -> float:
    gc.collect()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _read_all(path: Path) -> None:
    with SnapshotReader(path) as reader:
        for _ in reader.blocks():
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--value-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="memory,disk")
    parser.add_argument("--dir", help="where the snapshot and the disk store go (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        root = Path(scratch)
        seed = root / "seed.kv"
        cases: dict[tuple[str, str], list[float]] = {}

        def measure(backend: str, operation: str, action: Callable[[], object]) -> None:
            cases.setdefault((backend, operation), []).append(_timed(action))

        entries = list(_batches(args.entries, args.value_size))
        for _ in range(args.rounds):
            measure("format", "write", lambda: write_snapshot(seed, entries, "memory", "json"))
            measure("format", "read", lambda: _read_all(seed))
        entries.clear()
        file_bytes = seed.stat().st_size

        for backend in args.backends.split(","):
            kv = open_kv(backend=backend, path=str(root / f"{backend}.lmdb"))
            try:
                for _ in range(args.rounds):
                    measure(backend, "restore", lambda kv=kv: kv.restore(seed))
                    measure(backend, "backup", lambda kv=kv: kv.backup(root / "out.kv"))
                assert kv.size() == args.entries
            finally:
                kv.close()

    print(
        f"{args.entries:,} entries, {args.value_size}-byte values, snapshot {file_bytes / 1e6:.1f} MB, "
        f"{args.rounds} rounds; Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'backend':<8} {'operation':<8} {'us/entry':>9} {'MB/s':>7} {'slowest us/entry':>17}")
    for (backend, operation), seconds in cases.items():
        median = statistics.median(seconds)
        print(
            f"{backend:<8} {operation:<8} {median / args.entries * 1e6:>9.2f} {file_bytes / median / 1e6:>7.0f} "
            f"{max(seconds) / args.entries * 1e6:>17.2f}"
        )


if __name__ == "__main__":
    sys.exit(main())
