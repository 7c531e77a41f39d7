"""The disk backend's claims (leases), batch and prefix operations.

Each function is one step ``op(txn, view, ...)`` that
:class:`~locust_kv.backends.disk.DiskBackend` runs in one LMDB transaction
through its ``_read`` / ``_write`` machinery (map growth, the state record,
restore gating, error mapping). None of them yields: a step is atomic.

Leases. One named database, ``locust_kv.claims``, outside the two
generations: key -> ``token`` (8 bytes, big-endian), ``expires_ms`` (8 bytes,
signed big-endian) and the owner's bytes. A lease record exists only for a
key that exists: every path that removes a key removes its record in the same
transaction, ``clear`` drops the database and a restore drops it in the
transaction that flips the generations. A record whose end has passed stays
until its key is claimed again or removed (``allocation_stats`` counts it as
expired). The fencing counter is the record ``locust_kv.claim_token`` of the
main database, raised in the claim's own transaction; it survives clear and
restore.

Sampling the claimable keys (``claim_random``, ``pop_random``) and distinct
keys (``random_keys`` with ``unique``) picks one key at a time, each uniform
among the eligible keys not picked yet, so the set is a uniform subset:

* a prefix range of at most 64 keys is read whole (with the leases of the range);
* else, with a valid key index, random slots are drawn and rejected when the
  key lacks the prefix, was picked, or holds a live lease (one lease lookup
  each); after ``64 + 4 * count`` rejections, or without the index,
* the exact fallback reads every key of the prefix range and the leases of
  that range in the same transaction, and picks among the eligible ones:
  O(k + c) for k keys and c leases in the range. This is what answers when
  nearly every key is held (an exhausted pool: every call costs O(k)).
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from itertools import islice
from struct import Struct
from typing import TYPE_CHECKING, Any, Final

import lmdb

from .base import ClaimRecord, prefix_end

if TYPE_CHECKING:  # pragma: no cover
    from .disk import _View

CLAIMS_DB: Final = b"locust_kv.claims"
"""The leases' database: key -> lease record; one for the store, outside the generations."""

TOKEN_KEY: Final = b"locust_kv.claim_token"
"""The fencing counter's record in the main database (8 bytes, big-endian): survives clear and restore."""

_LEASE: Final = Struct(">Qq")
"""A lease record's head: token, then the end in Unix milliseconds; the owner follows."""

_SMALL_RANGE: Final = 64
"""A prefix range this small is read whole, never sampled by slots."""

_REJECTIONS: Final = 64
"""Rejected slot draws allowed, plus 4 per wanted key, before the exact fallback."""

_STEP_MAX: Final = 1 << 16

_random_float = _random.random
_sample = _random.sample


# ---------------------------------------------------------------------------
# Reading ranges.


def _range_end_test(prefix: bytes) -> Callable[[bytes], bool]:
    end = prefix_end(prefix)
    if end is not None:
        return lambda key: key >= end
    if not prefix:
        return lambda key: False
    return lambda key: not key.startswith(prefix)


def _matching(keys: list[Any], prefix: bytes, index: int | None = None) -> int:
    """How many of the ascending ``keys`` (rows when ``index`` is 0) start with ``prefix``, all >= it."""
    if not prefix:
        return len(keys)
    past = _range_end_test(prefix)
    lo, hi = 0, len(keys)
    while lo < hi:  # the first one past the range
        mid = (lo + hi) // 2
        if past(keys[mid] if index is None else keys[mid][index]):
            hi = mid
        else:
            lo = mid + 1
    return lo


def range_keys(txn: lmdb.Transaction, db: Any, prefix: bytes, limit: int = -1) -> list[bytes]:
    """The keys of ``db`` that start with ``prefix``, ascending (at most ``limit`` when > 0).

    Reads in doubling steps, so a short range costs about its own size.
    """
    cursor = txn.cursor(db)
    if not cursor.set_range(prefix):
        return []
    return range_keys_from(cursor, prefix, limit)


