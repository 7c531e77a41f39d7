"""Expiring keys: the expiry records, the writes that see an expired entry as absent, and purging.

Each generation has two more named databases (see :mod:`.layout`):

* ``locust_kv.expires.<g>``: key -> expiry, 8 bytes big-endian, absolute
  Unix milliseconds of the host's wall clock (``Engine.clock``), only for the
  entries that expire;
* ``locust_kv.expiry_ends.<g>``: expiry -> key, sorted duplicates (the key
  is the duplicate value: an expiry and a key of 511 bytes would not fit one
  LMDB key), the same expiries in deadline order, so that the expired ones
  are the first records: found in O(log n + expired).

An entry is expired when its expiry is at or before ``clock()``: every
operation treats it as absent from then on, in every process at once, whether
it is still stored or not. Stored expired entries are removed by writes: each
write of a store whose state says ``expiring`` removes up to
:data:`~locust_kv.backends.base.PURGE_STEP` of them first, in its own
transaction (:func:`purge`), and ``purge_expired(limit)`` removes up to
``limit`` in one transaction. A write on an expired key removes it first,
lease and index slot included, then runs as on an absent key.

The state record's flag (``View.expiring``) is set in the transaction that
writes the first expiry of a generation and reset by ``clear`` and
``restore`` (a restore sets it when it loads an expiry); while it is unset
the generation holds no expiry and every operation runs as before expiries
existed, with no lookup of them.

Each function is a step of one transaction, never yielding.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Final

from ..base import PURGE_STEP, apply_increment
from .index import index_add, index_remove
from .layout import NO_EXPIRY, STATE_KEY, State, put_state
from .leases import end_key

if TYPE_CHECKING:
    from .layout import Txn, View

__all__ = [
    "COUNT_STEP",
    "QUOTA_PURGE",
    "SETTLE_AT",
    "SETTLE_STEP",
    "Dead",
    "compare_and_delete",
    "compare_and_swap",
    "count_expired_steps",
    "dead_test",
    "delete",
    "drop_expiry",
    "expire",
    "expired_at_least",
    "expired_entries",
    "get_or_set",
    "increment",
    "is_dead",
    "live_value",
    "persist",
    "purge",
    "purge_expired",
    "put_expiry",
    "read_expiry",
    "remove_entry",
    "set_many",
    "store",
    "swap",
]

QUOTA_PURGE: Final = 1_000
"""Expired entries a write refused by a quota removes before it checks the quota again (a few ms)."""

COUNT_STEP: Final = 1 << 14
"""Expired records read between two pauses of a count."""

Dead = Callable[[bytes], bool]
"""Whether a key (stored in the data) is expired, in one transaction at one ``now``."""


def _ms(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def _at(ms: int) -> bytes:
    return ms.to_bytes(8, "big")


# -- reading --------------------------------------------------------------------------------


def is_dead(txn: Txn, view: View, key: bytes, now: int) -> bool:
    """Whether the stored ``key`` has an expiry at or before ``now``."""
    if now < view.floor:
        return False
    raw = txn.get(key, None, view.expires)
    return raw is not None and _ms(raw) <= now


def live_value(txn: Txn, view: View, key: bytes, now: int) -> bytes | None:
    """The value of ``key`` unless absent or expired (a read: removes nothing)."""
    value = txn.get(key, None, view.data)
    if value is None or not view.expiring or now < view.floor:
        return value
    raw = txn.get(key, None, view.expires)
    if raw is not None and _ms(raw) <= now:
        return None
    return value


SETTLE_AT: Final = 256
"""Expired entries still stored past which an operation over a range purges them first (``DiskBackend._settle``)."""

SETTLE_STEP: Final = 1_000
"""Expired entries one transaction of that purge removes: about 3 ms."""


def expired_at_least(txn: Txn, view: View, wanted: int, clock: Callable[[], int]) -> int:
    """How many stored entries have expired, counted up to ``wanted``: O(log n + wanted)."""
    if not view.expiring:
        return 0
    found = 0
    for _ in expired_entries(txn, view, clock()):
        found += 1
        if found >= wanted:
            break
    return found


def dead_test(txn: Txn, view: View, now: int) -> Dead | None:
    """A test of expired keys for this transaction, or None when no entry is expired (nothing to filter).

    None costs one seek of the ends' first record; a test costs one lookup per key tested.
    """
    if not view.expiring or now < view.floor:
        return None
    cursor = txn.cursor(view.expiry_ends)
    if not cursor.first() or _ms(cursor.key()) > now:
        return None
    get = txn.get
    expires = view.expires

    def dead(key: bytes) -> bool:
        raw = get(key, None, expires)
        return raw is not None and _ms(raw) <= now

    return dead


def expired_entries(txn: Txn, view: View, now: int) -> Generator[bytes, None, None]:
    """The keys whose expiry is at or before ``now``, earliest first: O(log n + expired)."""
    if not view.expiring:
        return
    cursor = txn.cursor(view.expiry_ends)
    if not cursor.first():
        return
    bound = _at(now)
    for end, key in cursor.iternext():
        if end > bound:
            return
        yield key


def count_expired_steps(
    txn: Txn, view: View, now: int, low: bytes = b"", high: bytes | None = None
) -> Generator[None, None, int]:
    """How many stored entries of ``[low, high)`` are expired, yielding every :data:`COUNT_STEP` records read.

    A walk of the expired records: O(expired unpurged), whatever the range.
    """
    total = 0
    whole = not low and high is None
    for n, key in enumerate(expired_entries(txn, view, now), 1):
        if whole or (key >= low and (high is None or key < high)):
            total += 1
        if not n % COUNT_STEP:
            yield
    return total


def read_expiry(txn: Txn, view: View, key: bytes, clock: Callable[[], int]) -> tuple[bool, int | None]:
    """``(exists, remaining_ms)``: remaining >= 1, or None when the live entry never expires (or is absent)."""
    if txn.get(key, None, view.data) is None:
        return False, None
    if not view.expiring:
        return True, None
    raw = txn.get(key, None, view.expires)
    if raw is None:
        return True, None
    remaining = _ms(raw) - clock()
    if remaining <= 0:
        return False, None
    return True, remaining


# -- the records ------------------------------------------------------------------------------


def put_expiry(txn: Txn, view: View, key: bytes, at: int) -> None:
    """Make ``key`` expire at ``at`` (replacing its expiry); sets the state's flag when the generation had none."""
    end = _at(at)
    old = txn.replace(key, end, view.expires)
    if old is not None:
        txn.delete(old, key, view.expiry_ends)
    if not view.expiring or at < view.floor:
        # The state in this transaction: an earlier write of the same transaction may have changed it.
        state = State.decode(txn.get(STATE_KEY))
        if not state.expiring:
            put_state(txn, state.replace(expiring=True, floor=at))  # the engine adopts it when the step ends
        elif at < state.floor:
            put_state(txn, state.replace(floor=at))
    txn.put(end, key, True, True, False, view.expiry_ends)  # a duplicate of the expiry


