"""Claims (leases), batch and prefix operations against their floors, and claim_random at scale.

Three parts, each measured side by side in rounds (benchmarks/harness.py):

1. **Operations.** Every new operation of issue 12 on each backend against a
   floor doing the same work: the memory backend against a dict under a lock,
   the disk backend against bare py-lmdb (the disk backend's own flags), the
   redis backend against bare redis-py (Lua scripts on the same server). A
   store of ``n_keys`` user keys (100-byte JSON values) and 100 counters,
   nothing held. Goal: a ratio of at most :data:`GOAL` wherever the floor is
   fair; printed, never asserted.
2. **claim_random at scale.** claim_random + release_claim cycles on stores
   of 1,000 and 1,000,000 entries (and 100 counters) of which a fifth hold a
   live lease (an hour long, taken before measuring), all sizes in the same
   rounds; the backends only. Goal: the cycle at 1,000,000 costs at most :data:`GROWTH_GOAL`
   times its cost at 1,000.
3. **An exhausted pool.** The same cycle when 99% of a 10,000-key store is
   held: the draws keep hitting held keys and each backend falls back to its
   exact path. Its cost is reported, with no goal.

What the floors do (see :data:`SAME_WORK`): the same Python arguments and
results, values serialized with the same orjson call and parsed on the way
out; the key index of the backend they stand for (an ordered set and a dense
slot list, LMDB slot tables, a Redis hash plus a sorted set), kept by every
insert and delete; per-key lease records ``(token, expires_ms, owner)``
outside the key space with a store-wide token counter; every delete dropping
the key's lease in the same atomic step. They keep none of the backends'
extra lease bookkeeping (the memory backend's sorted held/expired sets, the
redis backend's lease indexes), which is part of what the ratio measures.
"""

from __future__ import annotations

import gc
import itertools
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from struct import Struct
from typing import Any

from harness import Case, measure
from peers import (
    PREFIX,
    SCAN_PREFIX,
    VALUE,
    VALUE_BYTES,
    DictFloor,
    Impl,
    KVImpl,
    LmdbFloor,
    _dumps,
    _loads,
    _str_prefix_end,
    cycle,
    dataset,
    user_key,
)

__all__ = ["GOAL", "GROWTH_GOAL", "OPS", "SAME_WORK", "run"]

GOAL = 1.3
"""Target ratio of a locust_kv backend to its floor, for every operation here and every backend."""

GROWTH_GOAL = 2.0
"""Target ratio of claim_random + release at 1,000,000 entries to the same at 1,000."""

BATCH = 100
RANDOM_COUNT = 10
DELETE_PREFIX_KEYS = 1_000
CLAIM_TTL = 60.0  # seconds: the measured claims, released at once
HELD_TTL = 3_600.0  # seconds: the leases that hold part of the pool while measuring
HELD_SHARE = 0.2
EXHAUSTED_SHARE = 0.99
EXHAUSTED_KEYS = 10_000
OWNER = "bench"

PAIRS = {"memory": "dict", "disk": "lmdb", "redis": "redis-floor"}
"""Each backend and the floor it is measured against."""

CLOCKS = {"memory": "cpu", "disk": "cpu", "redis": "wall"}
"""The clock each backend's comparison uses: the thread's CPU time, or the wall clock for a server."""

LABELS = {
    "memory": "locust_kv memory",
    "dict": "dict + lock",
    "disk": "locust_kv disk",
    "lmdb": "bare py-lmdb",
    "redis": "locust_kv redis",
    "redis-floor": "bare redis-py",
    "memory-backend": "memory backend alone",
    "disk-backend": "disk backend alone",
}

SAME_WORK = """\
Every floor takes the same Python arguments and returns the same Python results as the KV method (tuples
where KV returns named tuples); values are serialized with `orjson.dumps(value, option=OPT_SORT_KEYS)` and parsed
with `orjson.loads` wherever KV does. Each keeps the key index of the backend it stands for (see the operations
section) and, for leases, one record per leased key outside the key space, `(token, expires_ms, owner)`, with a
store-wide token counter raised by every claim; a lease is live while `expires_ms` is after now (the process's
wall clock in ms for dict and LMDB, the server's `TIME` inside the script for Redis); every delete drops the key's
lease in the same atomic step. A claim reads and parses the value (a Claim carries it).

- **dict + lock** (memory): a dict, one `threading.Lock`, a `SortedList` of the keys and a dense slot list; lease
  records in a dict. Every operation is one lock hold (get_many included: one moment). Draws (random_keys,
  pop_random, claim_random) pick uniform slots, rejecting held keys (claim_random, pop_random).
- **bare py-lmdb** (disk): the environment and slot tables of the ops section's floor, a `claims` database of
  `>Qq` + owner records and the token in the main database; one read transaction per read, one write
  transaction per write (a claim: value, lease, token read; lease and token written). `count(prefix)` is a
  cursor walk of the range, as LMDB keeps no counts. The map is opened at 16 GiB (the backend grows its own).
- **bare redis-py** (redis): one connection (RESP2, no pipelining) to the same redis-server, its own database;
  data in a hash and the key order in a sorted set, as the redis backend keeps them; leases in a hash
  (`ends:token:owner`) and an `INCR` counter. `HMGET` for get_many, `ZLEXCOUNT` for count, `ZRANGEBYLEX ... LIMIT`
  for a keys page, one Lua script for every other operation (draws by uniform rank in the sorted set).
"""

_now_ms = lambda: int(time.time() * 1000)


class LostClaim(Exception):
    """A floor's release of a lease that is no longer live."""


# ---------------------------------------------------------------------------
# locust_kv itself: the KV handle's own methods.


class KVClaims(KVImpl):
    """A locust_kv store; ``hold`` takes leases with ``claim_keys`` (untimed set-up)."""

    def op(self, name: str) -> Any:
        return getattr(self.kv, name)

    def hold(self, keys: list[str], ttl: float) -> int:
        held = 0
        for start in range(0, len(keys), 10_000):
            held += len(self.kv.claim_keys(keys[start : start + 10_000], ttl, "holder"))
        return held

    def all_keys(self) -> list[str]:
        return self.kv.list_keys()


