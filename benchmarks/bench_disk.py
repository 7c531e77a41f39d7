"""The disk backend against bare py-lmdb doing the same work, side by side.

    python benchmarks/bench_disk.py [--quick]

Both sides use one environment configuration: the disk backend's defaults
(``writemap=True, sync=False, metasync=False``, a 1 GiB map, ``subdir=False``).
Bare py-lmdb is the idiomatic code a user would write: one
``with env.begin(...) as txn`` per operation, the read-modify-write
operations in one write transaction. It runs twice: in the main database
(the cheapest LMDB can do) and in a named database, as the store keeps its
data (a named database per generation is what makes clear and restore one
short transaction; its record costs each write transaction a main-database
page).

Two levels, each a median over many timed batches, the two sides' batches
interleaved so that machine noise hits both alike:

* backend: ``DiskBackend`` methods (bytes in, bytes out) against bare py-lmdb
  on the same bytes: what the backend itself costs.
* KV: the public ``KV`` handle (str keys, json values) against bare py-lmdb
  plus the same work a user of it would do (``key.encode()``, orjson with
  sorted keys, so that equal dicts compare equal). This level includes the
  front-end's argument checks, serializer and result objects.

The goal is a ratio of at most 1.3. ``random_key`` (no prefix, with the key
index) is then timed at 1,000 and at 1,000,000 keys; the goal is a ratio of
at most 2. Nothing here asserts: it prints. ``bench_disk.txt`` beside this
file holds a run.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lmdb
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from locust_kv import open_kv  # noqa: E402 - after the path insert
from locust_kv.backends.lmdb import DEFAULT_MAP_SIZE  # noqa: E402

VALUE = {"user": 1234, "name": "alice", "tags": ["a", "b"], "active": True}
SORTED = orjson.OPT_SORT_KEYS  # the json serialization stores dicts with sorted keys: the same bytes


def dumps(value: object) -> bytes:
    return orjson.dumps(value, option=SORTED)


ENCODED = dumps(VALUE)
KEYS = 1_000


def median_ns(work: Callable[[], object], batch: int, batches: int) -> list[float]:
    """Per-operation means of ``batches`` timed runs of ``batch`` calls."""
    means = []
    for _ in range(batches):
        start = time.perf_counter_ns()
        for _ in range(batch):
            work()
        means.append((time.perf_counter_ns() - start) / batch)
    return means


def side_by_side(ours: Callable[[], object], bare: Callable[[], object], batch: int, rounds: int) -> tuple[float, float]:
    """Median ns/op of each, measured in alternating batches."""
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(rounds):
        mine += median_ns(ours, batch, 1)
        theirs += median_ns(bare, batch, 1)
    return statistics.median(mine), statistics.median(theirs)


def bare_env(path: Path) -> lmdb.Environment:
    return lmdb.open(
        str(path), subdir=False, map_size=DEFAULT_MAP_SIZE, max_dbs=8, writemap=True, sync=False, metasync=False
    )


def bare_operations(env: lmdb.Environment, db: object) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """Bare py-lmdb in database ``db`` (None: the main one): name -> (bytes, bytes + key and json encoding)."""
    key_text, key = "user:000500", b"user:000500"
    counter_text, cas_text = "counter", "cas"  # encoded per call, as a user's str keys are
    a, b = dumps({"v": 1}), dumps({"v": 2})
    flip = [0]

    def get(k: bytes = key) -> object:
        with env.begin(db=db) as txn:
            return txn.get(k)

    def exists(k: bytes = key) -> bool:
        with env.begin(db=db) as txn:
            return txn.get(k) is not None

    def put(k: bytes = key, value: bytes = ENCODED) -> None:
        with env.begin(db=db, write=True) as txn:
            txn.put(k, value)

    def increment(k: bytes = b"counter") -> int:
        with env.begin(db=db, write=True) as txn:
            current = txn.get(k)
            value = (int(current) if current is not None else 0) + 1
            txn.put(k, b"%d" % value)
            return value

    def cas(k: bytes = b"cas", old: bytes | None = None, new: bytes | None = None) -> bool:
        if old is None:
            old, new = (a, b) if flip[0] % 2 == 0 else (b, a)
            flip[0] += 1
        with env.begin(db=db, write=True) as txn:
            if txn.get(k) != old:
                return False
            txn.put(k, new)
            return True

    def cas_json() -> bool:
        n = flip[0] % 2
        flip[0] += 1
        return cas(cas_text.encode(), dumps({"v": 1 + n}), dumps({"v": 2 - n}))

    def get_or_set(k: bytes = key, value: bytes = ENCODED) -> tuple[bytes, bool]:
        with env.begin(db=db, write=True) as txn:
            current = txn.get(k)
            if current is not None:
                return current, True
            txn.put(k, value)
            return value, False

    def get_or_set_json() -> tuple[object, bool]:
        stored, loaded = get_or_set(key_text.encode(), dumps(VALUE))
        return (orjson.loads(stored) if loaded else VALUE), loaded

    return {
        "get": (get, lambda: orjson.loads(get(key_text.encode()))),  # type: ignore[arg-type]
        "exists": (exists, lambda: exists(key_text.encode())),
        "set": (put, lambda: put(key_text.encode(), dumps(VALUE))),
        "increment_by": (increment, lambda: increment(counter_text.encode())),
        "compare_and_swap": (cas, cas_json),
        "get_or_set": (get_or_set, get_or_set_json),
    }


def our_operations(kv) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:  # type: ignore[no-untyped-def]
    """The disk store: name -> (the backend, in bytes; the KV handle, in str and json)."""
    backend = kv._backend
    key_text, key = "user:000500", b"user:000500"
    a, b = dumps({"v": 1}), dumps({"v": 2})
    flip = [0]

    def cas() -> bool:
        old, new = (a, b) if flip[0] % 2 == 0 else (b, a)
        flip[0] += 1
        return backend.compare_and_swap(b"cas", old, new)  # type: ignore[no-any-return]

    def cas_json() -> bool:
        n = flip[0] % 2
        flip[0] += 1
        return kv.compare_and_swap("cas", {"v": 1 + n}, {"v": 2 - n})  # type: ignore[no-any-return]

    return {
        "get": (lambda: backend.get(key), lambda: kv.get(key_text)),
        "exists": (lambda: backend.exists(key), lambda: kv.exists(key_text)),
        "set": (lambda: backend.set(key, ENCODED), lambda: kv.set(key_text, VALUE)),
        "increment_by": (lambda: backend.increment_by(b"counter", 1), lambda: kv.increment_by("counter", 1)),
        "compare_and_swap": (cas, cas_json),
        "get_or_set": (lambda: backend.get_or_set(key, ENCODED), lambda: kv.get_or_set(key_text, VALUE)),
    }


def populate(kv, count: int) -> None:  # type: ignore[no-untyped-def]
    """``count`` keys through the backend's restore path (ascending batches, appended)."""

    def batches():  # type: ignore[no-untyped-def]
        for start in range(0, count, 10_000):
            yield [(b"user:%06d" % i, ENCODED) for i in range(start, min(count, start + 10_000))], None

    kv._backend.replace_all(batches())