def range_rows(txn: lmdb.Transaction, db: Any, prefix: bytes) -> list[tuple[bytes, bytes]]:
    """The records of ``db`` whose key starts with ``prefix``, ascending."""
    cursor = txn.cursor(db)
    if not cursor.set_range(prefix):
        return []
    found = cursor.iternext()
    rows: list[tuple[bytes, bytes]] = []
    step = _SMALL_RANGE + 1
    while True:
        got = list(islice(found, step))
        matching = _matching(got, prefix, 0)
        rows += got if matching == len(got) else got[:matching]
        if matching < len(got) or len(got) < step:
            return rows
        step = min(step * 2, _STEP_MAX)


def count_range_in(txn: lmdb.Transaction, view: _View, prefix: bytes) -> int:
    return count_range(txn, view.data, prefix)


def count_range(txn: lmdb.Transaction, db: Any, prefix: bytes) -> int:
    """How many keys of ``db`` start with ``prefix``: the entry count without one, else a cursor walk, O(k)."""
    if not prefix:
        return txn.stat(db)["entries"]  # type: ignore[no-any-return]
    cursor = txn.cursor(db)
    if not cursor.set_range(prefix):
        return 0
    found = cursor.iternext(keys=True, values=False)
    total = 0
    step = _SMALL_RANGE + 1
    while True:
        got = list(islice(found, step))
        matching = _matching(got, prefix)
        total += matching
        if matching < len(got) or len(got) < step:
            return total
        step = min(step * 2, _STEP_MAX)


# ---------------------------------------------------------------------------
# Leases.


def _expires(record: bytes) -> int:
    return _LEASE.unpack_from(record)[1]  # type: ignore[no-any-return]


def _has_leases(txn: lmdb.Transaction, view: _View) -> bool:
    return txn.stat(view.claims)["entries"] > 0  # type: ignore[no-any-return]


def _live_held(txn: lmdb.Transaction, view: _View, prefix: bytes, now: int) -> set[bytes]:
    """The keys of the prefix range that hold a live lease."""
    return {key for key, record in range_rows(txn, view.claims, prefix) if _expires(record) > now}


def _next_token(txn: lmdb.Transaction) -> int:
    raw = txn.get(TOKEN_KEY)
    return int.from_bytes(raw, "big") if raw is not None else 0


def _grant(
    txn: lmdb.Transaction, view: _View, keys: list[bytes], values: list[bytes], ttl_ms: int, owner: bytes, now: int,
) -> list[ClaimRecord]:
    """Write a new lease on each of ``keys`` (existing, claimable, distinct) and raise the counter once."""
    token = _next_token(txn)
    expires = now + ttl_ms
    claims = view.claims
    pack = _LEASE.pack
    granted = []
    put = txn.put
    for key, value in zip(keys, values):
        token += 1
        put(key, pack(token, expires) + owner, True, True, False, claims)
        granted.append(ClaimRecord(key, value, token, expires))
    if granted:
        put(TOKEN_KEY, token.to_bytes(8, "big"))
    return granted


def claim_keys(
    txn: lmdb.Transaction, view: _View, keys: list[bytes], ttl_ms: int, owner: bytes, clock: Callable[[], int],
) -> list[ClaimRecord | None]:
    """A new lease on each key that exists and has no live lease; None for the others (and for repeats)."""
    now = clock()
    claims = view.claims
    data = view.data
    seen: set[bytes] = set()
    take: list[bytes] = []
    values: list[bytes] = []
    slots: list[int] = []
    get = txn.get
    for i, key in enumerate(keys):
        if key in seen:
            continue
        seen.add(key)
        value = get(key, None, data)
        if value is None:
            continue
        record = get(key, None, claims)
        if record is not None and _expires(record) > now:
            continue
        take.append(key)
        values.append(value)
        slots.append(i)
    results: list[ClaimRecord | None] = [None] * len(keys)
    for i, granted in zip(slots, _grant(txn, view, take, values, ttl_ms, owner, now)):
        results[i] = granted
    return results