class BackendClaims(Impl):
    """A locust_kv store's backend called directly with bytes (keys encoded here, values already serialized).

    Shares its KVClaims' store. What it lacks against the KV figure is the
    front-end: argument checks, serialization, error mapping and result
    types; so ``locust_kv - backend alone`` is what the front-end adds.
    """

    def __init__(self, kv_impl: KVClaims) -> None:
        self.label = kv_impl.label.replace("locust_kv ", "") + " backend alone"
        self.b = kv_impl.kv._backend
        from locust_kv.backends.base import prefix_end

        self.prefix_end = prefix_end

    def op(self, name: str) -> Any:
        return getattr(self, name)

    def populate(self, n: int, items: list[tuple[str, bytes]]) -> None:
        pass

    def cursor_after(self, key: str) -> bytes:
        return key.encode() + b"\x00"

    def get_many(self, keys: list[str]) -> Any:
        return self.b.get_many([k.encode() for k in keys])

    def set_many(self, items: dict[Any, Any]) -> int:
        self.b.set_many([(k if type(k) is bytes else k.encode(), VALUE_BYTES) for k in items])
        return len(items)

    def delete_many(self, keys: list[str]) -> int:
        return self.b.delete_many([k.encode() for k in keys])

    def count(self, prefix: str) -> int:
        raw = prefix.encode()
        return self.b.count(raw, self.prefix_end(raw))

    def scan_keys(self, prefix: str, limit: int, cursor: bytes) -> Any:
        raw = prefix.encode()  # the range the front-end makes of a prefix and a cursor
        return self.b.scan_keys(max(raw, cursor), self.prefix_end(raw), 0, limit)

    def random_keys(self, prefix: str, count: int) -> Any:
        return self.b.random_keys(prefix.encode(), count, True)

    def pop_random(self, prefix: str) -> Any:
        rows = self.b.pop_random(prefix.encode(), 1)
        return rows[0] if rows else None

    def set_if_absent(self, key: str, value: Any) -> Any:
        return self.b.get_or_set(key.encode(), VALUE_BYTES)

    def compare_and_swap_detailed(self, key: str, old: Any, new: Any) -> Any:
        return self.b.compare_and_swap_detailed(key.encode(), VALUE_BYTES, VALUE_BYTES)

    def claim_key(self, key: str, ttl: float, owner: str) -> Any:
        return self.b.claim_keys([key.encode()], int(ttl * 1000), owner.encode())[0]

    def claim_random(self, prefix: str, ttl: float, owner: str) -> Any:
        records = self.b.claim_random(prefix.encode(), 1, int(ttl * 1000), owner.encode())
        return records[0] if records else None

    def release_claim(self, record: Any) -> None:
        if not self.b.release_claims([(record.key, record.token)])[0]:
            raise LostClaim(record.key)

    def delete_prefix(self, prefix: str) -> Any:
        return self.b.delete_prefix(prefix.encode(), 0)


# ---------------------------------------------------------------------------
# Floor of the memory backend.


class DictClaims(DictFloor):
    """The dict floor with lease records and the new operations."""

    def __init__(self) -> None:
        super().__init__()
        self.leases: dict[str, tuple[int, int, bytes]] = {}
        self.token = 0

    def populate(self, n: int, items: list[tuple[str, bytes]]) -> None:
        super().populate(n, items)
        self.leases = {}

    def op(self, name: str) -> Any:
        return getattr(self, name)

    def all_keys(self) -> list[str]:
        return list(self.order)

    def hold(self, keys: list[str], ttl: float) -> int:
        expires = _now_ms() + int(ttl * 1000)
        with self.lock:
            for key in keys:
                self.token += 1
                self.leases[key] = (self.token, expires, b"holder")
        return len(keys)

    def _drop(self, key: str) -> None:
        """Remove ``key`` (present) from the data, the index and the leases; under the lock."""
        del self.data[key]
        self._remove(key)
        if self.leases:
            self.leases.pop(key, None)

    def _draw_free(self, now: int) -> str | None:
        """A uniform key without a live lease (prefix ''), by rejection, then exactly; under the lock."""
        slots, leases = self.slots, self.leases
        n = len(slots)
        if not n:
            return None
        for _ in range(64):
            key = slots[int(random.random() * n)]
            lease = leases.get(key)
            if lease is None or lease[1] <= now:
                return key
        free = [k for k in slots if (lease := leases.get(k)) is None or lease[1] <= now]
        return free[int(random.random() * len(free))] if free else None

    def get_many(self, keys: list[str]) -> list[tuple[str, Any, bool]]:
        with self.lock:
            get = self.data.get
            values = [get(k) for k in keys]
        return [(k, None, False) if v is None else (k, _loads(v), True) for k, v in zip(keys, values)]

    def set_many(self, items: dict[str, Any]) -> int:
        encoded = [(k, _dumps(v)) for k, v in items.items()]
        with self.lock:
            data = self.data
            for key, value in encoded:
                if key not in data:
                    self._add(key)
                data[key] = value
        return len(encoded)

    def delete_many(self, keys: list[str]) -> int:
        removed = 0
        with self.lock:
            data = self.data
            for key in keys:
                if key in data:
                    self._drop(key)
                    removed += 1
        return removed

    def count(self, prefix: str) -> int:
        with self.lock:
            order = self.order
            return order.bisect_left(_str_prefix_end(prefix)) - order.bisect_left(prefix)

    def scan_keys(self, prefix: str, limit: int, cursor: str) -> tuple[list[str], str, bool]:
        with self.lock:
            page = list(islice(self.order.irange(max(prefix, cursor), _str_prefix_end(prefix), (not cursor, False)),
                               limit + 1))
        if len(page) > limit:
            return page[:limit], page[limit - 1], False
        return page, "", True

    def random_keys(self, prefix: str, count: int) -> list[str]:
        with self.lock:
            slots = self.slots
            return random.sample(slots, min(count, len(slots)))

    def pop_random(self, prefix: str) -> tuple[str, Any] | None:
        now = _now_ms()
        with self.lock:
            key = self._draw_free(now)
            if key is None:
                return None
            value = self.data[key]
            self._drop(key)
        return key, _loads(value)

    def set_if_absent(self, key: str, value: Any) -> bool:
        data = _dumps(value)
        with self.lock:
            if key in self.data:
                return False
            self._add(key)
            self.data[key] = data
        return True

    def compare_and_swap_detailed(self, key: str, old: Any, new: Any) -> tuple[bool, str, bool, Any]:
        expected = None if old is None else _dumps(old)
        data = _dumps(new)
        with self.lock:
            current = self.data.get(key)
            if current == expected:
                if current is None:
                    self._add(key)
                self.data[key] = data
        if current == expected:
            return True, "swapped", current is not None, None
        return False, "mismatch", current is not None, None if current is None else _loads(current)

    def _grant(self, key: str, ttl_ms: int, owner: bytes, now: int) -> tuple[bytes, int, int]:
        self.token += 1
        expires = now + ttl_ms
        self.leases[key] = (self.token, expires, owner)
        return self.data[key], self.token, expires

    def claim_key(self, key: str, ttl: float, owner: str) -> tuple[str, Any, int, str, float] | None:
        owner_bytes = owner.encode()
        ttl_ms = int(ttl * 1000)
        with self.lock:
            now = _now_ms()
            if key not in self.data:
                return None
            lease = self.leases.get(key)
            if lease is not None and lease[1] > now:
                return None
            value, token, expires = self._grant(key, ttl_ms, owner_bytes, now)
        return key, _loads(value), token, owner, expires / 1000

    def claim_random(self, prefix: str, ttl: float, owner: str) -> tuple[str, Any, int, str, float] | None:
        owner_bytes = owner.encode()
        ttl_ms = int(ttl * 1000)
        with self.lock:
            now = _now_ms()
            key = self._draw_free(now)
            if key is None:
                return None
            value, token, expires = self._grant(key, ttl_ms, owner_bytes, now)
        return key, _loads(value), token, owner, expires / 1000

    def release_claim(self, claim: tuple[str, Any, int, str, float]) -> None:
        key, token = claim[0], claim[2]
        with self.lock:
            lease = self.leases.get(key)
            if lease is None or lease[0] != token or lease[1] <= _now_ms():
                raise LostClaim(key)
            del self.leases[key]

    def delete_prefix(self, prefix: str) -> tuple[int, bool]:
        with self.lock:
            order = self.order
            lo, hi = order.bisect_left(prefix), order.bisect_left(_str_prefix_end(prefix))
            keys = order[lo:hi]
            del order[lo:hi]
            data, leases, slots, slot_of = self.data, self.leases, self.slots, self.slot_of
            for key in keys:
                del data[key]
                slot = slot_of.pop(key)
                last = slots.pop()
                if slot < len(slots):
                    slots[slot] = last
                    slot_of[last] = slot
                if leases:
                    leases.pop(key, None)
        return len(keys), True


