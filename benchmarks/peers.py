"""The implementations measured: locust_kv's two backends and their peers.

Every implementation offers the operations of :class:`locust_kv.KV` under
the same names and argument order, so one loop drives them all. What a peer
does for each operation is the *same work* as locust_kv (see ``SAME_WORK``,
printed in RESULTS.md): values are Python objects in and out, serialized
with the same orjson call (sorted keys) on the way in and parsed on the way
out; counters are decimal text; compare-and-swap compares serialized bytes;
every read-modify-write is one atomic step (one lock hold, one LMDB write
transaction, one Lua script or one diskcache transaction).

A peer that has no form of an operation says so with a reason instead of
being measured.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from itertools import islice
from random import random
from typing import Any

import orjson
from sortedcontainers import SortedList

__all__ = [
    "COUNTERS",
    "PREFIX",
    "SAME_WORK",
    "SCAN_PREFIX",
    "VALUE",
    "DictFloor",
    "DiskcachePeer",
    "BackendAlone",
    "Impl",
    "KVImpl",
    "LmdbCore",
    "LmdbFloor",
    "RedisPeer",
    "counter_key",
    "dataset",
    "user_key",
]

# ---------------------------------------------------------------------------
# The data every implementation holds.

VALUE: dict[str, Any] = {
    "active": True,
    "email": "user-12345@example.com",
    "id": 1234,
    "name": "User 0012345",
    "tier": "gold",
    "v": 1,
}
"""Every stored value: a small JSON object of exactly 100 bytes once serialized."""

_DUMPS_OPTION = orjson.OPT_SORT_KEYS
VALUE_BYTES = orjson.dumps(VALUE, option=_DUMPS_OPTION)
assert len(VALUE_BYTES) == 100

COUNTERS = 100
"""Counter keys, ``counter:000`` to ``counter:099``, each starting at 0."""

PREFIX = "user:3:"
"""A prefix that matches a tenth of the user keys at every store size."""

SCAN_PREFIX = "user:"


def user_key(i: int) -> str:
    """The i-th user key; ``i % 10`` picks its tenth, so ``PREFIX`` matches 10%."""
    return f"user:{i % 10}:{i:08d}"


def counter_key(j: int) -> str:
    return f"counter:{j:03d}"


def dataset(n: int) -> list[tuple[str, bytes]]:
    """The n user keys and the counters with their stored bytes, ascending by key."""
    items = [(user_key(i), VALUE_BYTES) for i in range(n)]
    items += [(counter_key(j), b"0") for j in range(COUNTERS)]
    items.sort()
    return items


SAME_WORK = """\
Every implementation takes the same Python arguments and returns the same
Python results: a `str` key, a JSON value (the 100-byte object below) that is
serialized with `orjson.dumps(value, option=OPT_SORT_KEYS)` on every write
and parsed with `orjson.loads` on every read that returns it. Counters are
stored as decimal text, parsed, and range-checked to signed 64 bits.
`compare_and_swap` serializes `old` and `new` and compares stored bytes.
Each read-modify-write (increment_by, compare_and_swap, get_or_set, swap,
delete_if_exists) is one atomic step. The floors keep the same key index as
the backend they stand for, because `random_key` and ordered scans need it:
an operation that adds or removes a key updates it in the same atomic step.
So a floor ratio measures what locust_kv's layers add (argument checks, the
front-end/backend split, error mapping, result types, the disk backend's
state check), not the price of its features.

- **dict + lock** (floor of the memory backend): a dict of str to bytes, one
  OS lock (`threading.Lock`, as the memory backend uses), a
  `sortedcontainers.SortedList` of the keys (ordered scans, prefix sampling)
  and a dense list of keys with each key's position (uniform `random_key` in
  O(1)). Writes, read-modify-writes, scans and random_key hold the lock;
  get, exists and size are single dict operations, atomic under the GIL, as in
  the memory backend.
- **bare py-lmdb** (floor of the disk backend): an LMDB environment opened with
  the disk backend's own flags (read from its open environment, listed below),
  keys UTF-8 encoded, one transaction per operation begun and ended with
  positional arguments as the backend does: a read transaction for reads, one
  write transaction for a read-modify-write. Data, `slot -> key` and
  `key -> slot` databases, as in the backend; `random_key` reads the slot
  table (and for a prefix, the backend's algorithm: a range of up to 64 keys is
  read whole, a larger one sampled by drawing slots until a key matches). It
  has no state record, generations, map growth or error mapping.