def claim_random(
    txn: lmdb.Transaction, view: _View, prefix: bytes, count: int, ttl_ms: int, owner: bytes,
    clock: Callable[[], int],
) -> list[ClaimRecord]:
    """Leases on up to ``count`` keys drawn uniformly among the claimable keys with ``prefix``."""
    now = clock()
    keys = sample(txn, view, prefix, count, now)
    get = txn.get
    data = view.data
    values = [get(key, None, data) for key in keys]
    return _grant(txn, view, keys, values, ttl_ms, owner, now)


def _live_lease(txn: lmdb.Transaction, view: _View, key: bytes, token: int, now: int) -> bytes | None:
    """The record of the live lease ``(key, token)``, or None."""
    record = txn.get(key, None, view.claims)
    if record is None:
        return None
    held, expires = _LEASE.unpack_from(record)
    if held != token or expires <= now:
        return None
    return record  # type: ignore[no-any-return]


def release_claims(
    txn: lmdb.Transaction, view: _View, refs: list[tuple[bytes, int]], clock: Callable[[], int]
) -> list[bool]:
    now = clock()
    results = []
    for key, token in refs:
        if _live_lease(txn, view, key, token, now) is None:
            results.append(False)
            continue
        txn.delete(key, b"", view.claims)
        results.append(True)
    return results


def complete_claims(
    txn: lmdb.Transaction,
    view: _View,
    refs: list[tuple[bytes, int]],
    delete: bool,
    clock: Callable[[], int],
    remove_key: Callable[[lmdb.Transaction, _View, bytes], bool],
) -> list[bool]:
    """End each live lease; with ``delete``, remove its key with ``remove_key`` (which drops the lease too)."""
    now = clock()
    results = []
    for key, token in refs:
        if _live_lease(txn, view, key, token, now) is None:
            results.append(False)
            continue
        if not (delete and remove_key(txn, view, key)):
            txn.delete(key, b"", view.claims)
        results.append(True)
    return results


def renew_claims(
    txn: lmdb.Transaction, view: _View, refs: list[tuple[bytes, int]], ttl_ms: int, clock: Callable[[], int]
) -> list[int | None]:
    now = clock()
    expires = now + ttl_ms
    results: list[int | None] = []
    for key, token in refs:
        record = _live_lease(txn, view, key, token, now)
        if record is None:
            results.append(None)
            continue
        txn.put(key, _LEASE.pack(token, expires) + record[_LEASE.size :], True, True, False, view.claims)
        results.append(expires)
    return results


def allocation_stats(
    txn: lmdb.Transaction, view: _View, prefix: bytes, clock: Callable[[], int]
) -> tuple[int, int, int, int]:
    """``(total, claimable, claimed, expired)``: O(1) + O(c) without a prefix, O(k + c) with one."""
    now = clock()
    total = count_range(txn, view.data, prefix)
    claimed = expired = 0
    if _has_leases(txn, view):
        for _key, record in range_rows(txn, view.claims, prefix):
            if _expires(record) > now:
                claimed += 1
            else:
                expired += 1
    return total, total - claimed, claimed, expired


def stats(
    txn: lmdb.Transaction, view: _View, clock: Callable[[], int], used_pages: int, page_size: int
) -> dict[str, int]:
    now = clock()
    claims = expired = 0
    if _has_leases(txn, view):
        for _key, record in range_rows(txn, view.claims, b""):
            if _expires(record) > now:
                claims += 1
            else:
                expired += 1
    return {
        "keys": txn.stat(view.data)["entries"],
        "bytes": used_pages * page_size,
        "claims": claims,
        "expired_claims": expired,
    }


# ---------------------------------------------------------------------------
# Sampling.