# ---------------------------------------------------------------------------
# Floor of the disk backend.

_LEASE = Struct(">Qq")
_TOKEN = b"claim_token"
MAP_SIZE = 1 << 34


class LmdbClaims(LmdbFloor):
    """The bare py-lmdb floor with a claims database and the new operations."""

    def __init__(self, path: str, flags: dict[str, Any]) -> None:
        # The disk backend grows its map as it fills; the floor opens one large enough for a million keys at once.
        super().__init__(path, {**flags, "map_size": max(flags.get("map_size", 0), MAP_SIZE)})
        self.claims_db = self.env.open_db(b"claims")

    def populate(self, n: int, items: list[tuple[str, bytes]]) -> None:
        super().populate(n, items)
        with self.env.begin(write=True) as txn:
            txn.drop(self.claims_db, delete=False)
            txn.delete(_TOKEN)

    def op(self, name: str) -> Any:
        return getattr(self, name)

    def all_keys(self) -> list[str]:
        with self.env.begin(db=self.data_db) as txn:
            return [k.decode() for k in txn.cursor().iternext(True, False)]

    def hold(self, keys: list[str], ttl: float) -> int:
        expires = _now_ms() + int(ttl * 1000)
        with self.env.begin(write=True) as txn:
            token = int.from_bytes(txn.get(_TOKEN) or bytes(8), "big")
            for key in keys:
                token += 1
                txn.put(key.encode(), _LEASE.pack(token, expires) + b"holder", True, True, False, self.claims_db)
            txn.put(_TOKEN, token.to_bytes(8, "big"))
        return len(keys)

    def _has_leases(self, txn: Any) -> bool:
        return txn.stat(self.claims_db)["entries"] > 0

    def _draw_free(self, txn: Any, now: int) -> bytes | None:
        """A uniform key without a live lease (prefix ''): slot draws, then every key."""
        slots = txn.cursor(self.slots_db)
        if not slots.last():
            return None
        total = int.from_bytes(slots.key(), "big") + 1
        claims = self.claims_db if self._has_leases(txn) else None
        get = txn.get
        for _ in range(64):
            slots.set_key(int(random.random() * total).to_bytes(8, "big"))
            key = slots.value()
            if claims is None:
                return key
            record = get(key, None, claims)
            if record is None or _LEASE.unpack_from(record)[1] <= now:
                return key
        free = [k for k in txn.cursor(self.data_db).iternext(True, False)
                if (r := get(k, None, claims)) is None or _LEASE.unpack_from(r)[1] <= now]
        return free[int(random.random() * len(free))] if free else None

    def get_many(self, keys: list[str]) -> list[tuple[str, Any, bool]]:
        raw = [k.encode() for k in keys]
        txn = self.env.begin()
        try:
            get, db = txn.get, self.data_db
            values = [get(k, None, db) for k in raw]
        finally:
            txn.abort()
        return [(k, None, False) if v is None else (k, _loads(v), True) for k, v in zip(keys, values)]

    def set_many(self, items: dict[str, Any]) -> int:
        encoded = [(k.encode(), _dumps(v)) for k, v in items.items()]
        return self._write(self._set_many_in, encoded)

    def _set_many_in(self, txn: Any, items: list[tuple[bytes, bytes]]) -> int:
        replace, db = txn.replace, self.data_db
        for key, value in items:
            if replace(key, value, db) is None:
                self._add(txn, key)
        return len(items)

    def delete_many(self, keys: list[str]) -> int:
        return self._write(self._delete_many_in, [k.encode() for k in keys])

    def _delete_many_in(self, txn: Any, keys: list[bytes]) -> int:
        leases = self._has_leases(txn)
        removed = 0
        for key in keys:
            if txn.delete(key, b"", self.data_db):
                self._remove(txn, key)
                if leases:
                    txn.delete(key, b"", self.claims_db)
                removed += 1
        return removed

    def count(self, prefix: str) -> int:
        return self._read(self._count_in, prefix.encode())

    def _count_in(self, txn: Any, prefix: bytes) -> int:
        cursor = txn.cursor(self.data_db)
        if not cursor.set_range(prefix):
            return 0
        total = 0
        for key in cursor.iternext(True, False):
            if not key.startswith(prefix):
                break
            total += 1
        return total

    def scan_keys(self, prefix: str, limit: int, cursor: bytes) -> tuple[list[str], str, bool]:
        keys = self._read(self._scan_keys_in, prefix.encode(), cursor + b"\x00" if cursor else b"", limit)
        if len(keys) > limit:
            names = [k.decode() for k in keys[:limit]]
            return names, names[-1], False
        return [k.decode() for k in keys], "", True

    def _scan_keys_in(self, txn: Any, prefix: bytes, start: bytes, limit: int) -> list[bytes]:
        cursor = txn.cursor(self.data_db)
        if not cursor.set_range(max(prefix, start)):
            return []
        keys = []
        for key in cursor.iternext(True, False):
            if not key.startswith(prefix) or len(keys) > limit:
                break
            keys.append(key)
        return keys

    def random_keys(self, prefix: str, count: int) -> list[str]:
        return [k.decode() for k in self._read(self._random_keys_in, count)]

    def _random_keys_in(self, txn: Any, count: int) -> list[bytes]:
        slots = txn.cursor(self.slots_db)
        if not slots.last():
            return []
        total = int.from_bytes(slots.key(), "big") + 1
        picked: dict[bytes, None] = {}
        for index in random.sample(range(total), min(count, total)):
            slots.set_key(index.to_bytes(8, "big"))
            picked[slots.value()] = None
        return list(picked)

    def pop_random(self, prefix: str) -> tuple[str, Any] | None:
        row = self._write(self._pop_in, _now_ms())
        return None if row is None else (row[0].decode(), _loads(row[1]))

    def _pop_in(self, txn: Any, now: int) -> tuple[bytes, bytes] | None:
        key = self._draw_free(txn, now)
        if key is None:
            return None
        value = txn.pop(key, self.data_db)
        self._remove(txn, key)
        txn.delete(key, b"", self.claims_db)  # an expired lease, if any
        return key, value

    def set_if_absent(self, key: str, value: Any) -> bool:
        return self._write(self._set_if_absent_in, key.encode(), _dumps(value))

    def _set_if_absent_in(self, txn: Any, key: bytes, value: bytes) -> bool:
        if not txn.put(key, value, True, False, False, self.data_db):
            return False
        self._add(txn, key)
        return True

    def compare_and_swap_detailed(self, key: str, old: Any, new: Any) -> tuple[bool, str, bool, Any]:
        expected = None if old is None else _dumps(old)
        swapped, current = self._write(self._cas_detailed_in, key.encode(), expected, _dumps(new))
        if swapped:
            return True, "swapped", current is not None, None
        return False, "mismatch", current is not None, None if current is None else _loads(current)

    def _cas_detailed_in(self, txn: Any, key: bytes, old: bytes | None, new: bytes) -> tuple[bool, bytes | None]:
        current = txn.get(key, None, self.data_db)
        if current != old:
            return False, current
        txn.put(key, new, True, True, False, self.data_db)
        if current is None:
            self._add(txn, key)
        return True, current

    def _grant(self, txn: Any, key: bytes, value: bytes, ttl_ms: int, owner: bytes, now: int) -> tuple[int, int]:
        token = int.from_bytes(txn.get(_TOKEN) or bytes(8), "big") + 1
        expires = now + ttl_ms
        txn.put(key, _LEASE.pack(token, expires) + owner, True, True, False, self.claims_db)
        txn.put(_TOKEN, token.to_bytes(8, "big"))
        return token, expires

    def claim_key(self, key: str, ttl: float, owner: str) -> tuple[str, Any, int, str, float] | None:
        got = self._write(self._claim_key_in, key.encode(), int(ttl * 1000), owner.encode())
        if got is None:
            return None
        value, token, expires = got
        return key, _loads(value), token, owner, expires / 1000

    def _claim_key_in(self, txn: Any, key: bytes, ttl_ms: int, owner: bytes) -> tuple[bytes, int, int] | None:
        now = _now_ms()
        value = txn.get(key, None, self.data_db)
        if value is None:
            return None
        record = txn.get(key, None, self.claims_db)
        if record is not None and _LEASE.unpack_from(record)[1] > now:
            return None
        return (value, *self._grant(txn, key, value, ttl_ms, owner, now))

    def claim_random(self, prefix: str, ttl: float, owner: str) -> tuple[str, Any, int, str, float] | None:
        got = self._write(self._claim_random_in, int(ttl * 1000), owner.encode())
        if got is None:
            return None
        key, value, token, expires = got
        return key.decode(), _loads(value), token, owner, expires / 1000

    def _claim_random_in(self, txn: Any, ttl_ms: int, owner: bytes) -> tuple[bytes, bytes, int, int] | None:
        now = _now_ms()
        key = self._draw_free(txn, now)
        if key is None:
            return None
        value = txn.get(key, None, self.data_db)
        return (key, value, *self._grant(txn, key, value, ttl_ms, owner, now))

    def release_claim(self, claim: tuple[str, Any, int, str, float]) -> None:
        if not self._write(self._release_in, claim[0].encode(), claim[2]):
            raise LostClaim(claim[0])

    def _release_in(self, txn: Any, key: bytes, token: int) -> bool:
        record = txn.get(key, None, self.claims_db)
        if record is None:
            return False
        held, expires = _LEASE.unpack_from(record)
        if held != token or expires <= _now_ms():
            return False
        txn.delete(key, b"", self.claims_db)
        return True

    def delete_prefix(self, prefix: str) -> tuple[int, bool]:
        return self._write(self._delete_prefix_in, prefix.encode()), True

    def _delete_prefix_in(self, txn: Any, prefix: bytes) -> int:
        cursor = txn.cursor(self.data_db)
        leases = self._has_leases(txn)
        removed = 0
        if not cursor.set_range(prefix):
            return 0
        while True:
            key = cursor.key()
            if not key or not key.startswith(prefix):
                return removed
            cursor.delete()
            self._remove(txn, key)
            if leases:
                txn.delete(key, b"", self.claims_db)
            removed += 1