def verdict(ratio: float, goal: float) -> str:
    return "PASS" if ratio <= goal else "MISS"


def fill_bare(env: lmdb.Environment, db: object) -> None:
    with env.begin(db=db, write=True) as txn:
        for i in range(KEYS):
            txn.put(b"user:%06d" % i, ENCODED)
        txn.put(b"cas", dumps({"v": 1}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = parser.parse_args()
    batch, rounds = (2_000, 5) if args.quick else (5_000, 21)
    gc.disable()  # a collection in one side's batch is noise, not a cost of either

    with tempfile.TemporaryDirectory(prefix="bench-disk-") as tmp:
        tmp_path = Path(tmp)
        kv = open_kv(backend="disk", path=str(tmp_path / "ours.lmdb"))
        populate(kv, KEYS)
        kv.set("cas", {"v": 1})
        env = bare_env(tmp_path / "bare.lmdb")
        named = env.open_db(b"data")
        fill_bare(env, None)
        fill_bare(env, named)
        ours = our_operations(kv)
        bare_main = bare_operations(env, None)
        bare_named = bare_operations(env, named)

        print(f"lmdb {lmdb.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
        print(f"median ns per operation, {rounds} interleaved batches of {batch}; goal: ratio <= 1.3\n")
        for level, title in ((0, "backend (bytes)"), (1, "KV handle (str keys, json values) vs bare + key.encode() + orjson (sorted keys)")):
            print(title)
            print(f"  {'operation':<18}{'ours':>7}{'bare main db':>14}{'ratio':>7}     {'bare named db':>14}{'ratio':>7}")
            for name in ours:
                mine_fn = ours[name][level]
                main_fn, named_fn = bare_main[name][level], bare_named[name][level]
                for work in (mine_fn, main_fn, named_fn):  # warm up
                    median_ns(work, batch, 1)
                mine, theirs_main = side_by_side(mine_fn, main_fn, batch, rounds)
                mine2, theirs_named = side_by_side(mine_fn, named_fn, batch, rounds)
                mine = statistics.median([mine, mine2])
                r_main, r_named = mine / theirs_main, mine / theirs_named
                print(
                    f"  {name:<18}{mine:>7.0f}{theirs_main:>14.0f}{r_main:>6.2f} {verdict(r_main, 1.3)}"
                    f"{theirs_named:>14.0f}{r_named:>6.2f} {verdict(r_named, 1.3)}"
                )
            print()
        env.close()
        kv.close()

        small = open_kv(backend="disk", path=str(tmp_path / "small.lmdb"))
        populate(small, 1_000)
        large = open_kv(backend="disk", path=str(tmp_path / "large.lmdb"))
        populate(large, 1_000_000)
        for handle in (small, large):
            median_ns(handle.random_key, batch, 2)
        at_1m, at_1k = side_by_side(large.random_key, small.random_key, batch, rounds)
        ratio = at_1m / at_1k
        print(
            f"random_key (KV, with the index): {at_1k:.0f} ns at 1,000 keys, {at_1m:.0f} ns at 1,000,000 keys: "
            f"ratio {ratio:.2f} {verdict(ratio, 2.0)} (goal <= 2)"
        )
        small.close()
        large.close()


if __name__ == "__main__":
    main()