def sample(txn: lmdb.Transaction, view: _View, prefix: bytes, count: int, now: int | None) -> list[bytes]:
    """Up to ``count`` distinct keys with ``prefix``, a uniform subset of the eligible ones.

    Eligible: every key when ``now`` is None, else the keys with no lease
    live at ``now``. Fewer only when fewer are eligible. See the module
    docstring for the costs.
    """
    if count <= 0:
        return []
    claims = view.claims if now is not None and _has_leases(txn, view) else None
    head = range_keys(txn, view.data, prefix, _SMALL_RANGE + 1)
    if len(head) <= _SMALL_RANGE:
        if claims is not None:
            held = _live_held(txn, view, prefix, now)  # type: ignore[arg-type]
            head = [key for key in head if key not in held]
        return _sample(head, min(count, len(head)))
    picked: list[bytes] = []
    chosen: set[bytes] = set()
    if view.indexed:
        slots = txn.cursor(view.slots)
        if slots.last():
            total = int.from_bytes(slots.key(), "big") + 1
            budget = _REJECTIONS + 4 * count
            get = txn.get
            while len(picked) < count and budget > 0:
                if slots.set_key(int(_random_float() * total).to_bytes(8, "big")):
                    key = slots.value()
                    if key.startswith(prefix) and key not in chosen:
                        if claims is None:
                            chosen.add(key)
                            picked.append(key)
                            continue
                        record = get(key, None, claims)
                        if record is None or _expires(record) <= now:  # type: ignore[operator]
                            chosen.add(key)
                            picked.append(key)
                            continue
                budget -= 1
            if len(picked) == count:
                return picked
    # The exact fallback: every key of the range, less the held and the picked ones.
    if claims is not None:
        chosen |= _live_held(txn, view, prefix, now)  # type: ignore[arg-type]
    pool = range_keys(txn, view.data, prefix)
    if chosen:
        pool = [key for key in pool if key not in chosen]
    return picked + _sample(pool, min(count - len(picked), len(pool)))


def random_keys(txn: lmdb.Transaction, view: _View, prefix: bytes, count: int, unique: bool) -> list[bytes]:
    """``count`` keys with ``prefix``: a uniform subset (``unique``) or independent uniform draws.

    Costs: a range of at most 64 keys is read whole; otherwise, with the
    index, random slots (expected n/k per draw for k of n keys matching),
    and O(k) (every key of the range) without it or when draws keep missing.
    """
    if unique:
        return sample(txn, view, prefix, count, None)
    if count <= 0:
        return []
    head = range_keys(txn, view.data, prefix, _SMALL_RANGE + 1)
    if len(head) <= _SMALL_RANGE:
        return [head[int(_random_float() * len(head))] for _ in range(count)] if head else []
    drawn: list[bytes] = []
    if view.indexed:
        slots = txn.cursor(view.slots)
        if slots.last():
            total = int.from_bytes(slots.key(), "big") + 1
            budget = _REJECTIONS + 4 * count
            while len(drawn) < count and budget > 0:
                if slots.set_key(int(_random_float() * total).to_bytes(8, "big")):
                    key = slots.value()
                    if key.startswith(prefix):
                        drawn.append(key)
                        continue
                budget -= 1
            if len(drawn) == count:
                return drawn
    pool = range_keys(txn, view.data, prefix)
    return drawn + [pool[int(_random_float() * len(pool))] for _ in range(count - len(drawn))]


def pop_random(
    txn: lmdb.Transaction,
    view: _View,
    prefix: bytes,
    count: int,
    clock: Callable[[], int],
    remove_index: Callable[[lmdb.Transaction, _View, bytes], None],
) -> list[tuple[bytes, bytes]]:
    """Remove up to ``count`` keys drawn as ``claim_random`` draws; each with its value."""
    keys = sample(txn, view, prefix, count, clock())
    popped = []
    for key in keys:
        value = txn.pop(key, view.data)
        if view.maintain:
            remove_index(txn, view, key)
        txn.delete(key, b"", view.claims)  # an expired lease
        popped.append((key, value))
    return popped


# ---------------------------------------------------------------------------
# Batches and single calls.