# ---------------------------------------------------------------------------
# Floor of the redis backend.

_REDIS_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# A uniform key of the index without a live lease: uniform ranks, rejected when held; then exactly.
_REDIS_DRAW = _REDIS_NOW + """
math.randomseed(tonumber(ARGV[1]))
local total = redis.call('ZCARD', KEYS[2])
local function live(key)
  local lease = redis.call('HGET', KEYS[3], key)
  return lease and tonumber(string.match(lease, '^(%d+):')) > now
end
local function draw()
  if total == 0 then return nil end
  for _ = 1, 64 do
    local rank = math.random(0, total - 1)
    local key = redis.call('ZRANGE', KEYS[2], rank, rank)[1]
    if key and not live(key) then return key end
  end
  local free = {}
  for _, key in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if not live(key) then free[#free + 1] = key end
  end
  if #free == 0 then return nil end
  return free[math.random(1, #free)]
end
"""

_KEYS3 = "data index claims token"  # the floor's key names, in KEYS order

_R_SET_MANY = """
for i = 1, #ARGV, 2 do
  if redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then redis.call('ZADD', KEYS[2], 0, ARGV[i]) end
end
return #ARGV / 2
"""

_R_DELETE_MANY = """
local removed = 0
for i = 1, #ARGV do
  if redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('HDEL', KEYS[3], ARGV[i])
    removed = removed + 1
  end
end
return removed
"""

