"""The disk backend's claims (leases), batch and prefix operations.

Each function is one step ``op(txn, view, ...)`` that
:class:`~locust_kv.backends.disk.DiskBackend` runs in one LMDB transaction
through its ``_read`` / ``_write`` machinery (map growth, the state record,
restore gating, error mapping). None of them yields: a step is atomic.

Leases. Two named databases outside the two generations:

* ``locust_kv.claims``: key -> ``token`` (8 bytes, big-endian),
  ``expires_ms`` (8 bytes, signed) and the owner's bytes;
* ``locust_kv.claim_ends``: end + token (16 bytes) -> key, the same leases
  ordered by their end, so that the ended ones are found in O(log n + ended).

A lease record exists only for a key that exists: every path that removes a
key removes its record (and its end) in the same transaction, ``clear`` drops
both databases and a restore drops them in the transaction that flips the
generations. A record whose end has passed stays until its key is claimed
again or removed (``allocation_stats`` counts it as expired). The fencing
counter is the record ``locust_kv.claim_token`` of the main database, raised
in the claim's own transaction; it survives clear and restore.

Sampling the claimable keys (``claim_random``, ``pop_random``) and distinct
keys (``random_keys`` with ``unique``) picks one key at a time, each uniform
among the eligible keys not picked yet, so the set is a uniform subset. For n
keys in the store, k with the prefix, c leases:

* a range of at most 64 keys is read whole, with the lease keys of the range;
* without a prefix, with at most 1,024 ended leases, the claimable keys are
  the *free* ones (no lease record: their number is entries - records, O(1))
  and the *ended* ones (read from the ends' database). Each pick chooses
  between the two by size; a free key is drawn from random index slots,
  rejected while it holds a record, with about 4 times the expected draws
  (n / free) allowed; if they miss, or without the index, the exact list of
  free keys is read (every key and every lease key: O(n + c)). An exhausted
  pool (no free, no ended key) answers in O(log n);
* with a prefix, or more ended leases, random index slots are drawn and
  rejected when the key lacks the prefix, was picked, or holds a live lease
  (one lookup); after ``64 + 4 * count`` rejections, or without the index,
  the exact fallback reads the keys of the range, the lease keys of the
  range and the ended leases: O(k + c). On a nearly exhausted prefix pool
  every call pays that.
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

ENDS_DB: Final = b"locust_kv.claim_ends"
"""The leases by end: end (8 bytes) + token (8 bytes) -> key, so that ended leases are found in O(log n + ended)."""

_LEASE: Final = Struct(">Qq")
"""A lease record's head: token, then the end in Unix milliseconds; the owner follows."""

_END: Final = Struct(">QQ")
_OFFSET: Final = 1 << 63
"""Added to an end in the ends' keys, so that their byte order is the order of the (signed) ends."""

_SMALL_RANGE: Final = 64
"""A prefix range this small is read whole, never sampled by slots."""

_REJECTIONS: Final = 64
"""Rejected slot draws allowed, plus 4 per wanted key, before the exact fallback."""

_STEP_MAX: Final = 1 << 16

_ENDED_READ: Final = 1024
"""Ended leases read to sample the whole store exactly by set sizes; with more, the claimable keys are
at least that many and random slots find them (see ``sample``)."""

_LARGE: Final = [b""] * (_SMALL_RANGE + 1)
"""Stands for a range known to be larger than ``_SMALL_RANGE`` (never read)."""

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


def _matching(keys: list[bytes], prefix: bytes) -> int:
    """How many of the ascending ``keys`` (all >= ``prefix``) start with ``prefix``."""
    if not prefix:
        return len(keys)
    past = _range_end_test(prefix)
    lo, hi = 0, len(keys)
    while lo < hi:  # the first one past the range
        mid = (lo + hi) // 2
        if past(keys[mid]):
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


def end_key(record: bytes) -> bytes:
    """The key of a lease's entry in the ends' database: its end (offset to unsigned), then its token."""
    token, expires = _LEASE.unpack_from(record)
    return _END.pack(expires + _OFFSET, token)


def _expires(record: bytes) -> int:
    return _LEASE.unpack_from(record)[1]  # type: ignore[no-any-return]


def _has_leases(txn: lmdb.Transaction, view: _View) -> bool:
    return txn.stat(view.claims)["entries"] > 0  # type: ignore[no-any-return]


def _expired_keys(txn: lmdb.Transaction, view: _View, now: int, limit: int = -1) -> list[bytes]:
    """The keys whose lease ended (``expires_ms`` <= now), from the ends' database: O(log n + expired).

    At most ``limit`` when > 0.
    """
    cursor = txn.cursor(view.ends)
    if not cursor.first():
        return []
    bound = _END.pack(now + 1 + _OFFSET, 0)  # every entry below ended at or before now
    keys = []
    for end, key in cursor.iternext():
        if end >= bound or len(keys) == limit:
            break
        keys.append(key)
    return keys


def _drop_lease(txn: lmdb.Transaction, view: _View, key: bytes, record: bytes) -> None:
    txn.delete(key, b"", view.claims)
    txn.delete(end_key(record), b"", view.ends)