def compare_and_swap_detailed(
    txn: lmdb.Transaction, view: _View, key: bytes, old: bytes | None, new: bytes,
    add_index: Callable[[lmdb.Transaction, _View, bytes], None],
) -> tuple[bool, bytes | None]:
    current = txn.get(key, None, view.data)
    if current != old:
        return False, current
    txn.put(key, new, True, True, False, view.data)
    if current is None and view.maintain:
        add_index(txn, view, key)
    return True, current


def compare_and_delete_detailed(
    txn: lmdb.Transaction, view: _View, key: bytes, old: bytes,
    remove_key: Callable[[lmdb.Transaction, _View, bytes], bool],
) -> tuple[bool, bytes | None]:
    current = txn.get(key, None, view.data)
    if current != old:
        return False, current
    remove_key(txn, view, key)
    return True, current


def get_many(txn: lmdb.Transaction, view: _View, keys: list[bytes]) -> list[bytes | None]:
    get = txn.get
    data = view.data
    return [get(key, None, data) for key in keys]


def set_many(
    txn: lmdb.Transaction, view: _View, items: list[tuple[bytes, bytes]],
    add_index: Callable[[lmdb.Transaction, _View, bytes], None],
) -> None:
    data = view.data
    if view.maintain:
        replace = txn.replace
        for key, value in items:
            if replace(key, value, data) is None:
                add_index(txn, view, key)
    else:
        put = txn.put
        for key, value in items:
            put(key, value, True, True, False, data)


def delete_many(
    txn: lmdb.Transaction, view: _View, keys: list[bytes],
    remove_key: Callable[[lmdb.Transaction, _View, bytes], bool],
) -> int:
    removed = 0
    for key in keys:
        if remove_key(txn, view, key):
            removed += 1
    return removed


def delete_range_slice(
    txn: lmdb.Transaction,
    view: _View,
    prefix: bytes,
    limit: int,
    deadline_after: float,
    remove_index: Callable[[lmdb.Transaction, _View, bytes], None],
    perf_counter: Callable[[], float],
) -> tuple[int, bool]:
    """Remove the first keys with ``prefix`` for a few milliseconds, at most ``limit`` (> 0).

    Returns how many, and whether no key with the prefix is left.
    """
    deadline = perf_counter() + deadline_after
    cursor = txn.cursor(view.data)
    past = _range_end_test(prefix)
    claims = view.claims
    leases = _has_leases(txn, view)
    maintain = view.maintain
    removed = 0
    if not cursor.set_range(prefix):
        return 0, True
    while True:
        key = cursor.key()  # after a delete, the next key; b"" past the last one (no key is empty)
        if not key or past(key):
            return removed, True
        if removed == limit or (removed and not removed & 63 and perf_counter() > deadline):
            return removed, False
        cursor.delete()
        if maintain:
            remove_index(txn, view, key)
        if leases:
            txn.delete(key, b"", claims)
        removed += 1


def scan_keys(
    txn: lmdb.Transaction, view: _View, prefix: bytes, start: bytes, limit: int
) -> tuple[list[bytes], bool]:
    cursor = txn.cursor(view.data)
    if not cursor.set_range(max(prefix, start)):
        return [], False
    wanted = limit + 1 if limit > 0 else -1
    keys = range_keys_from(cursor, prefix, wanted)
    if len(keys) == wanted:
        keys.pop()
        return keys, True
    return keys, False


def range_keys_from(cursor: lmdb.Cursor, prefix: bytes, limit: int) -> list[bytes]:
    """From the cursor's position (in or past the range), the keys with ``prefix``; at most ``limit`` when > 0."""
    found = cursor.iternext(keys=True, values=False)
    keys: list[bytes] = []
    step = _SMALL_RANGE + 1
    while True:
        wanted = step if limit <= 0 else min(step, limit - len(keys))
        got = list(islice(found, wanted))
        matching = _matching(got, prefix)
        keys += got if matching == len(got) else got[:matching]
        if matching < len(got) or len(got) < wanted or len(keys) == limit:
            return keys
        step = min(step * 2, _STEP_MAX)