_R_RANDOM_KEYS = """
math.randomseed(tonumber(ARGV[1]))
local total = redis.call('ZCARD', KEYS[2])
local count = math.min(tonumber(ARGV[2]), total)
local seen, keys = {}, {}
for j = total - count, total - 1 do
  local t = math.random(0, j)
  if seen[t] then t = j end
  seen[t] = true
  keys[#keys + 1] = redis.call('ZRANGE', KEYS[2], t, t)[1]
end
return keys
"""

_R_POP = _REDIS_DRAW + """
local key = draw()
if not key then return nil end
local value = redis.call('HGET', KEYS[1], key)
redis.call('HDEL', KEYS[1], key)
redis.call('ZREM', KEYS[2], key)
redis.call('HDEL', KEYS[3], key)
return {key, value}
"""

_R_SET_IF_ABSENT = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
  return 1
end
return 0
"""

_R_CAS_DETAILED = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[3] == '0' then
  if current then return {0, current} end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
  return {1}
end
if current ~= ARGV[4] then
  if current then return {0, current} end
  return {0}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {1, current}
"""

_R_GRANT = """
local function grant(key, ttl, owner)
  local token = redis.call('INCR', KEYS[4])
  local ends = now + tonumber(ttl)
  redis.call('HSET', KEYS[3], key, string.format('%d:%d:', ends, token) .. owner)
  return token, ends
end
"""

# ARGV: key, ttl ms, owner.
_R_CLAIM_KEY = _REDIS_NOW + _R_GRANT + """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return nil end
local lease = redis.call('HGET', KEYS[3], ARGV[1])
if lease and tonumber(string.match(lease, '^(%d+):')) > now then return nil end
local token, ends = grant(ARGV[1], ARGV[2], ARGV[3])
return {value, token, ends}
"""

# ARGV: seed, ttl ms, owner.
_R_CLAIM_RANDOM = _REDIS_DRAW + _R_GRANT + """
local key = draw()
if not key then return nil end
local token, ends = grant(key, ARGV[2], ARGV[3])
return {key, redis.call('HGET', KEYS[1], key), token, ends}
"""