def drop_expiry(txn: Txn, view: View, key: bytes) -> bool:
    """Remove the expiry of ``key``; whether it had one."""
    old = txn.pop(key, view.expires)
    if old is None:
        return False
    txn.delete(old, key, view.expiry_ends)
    return True


def remove_entry(txn: Txn, view: View, key: bytes) -> bool:
    """Remove the stored ``key`` with its index slot, lease and expiry; whether it was stored."""
    if not txn.delete(key, b"", view.data):
        return False
    if view.maintain:
        index_remove(txn, view, key)
    lease = txn.pop(key, view.claims)
    if lease is not None:
        txn.delete(end_key(lease), b"", view.ends)
    drop_expiry(txn, view, key)
    return True


def purge(txn: Txn, view: View, now: int, limit: int) -> int:
    """Remove up to ``limit`` entries expired at ``now``, earliest first; how many."""
    cursor = txn.cursor(view.expiry_ends)
    if not cursor.first():
        return 0
    bound = _at(now)
    data = view.data
    maintain = view.maintain
    claims = view.claims
    removed = 0
    while removed < limit:
        end = cursor.key()  # after a delete, the next record; b"" past the last one
        if not end or end > bound:
            break
        key = cursor.value()
        cursor.delete()
        txn.delete(key, b"", view.expires)
        if txn.delete(key, b"", data):
            if maintain:
                index_remove(txn, view, key)
            lease = txn.pop(key, claims)
            if lease is not None:
                txn.delete(end_key(lease), b"", view.ends)
        removed += 1
    return removed


def purge_expired(txn: Txn, view: View, limit: int, clock: Callable[[], int]) -> int:
    """``purge_expired``'s step: up to ``limit`` expired entries removed, and the state's floor raised to
    the earliest expiry left (:data:`~.layout.NO_EXPIRY` when none is), so that reads skip the expiry
    lookups again until it passes. Writes that purge on their way leave the floor as it is: raising it
    changes the state record, which every process then reads again."""
    if not view.expiring:
        return 0
    removed = purge(txn, view, clock(), limit)
    cursor = txn.cursor(view.expiry_ends)
    floor = _ms(cursor.key()) if cursor.first() else NO_EXPIRY
    if floor != view.floor:
        state = State.decode(txn.get(STATE_KEY))
        if state.expiring and floor > state.floor:
            put_state(txn, state.replace(floor=floor))
    return removed