def _next_token(txn: lmdb.Transaction) -> int:
    raw = txn.get(TOKEN_KEY)
    return int.from_bytes(raw, "big") if raw is not None else 0


def _grant(
    txn: lmdb.Transaction, view: _View, keys: list[bytes], values: list[bytes], ttl_ms: int, owner: bytes, now: int
) -> list[ClaimRecord]:
    """Write a new lease on each of ``keys`` (existing, claimable, distinct) and raise the counter once."""
    token = _next_token(txn)
    expires = now + ttl_ms
    claims = view.claims
    ends = view.ends
    pack = _LEASE.pack
    end_of = _END.pack
    granted = []
    put = txn.put
    replace = txn.replace
    delete = txn.delete
    for key, value in zip(keys, values):
        token += 1
        ended = replace(key, pack(token, expires) + owner, claims)
        if ended is not None:
            delete(end_key(ended), b"", ends)
        put(end_of(expires + _OFFSET, token), key, True, True, False, ends)
        granted.append(ClaimRecord(key, value, token, expires))
    if granted:
        put(TOKEN_KEY, token.to_bytes(8, "big"))
    return granted


def claim_keys(
    txn: lmdb.Transaction, view: _View, keys: list[bytes], ttl_ms: int, owner: bytes, clock: Callable[[], int]
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
    get = txn.get
    data = view.data
    rows = [(key, get(key, None, data)) for key in sample(txn, view, prefix, count, now)]
    rows = [(key, value) for key, value in rows if value is not None]  # always all of them
    return _grant(txn, view, [key for key, _ in rows], [value for _, value in rows], ttl_ms, owner, now)


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
        record = _live_lease(txn, view, key, token, now)
        if record is None:
            results.append(False)
            continue
        _drop_lease(txn, view, key, record)
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
        record = _live_lease(txn, view, key, token, now)
        if record is None:
            results.append(False)
            continue
        if not (delete and remove_key(txn, view, key)):
            _drop_lease(txn, view, key, record)
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
        txn.delete(end_key(record), b"", view.ends)
        txn.put(key, _LEASE.pack(token, expires) + record[_LEASE.size :], True, True, False, view.claims)
        txn.put(_END.pack(expires + _OFFSET, token), key, True, True, False, view.ends)
        results.append(expires)
    return results


def _lease_counts(txn: lmdb.Transaction, view: _View, prefix: bytes, now: int) -> tuple[int, int]:
    """``(live, ended)`` leases on keys with ``prefix``: O(ended) without a prefix, O(leases of the range) with one."""
    if not _has_leases(txn, view):
        return 0, 0
    expired = _expired_keys(txn, view, now)
    if not prefix:
        return txn.stat(view.claims)["entries"] - len(expired), len(expired)
    ended = sum(1 for key in expired if key.startswith(prefix))
    return count_range(txn, view.claims, prefix) - ended, ended


def allocation_stats(
    txn: lmdb.Transaction, view: _View, prefix: bytes, clock: Callable[[], int]
) -> tuple[int, int, int, int]:
    """``(total, claimable, claimed, expired)``: O(ended leases) without a prefix, O(k + leases of the range) with one."""
    total = count_range(txn, view.data, prefix)
    claimed, expired = _lease_counts(txn, view, prefix, clock())
    return total, total - claimed, claimed, expired


def stats(
    txn: lmdb.Transaction, view: _View, clock: Callable[[], int], used_pages: int, page_size: int
) -> dict[str, int]:
    """The store's counters: O(1), and O(ended leases) for the lease counts."""
    claims, expired = _lease_counts(txn, view, b"", clock())
    return {
        "keys": txn.stat(view.data)["entries"],
        "bytes": used_pages * page_size,
        "claims": claims,
        "expired_claims": expired,
    }


# ---------------------------------------------------------------------------
# Sampling.


def _draw(slots: lmdb.Cursor, total: int) -> bytes | None:
    """The key at a uniform random slot (None at a hole, which only a damaged index has)."""
    if slots.set_key(int(_random_float() * total).to_bytes(8, "big")):
        return slots.value()  # type: ignore[no-any-return]
    return None


def sample(txn: lmdb.Transaction, view: _View, prefix: bytes, count: int, now: int | None) -> list[bytes]:
    """Up to ``count`` distinct keys with ``prefix``, a uniform subset of the eligible ones.

    Eligible: every key when ``now`` is None, else the keys with no lease
    live at ``now``. Fewer only when fewer are eligible. See the module
    docstring for the costs.
    """
    if count <= 0:
        return []
    records = txn.stat(view.claims)["entries"] if now is not None else 0
    leases = records > 0
    entries = txn.stat(view.data)["entries"]
    if prefix or entries <= _SMALL_RANGE:
        head = range_keys(txn, view.data, prefix, _SMALL_RANGE + 1)
    else:
        head = _LARGE
    if len(head) <= _SMALL_RANGE:
        if leases:
            get = txn.get
            claims = view.claims
            records = [get(key, None, claims) for key in head]
            head = [key for key, record in zip(head, records) if record is None or _expires(record) <= now]  # type: ignore[operator]
        return _sample(head, min(count, len(head)))
    if not leases:
        return _sample_all(txn, view, prefix, count)
    assert now is not None
    if not prefix:
        ended = _expired_keys(txn, view, now, _ENDED_READ + 1)
        if len(ended) <= _ENDED_READ:
            return _sample_claimable(txn, view, count, ended, entries - records)
    return _sample_claimable_in_range(txn, view, prefix, count, now)


def _sample_all(txn: lmdb.Transaction, view: _View, prefix: bytes, count: int) -> list[bytes]:
    """A uniform subset of the keys with ``prefix``: random slots, else the whole range."""
    picked: list[bytes] = []
    chosen: set[bytes] = set()
    if view.indexed:
        slots = txn.cursor(view.slots)
        if slots.last():
            total = int.from_bytes(slots.key(), "big") + 1
            budget = _REJECTIONS + 4 * count
            while len(picked) < count and budget > 0:
                key = _draw(slots, total)
                if key is not None and key.startswith(prefix) and key not in chosen:
                    chosen.add(key)
                    picked.append(key)
                    continue
                budget -= 1
            if len(picked) == count:
                return picked
    pool = range_keys(txn, view.data, prefix)
    if chosen:
        pool = [key for key in pool if key not in chosen]
    return picked + _sample(pool, min(count - len(picked), len(pool)))


def _sample_claimable_in_range(
    txn: lmdb.Transaction, view: _View, prefix: bytes, count: int, now: int
) -> list[bytes]:
    """A uniform subset of the claimable keys with ``prefix``: random slots checked against their lease, else exact."""
    picked: list[bytes] = []
    chosen: set[bytes] = set()
    if view.indexed:
        slots = txn.cursor(view.slots)
        if slots.last():
            total = int.from_bytes(slots.key(), "big") + 1
            budget = _REJECTIONS + 4 * count
            get = txn.get
            claims = view.claims
            while len(picked) < count and budget > 0:
                key = _draw(slots, total)
                if (
                    key is not None
                    and key.startswith(prefix)
                    and key not in chosen
                    and ((record := get(key, None, claims)) is None or _expires(record) <= now)
                ):
                    chosen.add(key)
                    picked.append(key)
                    continue
                budget -= 1
            if len(picked) == count:
                return picked
    # Exact: the range less its live leases (keys only: no lease record is decoded).
    ended = [key for key in _expired_keys(txn, view, now) if key.startswith(prefix)]
    held = set(range_keys(txn, view.claims, prefix)).difference(ended)
    held |= chosen
    pool = [key for key in range_keys(txn, view.data, prefix) if key not in held]
    return picked + _sample(pool, min(count - len(picked), len(pool)))


def _sample_claimable(
    txn: lmdb.Transaction, view: _View, count: int, ended: list[bytes], free: int
) -> list[bytes]:
    """A uniform subset of the claimable keys of the whole store.

    The claimable keys are the ``free`` keys without a lease record
    (``free`` = entries less lease records: every record is on an existing
    key) and the ``ended`` ones. Each pick chooses between the two sets by their
    sizes, then a key of the set: an ended one from the list, a free one by
    random slots rejected while they hold a lease record, or, when draws
    keep missing, from the exact list of free keys (a read of every key
    and every lease key: O(n)). An exhausted pool (no free, no ended key)
    answers in O(log n).
    """
    free = max(0, free)
    picked: list[bytes] = []
    ended = list(ended)
    free_keys: list[bytes] | None = None
    slots = txn.cursor(view.slots) if view.indexed else None
    total = int.from_bytes(slots.key(), "big") + 1 if slots is not None and slots.last() else 0
    # Draws allowed: about 4 times those expected (total / free per pick), while cheaper than the exact list.
    budget = min(_REJECTIONS + 4 * count * -(-total // max(free, 1)), max(_REJECTIONS, total // 2))
    chosen: set[bytes] = set()
    get = txn.get
    claims = view.claims
    while len(picked) < count and free + len(ended) > 0:
        if _random_float() * (free + len(ended)) < len(ended):
            i = int(_random_float() * len(ended))
            ended[i], ended[-1] = ended[-1], ended[i]
            picked.append(ended.pop())
            continue
        if free_keys is None:
            key = None
            while budget > 0 and total:
                key = _draw(slots, total)  # type: ignore[arg-type]
                if key is not None and key not in chosen and get(key, None, claims) is None:
                    break
                key = None
                budget -= 1
            if key is None:  # the exact list of the free keys not picked yet
                leased = set(range_keys(txn, claims, b""))
                free_keys = [k for k in range_keys(txn, view.data, b"") if k not in leased and k not in chosen]
                free = len(free_keys)
                continue
            chosen.add(key)
        else:
            i = int(_random_float() * len(free_keys))
            free_keys[i], free_keys[-1] = free_keys[-1], free_keys[i]
            key = free_keys.pop()
        free -= 1
        picked.append(key)
    return picked


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
        record = txn.get(key, None, view.claims)  # a lease that ended
        if record is not None:
            _drop_lease(txn, view, key, record)
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
            record = txn.get(key, None, claims)
            if record is not None:
                _drop_lease(txn, view, key, record)
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