# ARGV: key, token.
_R_RELEASE = _REDIS_NOW + """
local lease = redis.call('HGET', KEYS[3], ARGV[1])
if not lease then return 0 end
local ends, token = string.match(lease, '^(%d+):(%d+):')
if token ~= ARGV[2] or tonumber(ends) <= now then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""

# ARGV: '[' .. prefix, '(' .. end of the prefix.
_R_DELETE_PREFIX = """
local keys = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2])
for i = 1, #keys, 1000 do
  local part = {unpack(keys, i, math.min(i + 999, #keys))}
  redis.call('HDEL', KEYS[1], unpack(part))
  redis.call('ZREM', KEYS[2], unpack(part))
  redis.call('HDEL', KEYS[3], unpack(part))
end
return #keys
"""

_R_HOLD = _REDIS_NOW + """
local ends = now + tonumber(ARGV[1])
for i = 2, #ARGV do
  local token = redis.call('INCR', KEYS[4])
  redis.call('HSET', KEYS[3], ARGV[i], string.format('%d:%d:holder', ends, token))
end
return #ARGV - 1
"""


class RedisClaims(Impl):
    """Bare redis-py on its own database of the benchmark's redis-server (see SAME_WORK)."""

    label = "bare redis-py"

    def __init__(self, port: int, db: int) -> None:
        import redis

        self.r = redis.Redis(host="127.0.0.1", port=port, db=db, protocol=2)
        self.r.ping()
        self.keys = _KEYS3.split()
        scripts = {
            "set_many": _R_SET_MANY, "delete_many": _R_DELETE_MANY, "random_keys": _R_RANDOM_KEYS, "pop": _R_POP,
            "set_if_absent": _R_SET_IF_ABSENT, "cas": _R_CAS_DETAILED, "claim_key": _R_CLAIM_KEY,
            "claim_random": _R_CLAIM_RANDOM, "release": _R_RELEASE, "delete_prefix": _R_DELETE_PREFIX,
            "hold": _R_HOLD,
        }
        self.s = {name: self.r.register_script(text) for name, text in scripts.items()}

    def op(self, name: str) -> Any:
        return getattr(self, name)

    def populate(self, n: int, items: list[tuple[str, bytes]]) -> None:
        self.r.flushdb()
        for start in range(0, len(items), 5_000):
            part = dict(items[start : start + 5_000])
            pipe = self.r.pipeline(transaction=False)
            pipe.hset("data", mapping=part)
            pipe.zadd("index", dict.fromkeys(part, 0))
            pipe.execute()

    def all_keys(self) -> list[str]:
        return [k.decode() for k in self.r.zrange("index", 0, -1)]

    def hold(self, keys: list[str], ttl: float) -> int:
        for start in range(0, len(keys), 5_000):
            self.s["hold"](keys=self.keys, args=[int(ttl * 1000), *keys[start : start + 5_000]])
        return len(keys)

    def close(self) -> None:
        self.r.flushdb()
        self.r.close()

    def get_many(self, keys: list[str]) -> list[tuple[str, Any, bool]]:
        values = self.r.hmget("data", keys)
        return [(k, None, False) if v is None else (k, _loads(v), True) for k, v in zip(keys, values)]

    def set_many(self, items: dict[str, Any]) -> int:
        args = []
        for key, value in items.items():
            args += (key, _dumps(value))
        return self.s["set_many"](keys=self.keys, args=args)

    def delete_many(self, keys: list[str]) -> int:
        return self.s["delete_many"](keys=self.keys, args=keys)

    def count(self, prefix: str) -> int:
        return self.r.zlexcount("index", "[" + prefix, "(" + _str_prefix_end(prefix))

    def scan_keys(self, prefix: str, limit: int, cursor: str) -> tuple[list[str], str, bool]:
        low = "(" + cursor if cursor else "[" + prefix
        keys = [k.decode() for k in self.r.zrangebylex("index", low, "(" + _str_prefix_end(prefix), 0, limit + 1)]
        if len(keys) > limit:
            return keys[:limit], keys[limit - 1], False
        return keys, "", True

    def random_keys(self, prefix: str, count: int) -> list[str]:
        return [k.decode() for k in self.s["random_keys"](keys=self.keys, args=[random.getrandbits(31), count])]

    def pop_random(self, prefix: str) -> tuple[str, Any] | None:
        row = self.s["pop"](keys=self.keys, args=[random.getrandbits(31)])
        return None if row is None else (row[0].decode(), _loads(row[1]))

    def set_if_absent(self, key: str, value: Any) -> bool:
        return self.s["set_if_absent"](keys=self.keys, args=[key, _dumps(value)]) == 1

    def compare_and_swap_detailed(self, key: str, old: Any, new: Any) -> tuple[bool, str, bool, Any]:
        args = [key, _dumps(new), "0", ""] if old is None else [key, _dumps(new), "1", _dumps(old)]
        reply = self.s["cas"](keys=self.keys, args=args)
        if reply[0] == 1:
            return True, "swapped", len(reply) > 1, None
        return False, "mismatch", len(reply) > 1, _loads(reply[1]) if len(reply) > 1 else None

    def claim_key(self, key: str, ttl: float, owner: str) -> tuple[str, Any, int, str, float] | None:
        reply = self.s["claim_key"](keys=self.keys, args=[key, int(ttl * 1000), owner])
        if reply is None:
            return None
        return key, _loads(reply[0]), reply[1], owner, reply[2] / 1000

    def claim_random(self, prefix: str, ttl: float, owner: str) -> tuple[str, Any, int, str, float] | None:
        reply = self.s["claim_random"](keys=self.keys, args=[random.getrandbits(31), int(ttl * 1000), owner])
        if reply is None:
            return None
        return reply[0].decode(), _loads(reply[1]), reply[2], owner, reply[3] / 1000

    def release_claim(self, claim: tuple[str, Any, int, str, float]) -> None:
        if self.s["release"](keys=self.keys, args=[claim[0], claim[2]]) != 1:
            raise LostClaim(claim[0])

    def delete_prefix(self, prefix: str) -> tuple[int, bool]:
        return self.s["delete_prefix"](keys=self.keys, args=["[" + prefix, "(" + _str_prefix_end(prefix)]), True


# ---------------------------------------------------------------------------
# The operations and how each batch is fed.

_seq = itertools.count()


@dataclass(frozen=True)
class ClaimOp:
    name: str
    note: str
    make: Callable[[Any, int, random.Random], tuple[Callable[[int], Any], Callable[[Any], None], Any, int]]
    """make(impl, n_keys, rng) -> (prepare, run, cleanup, max_batch)."""


def _keys_pool(impl: Any, n_keys: int, rng: random.Random) -> list[str]:
    pool = [user_key(i) for i in range(n_keys)]
    rng.shuffle(pool)
    return pool


def _make_get_many(impl: Any, n_keys: int, rng: random.Random) -> Any:
    f, pool = impl.op("get_many"), _keys_pool(impl, n_keys, rng)

    def run(batches: list[list[str]]) -> None:
        for keys in batches:
            f(keys)

    return (lambda n: [cycle(pool, BATCH, rng.randrange(len(pool))) for _ in range(n)]), run, None, 1 << 16


def _make_set_many(impl: Any, n_keys: int, rng: random.Random) -> Any:
    f, pool = impl.op("set_many"), _keys_pool(impl, n_keys, rng)

    def run(batches: list[dict[str, Any]]) -> None:
        for items in batches:
            f(items)

    return (lambda n: [dict.fromkeys(cycle(pool, BATCH, rng.randrange(len(pool))), VALUE) for _ in range(n)]), run, \
        None, 1 << 16


def _inserted(impl: Any, tag: str, per_op: int) -> Callable[[int], list[list[str]]]:
    """Fresh keys inserted (untimed) for n operations, ``per_op`` each."""
    setter = impl.op("set_many")

    def prepare(n: int) -> list[list[str]]:
        batches = []
        for _ in range(n):
            base = f"{tag}:{next(_seq):07d}:"
            keys = [f"{base}{j:05d}" for j in range(per_op)]
            setter(dict.fromkeys(keys, VALUE))
            batches.append(keys)
        return batches

    return prepare


def _make_delete_many(impl: Any, n_keys: int, rng: random.Random) -> Any:
    f = impl.op("delete_many")

    def run(batches: list[list[str]]) -> None:
        for keys in batches:
            f(keys)

    return _inserted(impl, "dm", BATCH), run, None, 256


def _make_count(impl: Any, n_keys: int, rng: random.Random) -> Any:
    f = impl.op("count")

    def run(count: range, p: str = PREFIX) -> None:
        for _ in count:
            f(p)

    return range, run, None, 1 << 20


def _make_scan_keys(impl: Any, n_keys: int, rng: random.Random) -> Any:
    f = impl.op("scan_keys")
    ordered = sorted(user_key(i) for i in range(n_keys))
    last = max(1, len(ordered) - BATCH - 1)

    def run(cursors: list[Any], p: str = SCAN_PREFIX, limit: int = BATCH) -> None:
        for c in cursors:
            f(p, limit, c)

    return (lambda n: [impl.cursor_after(ordered[rng.randrange(last)]) for _ in range(n)]), run, None, 1 << 18


def _make_random_keys(impl: Any, n_keys: int, rng: random.Random) -> Any:
    f = impl.op("random_keys")

    def run(count: range, c: int = RANDOM_COUNT) -> None:
        for _ in count:
            f("", c)

    return range, run, None, 1 << 20


def _make_pop_random(impl: Any, n_keys: int, rng: random.Random) -> Any:
    f, setter = impl.op("pop_random"), impl.op("set_many")

    def prepare(n: int) -> tuple[range, list[Any]]:
        return range(n), []

    def run(arg: tuple[range, list[Any]]) -> None:
        count, popped = arg
        append = popped.append
        for _ in count:
            append(f(""))

    def cleanup(arg: tuple[range, list[Any]]) -> None:  # put the popped entries back
        rows = [row for row in arg[1] if row is not None]
        for start in range(0, len(rows), 10_000):
            setter({row[0]: row[1] for row in rows[start : start + 10_000]})

    return prepare, run, cleanup, 4_000


def _make_set_if_absent(impl: Any, n_keys: int, rng: random.Random) -> Any:
    f, delete = impl.op("set_if_absent"), impl.op("delete_many")

    def run(keys: list[str], v: Any = VALUE) -> None:
        for k in keys:
            f(k, v)

    def cleanup(keys: list[str]) -> None:
        for start in range(0, len(keys), 10_000):
            delete(keys[start : start + 10_000])

    return (lambda n: [f"fresh:{next(_seq):09d}" for _ in range(n)]), run, cleanup, 4_000


def _make_cas_detailed(impl: Any, n_keys: int, rng: random.Random) -> Any:
    f, pool = impl.op("compare_and_swap_detailed"), _keys_pool(impl, n_keys, rng)

    def run(keys: list[str], v: Any = VALUE) -> None:
        for k in keys:
            f(k, v, v)

    return (lambda n: cycle(pool, n, rng.randrange(len(pool)))), run, None, 1 << 20


def _make_claim_key(impl: Any, n_keys: int, rng: random.Random) -> Any:
    claim, release, pool = impl.op("claim_key"), impl.op("release_claim"), _keys_pool(impl, n_keys, rng)

    def run(keys: list[str], ttl: float = CLAIM_TTL, owner: str = OWNER) -> None:
        for k in keys:
            release(claim(k, ttl, owner))

    return (lambda n: cycle(pool, n, rng.randrange(len(pool)))), run, None, 1 << 20


def _make_claim_random(impl: Any, n_keys: int, rng: random.Random) -> Any:
    claim, release = impl.op("claim_random"), impl.op("release_claim")

    def run(count: range, ttl: float = CLAIM_TTL, owner: str = OWNER) -> None:
        for _ in count:
            release(claim("", ttl, owner))

    return range, run, None, 1 << 20


def _make_delete_prefix(impl: Any, n_keys: int, rng: random.Random) -> Any:
    f = impl.op("delete_prefix")
    insert = _inserted(impl, "dp", DELETE_PREFIX_KEYS)

    def prepare(n: int) -> list[str]:
        return [keys[0][: keys[0].rindex(":") + 1] for keys in insert(n)]

    def run(prefixes: list[str]) -> None:
        for p in prefixes:
            f(p)

    return prepare, run, None, 32


OPS: list[ClaimOp] = [
    ClaimOp(f"get_many ({BATCH})", f"{BATCH} existing keys", _make_get_many),
    ClaimOp(f"set_many ({BATCH})", f"{BATCH} existing keys overwritten", _make_set_many),
    ClaimOp(f"delete_many ({BATCH})", f"{BATCH} keys inserted untimed before", _make_delete_many),
    ClaimOp("count (prefix)", f"prefix {PREFIX!r}: a tenth of the keys", _make_count),
    ClaimOp(f"scan_keys page ({BATCH})", f"prefix {SCAN_PREFIX!r}, after a random key", _make_scan_keys),
    ClaimOp(f"random_keys ({RANDOM_COUNT})", "no prefix, distinct", _make_random_keys),
    ClaimOp("pop_random", "no prefix; popped entries put back untimed", _make_pop_random),
    ClaimOp("set_if_absent", "key absent: stores", _make_set_if_absent),
    ClaimOp("compare_and_swap_detailed", "succeeds", _make_cas_detailed),
    ClaimOp("claim_key + release_claim", "an existing free key", _make_claim_key),
    ClaimOp("claim_random + release_claim", "no prefix, nothing else held", _make_claim_random),
    ClaimOp(f"delete_prefix ({DELETE_PREFIX_KEYS:,} keys)", f"{DELETE_PREFIX_KEYS:,} keys inserted untimed before",
            _make_delete_prefix),
]

CYCLE = "claim_random + release_claim"


def _probe(op: ClaimOp, impl: Any, n_keys: int) -> str | None:
    """Why ``impl`` cannot run ``op`` (the exception of one trial call), or None."""
    prepare, run_, cleanup, _ = op.make(impl, n_keys, random.Random(0))
    try:
        arg = prepare(1)
        run_(arg)
        if cleanup is not None:
            cleanup(arg)
    except Exception as exc:  # noqa: BLE001 - any failure: the operation is reported as not measured
        return f"{type(exc).__name__}: {exc}".strip()[:300]
    return None


def build_cases(impls: dict[str, Any], ops: list[ClaimOp], n_keys: int, skipped: dict[str, str],
                suffix: str = "") -> list[Case]:
    cases = []
    for op in ops:
        for name, impl in impls.items():
            reason = _probe(op, impl, n_keys)
            if reason is not None:
                skipped[f"{name}{suffix}|{op.name}"] = reason
                continue
            prepare, run_, cleanup, max_batch = op.make(impl, n_keys, random.Random(hash((op.name, name, suffix))))
            cases.append(Case((f"{name}{suffix}", op.name), prepare, run_, max_batch, cleanup))
    return cases


def _collect(cases: list[Case]) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, list[float]]]]:
    cpu: dict[str, dict[str, list[float]]] = {}
    wall: dict[str, dict[str, list[float]]] = {}
    for case in cases:
        impl, op = case.key
        cpu.setdefault(impl, {})[op] = case.samples
        wall.setdefault(impl, {})[op] = case.wall_samples
    return cpu, wall