# -- writes on a store whose keys may expire ---------------------------------------------------


def _current(txn: Txn, view: View, key: bytes, now: int) -> bytes | None:
    """Before a write: purge a step of expired entries, and remove ``key`` if it is expired; its live value."""
    if view.expiring:
        purge(txn, view, now, PURGE_STEP)
    value = txn.get(key, None, view.data)
    if value is None or not view.expiring:
        return value
    raw = txn.get(key, None, view.expires)
    if raw is not None and _ms(raw) <= now:
        remove_entry(txn, view, key)
        return None
    return value


def store(
    txn: Txn, view: View, key: bytes, value: bytes, current: bytes | None, ttl_ms: int | None, now: int
) -> None:
    """Write ``value`` over the live ``current`` (None: absent); the expiry as ``set`` sets it."""
    txn.put(key, value, True, True, False, view.data)
    if current is None and view.maintain:
        index_add(txn, view, key)
    if ttl_ms is not None:
        put_expiry(txn, view, key, now + ttl_ms)
    elif current is not None and view.expiring:
        drop_expiry(txn, view, key)


def set_in(txn: Txn, view: View, key: bytes, value: bytes, ttl_ms: int | None, now: int) -> None:
    store(txn, view, key, value, _current(txn, view, key, now), ttl_ms, now)


def swap(txn: Txn, view: View, key: bytes, value: bytes, ttl_ms: int | None, now: int) -> bytes | None:
    current = _current(txn, view, key, now)
    store(txn, view, key, value, current, ttl_ms, now)
    return current


def get_or_set(txn: Txn, view: View, key: bytes, value: bytes, ttl_ms: int | None, now: int) -> tuple[bytes, bool]:
    current = _current(txn, view, key, now)
    if current is not None:
        return current, True
    store(txn, view, key, value, None, ttl_ms, now)
    return value, False


def increment(txn: Txn, view: View, key: bytes, delta: int, ttl_ms: int | None, now: int) -> int:
    """The counter after ``delta``; ``ttl_ms`` applies only when this creates the key (a fixed window)."""
    current = _current(txn, view, key, now)
    value, encoded = apply_increment(current, delta)
    txn.put(key, encoded, True, True, False, view.data)
    if current is None:
        if view.maintain:
            index_add(txn, view, key)
        if ttl_ms is not None:
            put_expiry(txn, view, key, now + ttl_ms)
    return value


def compare_and_swap(
    txn: Txn, view: View, key: bytes, old: bytes | None, new: bytes, ttl_ms: int | None, now: int
) -> tuple[bool, bytes | None]:
    current = _current(txn, view, key, now)
    if current != old:
        return False, current
    store(txn, view, key, new, current, ttl_ms, now)
    return True, current


def compare_and_delete(txn: Txn, view: View, key: bytes, old: bytes, now: int) -> tuple[bool, bytes | None]:
    current = _current(txn, view, key, now)
    if current != old:
        return False, current
    remove_entry(txn, view, key)
    return True, current


def delete(txn: Txn, view: View, key: bytes, now: int) -> bool:
    if _current(txn, view, key, now) is None:
        return False
    return remove_entry(txn, view, key)


def set_many(txn: Txn, view: View, items: list[tuple[bytes, bytes]], ttl_ms: int | None, now: int) -> None:
    if view.expiring:
        purge(txn, view, now, PURGE_STEP)
    for key, value in items:
        store(txn, view, key, value, _current_no_purge(txn, view, key, now), ttl_ms, now)


def _current_no_purge(txn: Txn, view: View, key: bytes, now: int) -> bytes | None:
    value = txn.get(key, None, view.data)
    if value is None or not view.expiring or not is_dead(txn, view, key, now):
        return value
    remove_entry(txn, view, key)
    return None


def expire(txn: Txn, view: View, key: bytes, ttl_ms: int, clock: Callable[[], int]) -> bool:
    """Make the live ``key`` expire ``ttl_ms`` from now; False when absent."""
    now = clock()
    if _current(txn, view, key, now) is None:
        return False
    put_expiry(txn, view, key, now + ttl_ms)
    return True


def persist(txn: Txn, view: View, key: bytes, clock: Callable[[], int]) -> bool:
    """Drop the expiry of the live ``key``; True when it had one."""
    if not view.expiring:
        return False
    if _current(txn, view, key, clock()) is None:
        return False
    return drop_expiry(txn, view, key)