- **redis-py**: one connection (`redis.Redis`, RESP2, no pipelining) to a
  redis-server the benchmark started on 127.0.0.1 with persistence off; the
  benchmark process is not monkey-patched by gevent, which favours redis-py
  (blocking sockets are faster than gevent's). GET/SET/EXISTS/INCRBY/DEL/
  RANDOMKEY/DBSIZE; `SET NX GET` for get_or_set, `SET GET` for swap, a Lua
  script for compare_and_swap; a scan page is `SCAN MATCH user:* COUNT 100`
  plus `MGET` (unordered, about 100 entries).
- **diskcache**: `diskcache.Cache` with its defaults (SQLite in WAL mode) in a
  temp directory; values are the same orjson bytes; `incr` for counters;
  `transact()` around compare_and_swap, get_or_set and swap.
"""


def _dumps(value: Any, _d: Any = orjson.dumps, _o: int = _DUMPS_OPTION) -> bytes:
    return _d(value, option=_o)


_loads = orjson.loads
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class Unsupported(Exception):
    """An implementation has no form of an operation; the text says why."""


_PROBE_KEYS = 64
"""The disk backend's threshold: a prefix range this small is read whole by random_key."""


def _str_prefix_end(prefix: str) -> str | None:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else None


# ---------------------------------------------------------------------------
# The common shape.


class Impl:
    """What the loops need from an implementation: its operations, and the arguments it takes."""

    label = ""
    value: Any = VALUE  # what set/swap/get_or_set/compare_and_swap store
    prefix: Any = PREFIX  # random_key's prefix
    scan_prefix: Any = SCAN_PREFIX
    scan_order = "limit-before-cursor"  # scan(prefix, limit, cursor), as KV.scan

    def key(self, key: str) -> Any:
        return key

    def op(self, name: str) -> Any:
        return getattr(self, "random_key" if name == "random_key_prefix" else name)

    def cursor_after(self, key: str) -> Any:
        return key

    def populate(self, n: int, items: list[tuple[str, bytes]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------
# locust_kv itself.


class KVImpl(Impl):
    """A locust_kv store: the KV handle's own bound methods are what is timed."""

    def __init__(self, label: str, kv: Any, snapshot_for: Any) -> None:
        self.label = label
        self.kv = kv
        self._snapshot_for = snapshot_for  # n -> path of a snapshot holding dataset(n)

    def op(self, name: str) -> Any:
        return getattr(self.kv, "random_key" if name == "random_key_prefix" else name)

    def populate(self, n: int, items: list[tuple[str, bytes]]) -> None:
        self.kv.restore(self._snapshot_for(n))

    def cursor_after(self, key: str) -> str:
        from locust_kv.store import encode_cursor

        return encode_cursor(key.encode())

    def close(self) -> None:
        self.kv.close()


# ---------------------------------------------------------------------------
# Floor of the memory backend.


class DictFloor(Impl):
    """A dict under an OS lock doing the same work (see SAME_WORK)."""

    label = "dict + lock"

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.order = SortedList()
        self.slots: list[str] = []
        self.slot_of: dict[str, int] = {}

    def populate(self, n: int, items: list[tuple[str, bytes]]) -> None:
        self.data = dict(items)
        self.order = SortedList(self.data)
        self.slots = list(self.order)
        self.slot_of = {k: i for i, k in enumerate(self.slots)}

    def cursor_after(self, key: str) -> str:
        return key

    def close(self) -> None:
        self.populate(0, [])

    # The key index, kept under the lock by every insert and delete.

    def _add(self, key: str) -> None:
        self.order.add(key)
        self.slot_of[key] = len(self.slots)
        self.slots.append(key)

    def _remove(self, key: str) -> None:
        self.order.remove(key)
        slot = self.slot_of.pop(key)
        last = self.slots.pop()
        if slot < len(self.slots):
            self.slots[slot] = last
            self.slot_of[last] = slot

    def get(self, key: str) -> Any:
        data = self.data.get(key)
        if data is None:
            raise KeyError(key)
        return _loads(data)

    def set(self, key: str, value: Any) -> Any:
        data = _dumps(value)
        with self.lock:
            if key not in self.data:
                self._add(key)
            self.data[key] = data
        return value

    def exists(self, key: str) -> bool:
        return key in self.data

    def increment_by(self, key: str, delta: int) -> int:
        with self.lock:
            current = self.data.get(key)
            if current is None:
                value = delta
                self._add(key)
            else:
                value = int(current) + delta
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise OverflowError(key)
            self.data[key] = b"%d" % value
        return value

    def compare_and_swap(self, key: str, old: Any, new: Any) -> bool:
        expected = None if old is None else _dumps(old)
        data = _dumps(new)
        with self.lock:
            current = self.data.get(key)
            if current != expected:
                return False
            if current is None:
                self._add(key)
            self.data[key] = data
        return True

    def get_or_set(self, key: str, value: Any) -> tuple[Any, bool]:
        data = _dumps(value)
        with self.lock:
            current = self.data.get(key)
            if current is None:
                self._add(key)
                self.data[key] = data
        return (value, False) if current is None else (_loads(current), True)

    def swap(self, key: str, value: Any) -> tuple[Any, bool]:
        data = _dumps(value)
        with self.lock:
            previous = self.data.get(key)
            if previous is None:
                self._add(key)
            self.data[key] = data
        return (None, False) if previous is None else (_loads(previous), True)

    def delete_if_exists(self, key: str) -> bool:
        with self.lock:
            if self.data.pop(key, None) is None:
                return False
            self._remove(key)
            return True

    def random_key(self, prefix: str = "") -> str:
        with self.lock:
            if not prefix:
                slots = self.slots
                return slots[int(random() * len(slots))] if slots else ""
            order = self.order
            lo = order.bisect_left(prefix)
            hi = order.bisect_left(_str_prefix_end(prefix))
            return order[lo + int(random() * (hi - lo))] if hi > lo else ""

    def scan(self, prefix: str = "", limit: int = 0, cursor: str = "") -> tuple[list[tuple[str, Any]], str, bool]:
        with self.lock:
            keys = self.order.irange(max(prefix, cursor), _str_prefix_end(prefix), (not cursor, False))
            page = list(islice(keys, limit + 1))
            more = len(page) > limit
            data = self.data
            rows = [(k, data[k]) for k in page[:limit]]
        entries = [(k, _loads(v)) for k, v in rows]
        return entries, (rows[-1][0] if more else ""), not more

    def size(self) -> int:
        return len(self.data)


# ---------------------------------------------------------------------------
# Floor of the disk backend.


class LmdbFloor(Impl):
    """Bare py-lmdb with the disk backend's flags doing the same work (see SAME_WORK).

    Transactions are begun and ended with positional arguments, as the disk
    backend does: py-lmdb's keyword parsing costs a few hundred ns a call.
    """

    label = "bare py-lmdb"

    def __init__(self, path: str, flags: dict[str, Any], create: bool = True) -> None:
        import lmdb

        self.path = path
        if create:
            for name in (path, path + "-lock"):
                if os.path.isfile(name):
                    os.remove(name)
            shutil.rmtree(path, ignore_errors=True)
        self.flags = dict(flags)
        self.env = lmdb.open(path, max_dbs=4, max_spare_txns=0, **self.flags)
        self.data_db = self.env.open_db(b"data")
        self.slots_db = self.env.open_db(b"slots")
        self.slotof_db = self.env.open_db(b"slotof")

    def populate(self, n: int, items: list[tuple[str, bytes]]) -> None:
        env = self.env
        with env.begin(write=True) as txn:
            for db in (self.data_db, self.slots_db, self.slotof_db):
                txn.drop(db, delete=False)
        rows = [(k.encode(), v) for k, v in items]
        slots = [(i.to_bytes(8, "big"), k) for i, (k, _) in enumerate(rows)]
        slot_of = [(k, slot) for slot, k in slots]
        for db, pairs in ((self.data_db, rows), (self.slots_db, slots), (self.slotof_db, slot_of)):
            for start in range(0, len(pairs), 100_000):
                with env.begin(write=True, db=db) as txn:
                    txn.cursor().putmulti(pairs[start : start + 100_000], append=True)

    def cursor_after(self, key: str) -> bytes:
        return key.encode()

    def close(self) -> None:
        self.env.close()
        for name in (self.path, self.path + "-lock"):
            if os.path.isfile(name):
                os.remove(name)
        shutil.rmtree(self.path, ignore_errors=True)

    # Transactions.

    def _read(self, op: Any, *args: Any) -> Any:
        txn = self.env.begin()
        try:
            return op(txn, *args)
        finally:
            txn.abort()

    def _write(self, op: Any, *args: Any) -> Any:
        txn = self.env.begin(None, None, True)
        try:
            result = op(txn, *args)
        except BaseException:
            txn.abort()
            raise
        txn.commit()
        return result

    # The key index (slot -> key and key -> slot), kept by every insert and delete.

    def _add(self, txn: Any, key: bytes) -> None:
        slots = txn.cursor(self.slots_db)
        slot = (int.from_bytes(slots.key(), "big") + 1 if slots.last() else 0).to_bytes(8, "big")
        txn.put(key, slot, True, True, False, self.slotof_db)
        slots.put(slot, key, True, True, True)

    def _remove(self, txn: Any, key: bytes) -> None:
        slot = txn.pop(key, self.slotof_db)
        slots = txn.cursor(self.slots_db)
        slots.last()
        if slots.key() != slot:
            moved = slots.value()
            slots.delete()
            txn.put(slot, moved, True, True, False, self.slots_db)
            txn.put(moved, slot, True, True, False, self.slotof_db)
        else:
            slots.delete()

    # Operations.

    def get(self, key: str) -> Any:
        data = self._read(self._get_in, key.encode())
        if data is None:
            raise KeyError(key)
        return _loads(data)

    def _get_in(self, txn: Any, key: bytes) -> bytes | None:
        return txn.get(key, None, self.data_db)

    def set(self, key: str, value: Any) -> Any:
        self._write(self._set_in, key.encode(), _dumps(value))
        return value

    def _set_in(self, txn: Any, key: bytes, value: bytes) -> None:
        if txn.replace(key, value, self.data_db) is None:
            self._add(txn, key)

    def exists(self, key: str) -> bool:
        return self._read(self._get_in, key.encode()) is not None

    def increment_by(self, key: str, delta: int) -> int:
        return self._write(self._increment_in, key.encode(), delta)

    def _increment_in(self, txn: Any, key: bytes, delta: int) -> int:
        current = txn.get(key, None, self.data_db)
        value = delta if current is None else int(current) + delta
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise OverflowError(key)
        txn.put(key, b"%d" % value, True, True, False, self.data_db)
        if current is None:
            self._add(txn, key)
        return value

    def compare_and_swap(self, key: str, old: Any, new: Any) -> bool:
        return self._write(self._cas_in, key.encode(), None if old is None else _dumps(old), _dumps(new))

    def _cas_in(self, txn: Any, key: bytes, old: bytes | None, new: bytes) -> bool:
        current = txn.get(key, None, self.data_db)
        if current != old:
            return False
        txn.put(key, new, True, True, False, self.data_db)
        if current is None:
            self._add(txn, key)
        return True

    def get_or_set(self, key: str, value: Any) -> tuple[Any, bool]:
        current = self._write(self._get_or_set_in, key.encode(), _dumps(value))
        return (value, False) if current is None else (_loads(current), True)

    def _get_or_set_in(self, txn: Any, key: bytes, value: bytes) -> bytes | None:
        current = txn.get(key, None, self.data_db)
        if current is None:
            txn.put(key, value, True, True, False, self.data_db)
            self._add(txn, key)
        return current

    def swap(self, key: str, value: Any) -> tuple[Any, bool]:
        previous = self._write(self._swap_in, key.encode(), _dumps(value))
        return (None, False) if previous is None else (_loads(previous), True)

    def _swap_in(self, txn: Any, key: bytes, value: bytes) -> bytes | None:
        previous = txn.replace(key, value, self.data_db)
        if previous is None:
            self._add(txn, key)
        return previous

    def delete_if_exists(self, key: str) -> bool:
        return self._write(self._delete_in, key.encode())

    def _delete_in(self, txn: Any, key: bytes) -> bool:
        if not txn.delete(key, b"", self.data_db):
            return False
        self._remove(txn, key)
        return True

    def random_key(self, prefix: str = "") -> str:
        key = self._read(self._random_in, prefix.encode())
        return "" if key is None else key.decode()

    def _random_in(self, txn: Any, prefix: bytes) -> bytes | None:
        slots = txn.cursor(self.slots_db)
        if not slots.last():
            return None
        count = int.from_bytes(slots.key(), "big") + 1
        if not prefix:
            slots.set_key(int(random() * count).to_bytes(8, "big"))
            return slots.value()
        # The disk backend's algorithm: a small range is read whole, a large one
        # sampled by drawing from the whole index until a key has the prefix.
        cursor = txn.cursor(self.data_db)
        if not cursor.set_range(prefix):
            return None
        head = list(islice(cursor.iternext(True, False), _PROBE_KEYS + 1))
        if len(head) <= _PROBE_KEYS or not head[-1].startswith(prefix):  # keys ascend: the matches lead
            head = [k for k in head if k.startswith(prefix)]
            return head[int(random() * len(head))] if head else None
        while True:
            slots.set_key(int(random() * count).to_bytes(8, "big"))
            key = slots.value()
            if key.startswith(prefix):
                return key

    def scan(self, prefix: str = "", limit: int = 0, cursor: bytes = b"") -> tuple[list[tuple[str, Any]], str, bool]:
        rows, more = self._read(self._scan_in, prefix.encode(), cursor + b"\x00" if cursor else b"", limit)
        entries = [(k.decode(), _loads(v)) for k, v in rows]
        return entries, (entries[-1][0] if more else ""), not more

    def _scan_in(self, txn: Any, prefix: bytes, start: bytes, limit: int) -> tuple[list[tuple[bytes, bytes]], bool]:
        cur = txn.cursor(self.data_db)
        if not cur.set_range(max(prefix, start)):
            return [], False
        rows = []
        for row in cur.iternext():
            if not row[0].startswith(prefix):
                return rows, False
            if len(rows) == limit:
                return rows, True
            rows.append(row)
        return rows, False

    def size(self) -> int:
        return self._read(self._size_in)

    def _size_in(self, txn: Any) -> int:
        return txn.stat(self.data_db)["entries"]


# ---------------------------------------------------------------------------
# The same work without the front-end: for attributing a gap to its layer.


class BackendAlone(Impl):
    """A locust_kv backend called directly with bytes: no argument checks, serialization or result types."""

    value = VALUE_BYTES
    prefix = PREFIX.encode()
    scan_prefix = SCAN_PREFIX.encode()
    scan_order = "start-before-limit"  # Backend.scan(low, high, offset, limit), given as (prefix, start, limit)

    def __init__(self, label: str, kv: Any) -> None:
        self.label = label
        self.backend = kv._backend

    def key(self, key: str) -> bytes:
        return key.encode()

    def cursor_after(self, key: str) -> bytes:
        return key.encode() + b"\x00"

    def populate(self, n: int, items: list[tuple[str, bytes]]) -> None:
        pass  # shares the store of its KVImpl, which populates it

    def op(self, name: str) -> Any:
        b = self.backend
        if name == "random_key":
            return partial(b.random_key, b"")
        if name == "random_key_prefix":
            return b.random_key
        if name == "scan":  # the range the front-end makes of a prefix and a cursor
            from locust_kv.backends.base import prefix_end

            end = prefix_end(self.scan_prefix)
            return lambda prefix, start, limit: b.scan(max(prefix, start), end, 0, limit)
        return getattr(b, "delete" if name == "delete_if_exists" else name)


class LmdbMainFloor(Impl):
    """Bare py-lmdb with the same flags, its keys in the main (unnamed) database: ``get`` and ``exists`` only.

    The cheapest read LMDB offers: one read transaction, one lookup, no named
    database and no state record. The disk backend keeps its data in a named
    database per generation and reads its state record first (what makes
    clear and restore switch generations atomically across processes); this
    second floor shows what those cost (see notes.md).
    """

    label = "bare py-lmdb, main database"

    def __init__(self, path: str, flags: dict[str, Any]) -> None:
        import lmdb

        self.path = path
        for name in (path, path + "-lock"):
            if os.path.isfile(name):
                os.remove(name)
        shutil.rmtree(path, ignore_errors=True)
        self.env = lmdb.open(path, max_dbs=0, max_spare_txns=0, **flags)

    def populate(self, n: int, items: list[tuple[str, bytes]]) -> None:
        env = self.env
        with env.begin(write=True) as txn:
            txn.drop(env.open_db(None), delete=False)
        rows = [(k.encode(), v) for k, v in items]
        for start in range(0, len(rows), 100_000):
            with env.begin(write=True) as txn:
                txn.cursor().putmulti(rows[start : start + 100_000], append=True)

    def close(self) -> None:
        self.env.close()
        for name in (self.path, self.path + "-lock"):
            if os.path.isfile(name):
                os.remove(name)
        shutil.rmtree(self.path, ignore_errors=True)

    def op(self, name: str) -> Any:
        if name not in ("get", "exists"):
            raise Unsupported("the main-database floor measures get and exists only")
        return getattr(self, name)

    def get(self, key: str) -> Any:
        txn = self.env.begin()
        try:
            data = txn.get(key.encode())
        finally:
            txn.abort()
        if data is None:
            raise KeyError(key)
        return _loads(data)

    def exists(self, key: str) -> bool:
        txn = self.env.begin()
        try:
            return txn.get(key.encode()) is not None
        finally:
            txn.abort()


class LmdbCore(Impl):
    """The bare py-lmdb floor's transactions called with bytes: its work without serialization."""

    value = VALUE_BYTES
    prefix = PREFIX.encode()
    scan_prefix = SCAN_PREFIX.encode()
    scan_order = "start-before-limit"

    def __init__(self, floor: LmdbFloor) -> None:
        self.label = "bare py-lmdb core"
        self.floor = floor

    def key(self, key: str) -> bytes:
        return key.encode()

    def cursor_after(self, key: str) -> bytes:
        return key.encode() + b"\x00"

    def populate(self, n: int, items: list[tuple[str, bytes]]) -> None:
        pass  # shares the floor's environment, which the floor populates

    def op(self, name: str) -> Any:
        f = self.floor
        read, write = f._read, f._write
        return {
            "get": partial(read, f._get_in),
            "exists": partial(read, f._get_in),
            "set": partial(write, f._set_in),
            "increment_by": partial(write, f._increment_in),
            "compare_and_swap": partial(write, f._cas_in),
            "get_or_set": partial(write, f._get_or_set_in),
            "swap": partial(write, f._swap_in),
            "delete_if_exists": partial(write, f._delete_in),
            "random_key": partial(read, f._random_in, b""),
            "random_key_prefix": partial(read, f._random_in),
            "scan": partial(read, f._scan_in),
            "size": partial(read, f._size_in),
        }[name]


# ---------------------------------------------------------------------------
# What Locust users run today: Redis through redis-py.

_CAS_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


class RedisPeer(Impl):
    """redis-py over one loopback connection (see SAME_WORK)."""

    label = "redis-py"

    def __init__(self, port: int, directory: str = "") -> None:
        import redis

        self.directory = directory  # the server's --dir, where SAVE writes dump.rdb
        self.r = redis.Redis(host="127.0.0.1", port=port, protocol=2)
        self.r.ping()
        self._cas = self.r.register_script(_CAS_SCRIPT)
        self._scan_cursors: list[int] = [0]

    def populate(self, n: int, items: list[tuple[str, bytes]]) -> None:
        self.r.flushdb()
        for start in range(0, len(items), 1000):
            self.r.mset(dict(items[start : start + 1000]))
        cursors, cursor = [], 0
        while True:
            cursor, _ = self.r.scan(cursor, match=SCAN_PREFIX + "*", count=100)
            if cursor == 0:
                break
            cursors.append(cursor)
        self._scan_cursors = cursors or [0]

    def cursor_after(self, key: str) -> int:
        # Redis cursors are hash-table positions, not keys: take any of the real ones.
        return self._scan_cursors[int(random() * len(self._scan_cursors))]

    def close(self) -> None:
        self.r.close()

    def get(self, key: str) -> Any:
        data = self.r.get(key)
        if data is None:
            raise KeyError(key)
        return _loads(data)

    def set(self, key: str, value: Any) -> Any:
        self.r.set(key, _dumps(value))
        return value

    def exists(self, key: str) -> bool:
        return self.r.exists(key) == 1

    def increment_by(self, key: str, delta: int) -> int:
        return self.r.incrby(key, delta)

    def compare_and_swap(self, key: str, old: Any, new: Any) -> bool:
        if old is None:
            return bool(self.r.set(key, _dumps(new), nx=True))
        return self._cas(keys=[key], args=[_dumps(old), _dumps(new)]) == 1

    def get_or_set(self, key: str, value: Any) -> tuple[Any, bool]:
        previous = self.r.set(key, _dumps(value), nx=True, get=True)
        return (value, False) if previous is None else (_loads(previous), True)

    def swap(self, key: str, value: Any) -> tuple[Any, bool]:
        previous = self.r.set(key, _dumps(value), get=True)
        return (None, False) if previous is None else (_loads(previous), True)

    def delete_if_exists(self, key: str) -> bool:
        return self.r.delete(key) == 1

    def random_key(self, prefix: str = "") -> str:
        if prefix:
            raise Unsupported("Redis has no random key within a prefix")
        key = self.r.randomkey()
        return "" if key is None else key.decode()

    def scan(self, prefix: str = "", limit: int = 0, cursor: int = 0) -> tuple[list[tuple[str, Any]], int, bool]:
        cursor, keys = self.r.scan(cursor, match=prefix + "*", count=limit)
        values = self.r.mget(keys) if keys else []
        entries = [(k.decode(), _loads(v)) for k, v in zip(keys, values) if v is not None]
        return entries, cursor, cursor == 0

    def size(self) -> int:
        return self.r.dbsize()


# ---------------------------------------------------------------------------
# The popular embedded Python store.


class DiskcachePeer(Impl):
    """diskcache.Cache with its defaults (see SAME_WORK)."""

    label = "diskcache"

    def __init__(self, directory: str) -> None:
        import diskcache

        shutil.rmtree(directory, ignore_errors=True)
        self.directory = directory
        self.c = diskcache.Cache(directory)

    def populate(self, n: int, items: list[tuple[str, bytes]]) -> None:
        self.c.clear()
        with self.c.transact():
            for k, v in items:
                self.c.set(k, int(v) if k.startswith("counter:") else v)

    def cursor_after(self, key: str) -> str:
        return key

    def close(self) -> None:
        self.c.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def get(self, key: str) -> Any:
        data = self.c.get(key)
        if data is None:
            raise KeyError(key)
        return _loads(data)

    def set(self, key: str, value: Any) -> Any:
        self.c.set(key, _dumps(value))
        return value

    def exists(self, key: str) -> bool:
        return key in self.c

    def increment_by(self, key: str, delta: int) -> int:
        return self.c.incr(key, delta)

    def compare_and_swap(self, key: str, old: Any, new: Any) -> bool:
        expected = None if old is None else _dumps(old)
        data = _dumps(new)
        with self.c.transact():
            if self.c.get(key) != expected:
                return False
            self.c.set(key, data)
        return True

    def get_or_set(self, key: str, value: Any) -> tuple[Any, bool]:
        data = _dumps(value)
        with self.c.transact():
            current = self.c.get(key)
            if current is None:
                self.c.set(key, data)
        return (value, False) if current is None else (_loads(current), True)

    def swap(self, key: str, value: Any) -> tuple[Any, bool]:
        data = _dumps(value)
        with self.c.transact():
            previous = self.c.get(key)
            self.c.set(key, data)
        return (None, False) if previous is None else (_loads(previous), True)

    def delete_if_exists(self, key: str) -> bool:
        return self.c.delete(key)

    def random_key(self, prefix: str = "") -> str:
        raise Unsupported("diskcache has no random-key operation")

    def scan(self, prefix: str = "", limit: int = 0, cursor: str = "") -> Any:
        raise Unsupported("diskcache has no ordered range or prefix read")

    def size(self) -> int:
        return len(self.c)


def cycle(seq: list[Any], n: int, offset: int) -> list[Any]:
    """``n`` items of ``seq`` taken round-robin from ``offset``."""
    out: list[Any] = []
    m = len(seq)
    while len(out) < n:
        take = min(n - len(out), m - offset)
        out.extend(seq[offset : offset + take])
        offset = (offset + take) % m
    return out


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