# ---------------------------------------------------------------------------
# Opening and populating.


def _open(kind: str, n: int, workdir: str, lmdb_flags: dict[str, Any], redis_port: int | None, snapshots: Any,
          tag: str) -> Any:
    from locust_kv import open_kv

    if kind == "memory":
        return KVClaims(LABELS[kind], open_kv(backend="memory", name=f"kvbench-claims-{tag}"), snapshots)
    if kind == "disk":
        return KVClaims(LABELS[kind], open_kv(backend="disk", path=os.path.join(workdir, f"claims-{tag}.lmdb")),
                        snapshots)
    if kind == "redis":
        kv = open_kv(backend="redis", url=f"redis://127.0.0.1:{redis_port}/0", namespace=f"claims-{tag}")
        kv.clear()
        return KVClaims(LABELS[kind], kv, snapshots)
    if kind == "dict":
        return DictClaims()
    if kind == "lmdb":
        return LmdbClaims(os.path.join(workdir, f"bare-claims-{tag}.lmdb"), lmdb_flags)
    if kind == "redis-floor":
        return RedisClaims(redis_port, db=1)
    raise ValueError(kind)


SETUP: dict[str, dict[str, Any]] = {}
"""Set-up times of the last run: filling each store and taking its held leases."""


def _populate(impl: Any, n: int, items: list[tuple[str, bytes]], held_share: float, log: Any, what: str) -> None:
    gc.unfreeze()
    start = time.monotonic()
    impl.populate(n, items)
    filled = time.monotonic() - start
    held = 0
    if held_share:
        keys = [k for k, _ in items]
        rng = random.Random(12)
        chosen = rng.sample(keys, round(held_share * len(keys)))
        start = time.monotonic()
        held = impl.hold(chosen, HELD_TTL)
    holding = time.monotonic() - start if held_share else 0.0
    SETUP[what] = {"keys": len(items), "fill_s": round(filled, 2), "held": held, "hold_s": round(holding, 2)}
    log(f"claims: {what}: {len(items):,} keys in {filled:.1f}s"
        + (f", {held:,} held in {holding:.1f}s" if held_share else ""))
    gc.collect()
    gc.freeze()


def _snapshot(snapshots: Any, n: int, items: list[tuple[str, bytes]]) -> None:
    """Write the snapshot of ``dataset(n)`` from ``items`` (already built) unless run.py's Snapshots has it."""
    if n in snapshots.paths:
        return
    from locust_kv.snapshot import write_snapshot

    path = os.path.join(snapshots.workdir, f"seed-{n}.snapshot")
    rows = [(k.encode(), v) for k, v in items]
    write_snapshot(path, (rows[i : i + 10_000] for i in range(0, len(rows), 10_000)), "memory", "json")
    snapshots.paths[n] = path


def _populated(impl: Any, n: int, items: list[tuple[str, bytes]], held_share: float, log: Any, what: str,
               skipped: dict[str, str], where: str) -> bool:
    """Populate and hold; False (with the reason in ``skipped``) when the implementation cannot."""
    try:
        _populate(impl, n, items, held_share, log, what)
    except Exception as exc:  # noqa: BLE001 - e.g. a backend without claims yet
        skipped[where] = f"{type(exc).__name__}: {exc}".strip()[:300]
        log(f"claims: {what}: {skipped[where]}")
        return False
    return True


def run(cfg: dict[str, Any], workdir: str, lmdb_flags: dict[str, Any], redis_port: int | None, snapshots: Any,
        skipped_peers: dict[str, str], log: Any) -> dict[str, Any]:
    """All three parts; the results (samples per case), for results.json."""
    t0 = time.monotonic()
    kinds = [k for k in ("memory", "disk", "redis") if k not in skipped_peers]
    floors = {k: PAIRS[k] for k in kinds}
    if redis_port is None and "redis" in kinds:
        kinds.remove("redis")
        skipped_peers["redis"] = "no redis-server"
    skipped: dict[str, str] = {}
    opened: list[Any] = []

    def open_(kind: str, n: int, tag: str) -> Any | None:
        try:
            impl = _open(kind, n, workdir, lmdb_flags, redis_port, snapshots, tag)
        except Exception as exc:  # noqa: BLE001 - reported as not measured
            skipped[f"{kind}|open"] = f"{type(exc).__name__}: {exc}"
            log(f"claims: cannot open {kind}: {exc}")
            return None
        opened.append(impl)
        return impl

    try:
        # 1. Operations.
        n = cfg["claims_keys"]
        items = dataset(n)
        _snapshot(snapshots, n, items)
        impls: dict[str, Any] = {}
        for kind in kinds:
            for name in (kind, floors[kind]):
                impl = open_(name, n, f"ops-{n}")
                if impl is not None:
                    _populate(impl, n, items, 0.0, log, f"{name} ops")
                    impls[name] = impl
        for kind in ("memory", "disk"):
            if kind in impls:
                impls[f"{kind}-backend"] = BackendClaims(impls[kind])
        # Memory and disk (thread CPU time) in one set of rounds; redis (wall clock, slower calls) in another.
        cases = build_cases({k: v for k, v in impls.items() if not k.startswith("redis")}, OPS, n, skipped)
        log(f"claims: {len(cases)} cases, {cfg['claims_rounds']} rounds")
        measure(cases, cfg["claims_rounds"], cfg["claims_ms"], lambda m: log(f"claims ops: {m}"))
        redis_cases = build_cases({k: v for k, v in impls.items() if k.startswith("redis")}, OPS, n, skipped)
        if redis_cases:
            log(f"claims: {len(redis_cases)} redis cases, {cfg['claims_redis_rounds']} rounds")
            measure(redis_cases, cfg["claims_redis_rounds"], cfg["claims_redis_ms"],
                    lambda m: log(f"claims redis: {m}"))
        cpu, wall = _collect(cases + redis_cases)
        del cases, redis_cases
        for impl in impls.values():
            if impl in opened:
                impl.close()
                opened.remove(impl)
        del impls, items

        # 2. claim_random at growing sizes, a fifth of the keys held; 3. an exhausted pool.
        cycle_op = next(op for op in OPS if op.name == CYCLE)
        scale_cases: list[Case] = []
        for size in cfg["claims_sizes"]:
            items = dataset(size)
            _snapshot(snapshots, size, items)
            group: dict[str, Any] = {}
            for kind in kinds:  # the backends only: the floors' growth is not what the goal is about
                impl = open_(kind, size, f"scale-{size}")
                if impl is not None and _populated(impl, size, items, HELD_SHARE, log, f"{kind} at {size:,}",
                                                   skipped, f"{kind}@{size}|{CYCLE}"):
                    group[kind] = impl
            scale_cases += build_cases(group, [cycle_op], size, skipped, f"@{size}")
            del items
        m = cfg["claims_exhausted_keys"]
        items = dataset(m)
        _snapshot(snapshots, m, items)
        group = {}
        for kind in kinds:
            impl = open_(kind, m, f"exhausted-{m}")
            if impl is not None and _populated(impl, m, items, EXHAUSTED_SHARE, log, f"{kind} exhausted", skipped,
                                               f"{kind}@exhausted|{CYCLE}"):
                group[kind] = impl
        scale_cases += build_cases(group, [cycle_op], m, skipped, "@exhausted")
        del items
        log(f"claims: {len(scale_cases)} scaling cases, {cfg['claims_scale_rounds']} rounds")
        measure(scale_cases, cfg["claims_scale_rounds"], cfg["claims_scale_ms"], lambda m_: log(f"claims scale: {m_}"))
        scale_cpu, scale_wall = _collect(scale_cases)
    finally:
        for impl in opened:
            try:
                impl.close()
            except Exception as exc:  # noqa: BLE001 - closing is best effort
                log(f"claims: closing {impl.label}: {exc}")
    return {
        "n_keys": n,
        "rounds": cfg["claims_rounds"],
        "redis_rounds": cfg["claims_redis_rounds"],
        "redis_target_ms": cfg["claims_redis_ms"],
        "scale_rounds": cfg["claims_scale_rounds"],
        "target_ms": cfg["claims_ms"],
        "goal": GOAL,
        "growth_goal": GROWTH_GOAL,
        "order": [op.name for op in OPS],
        "notes": {op.name: op.note for op in OPS},
        "pairs": {k: floors[k] for k in kinds},
        "clocks": {k: CLOCKS[k] for k in kinds},
        "samples": cpu,
        "wall_samples": wall,
        "sizes": cfg["claims_sizes"],
        "held_share": HELD_SHARE,
        "exhausted": {"keys": m, "held_share": EXHAUSTED_SHARE},
        "scale_samples": scale_cpu,
        "scale_wall_samples": scale_wall,
        "skipped": skipped,
        "skipped_backends": {k: skipped_peers[k] for k in ("memory", "disk", "redis") if k in skipped_peers},
        "same_work": SAME_WORK,
        "setup": dict(SETUP),
        "duration_s": time.monotonic() - t0,
    }
