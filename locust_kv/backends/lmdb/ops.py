"""The operations on entries, as steps: ``op(txn, view, ...)``, one LMDB transaction each, never yielding.

The engine runs them (:meth:`~.engine.Engine._read`, :meth:`~.engine.Engine._write`);
the backend's inlined fast paths call the single-key ones directly. Every
path that adds a key gives it an index slot while the index is maintained
(:func:`~.index.index_add`); every path that removes one frees its slot and
drops its lease (:func:`delete_in`).

Expiring keys: while the state says the live generation may hold expiries
(``view.expiring``), and for any write given a ``ttl_ms``, each step hands
over to its form in :mod:`.expiry`, which sees an expired entry as absent
and removes up to ``PURGE_STEP`` expired entries first; the other steps run
as before expiries existed. The clock is passed as a callable and read only
when an expiry matters.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING

from ..base import PURGE_STEP, apply_increment
from . import expiry, layout
from .index import index_add, index_remove
from .ranks import count_ranked
from .layout import NONE, VALID, put_index_status
from .leases import drop_lease, end_key, has_leases
from .ranges import count_between_steps, count_small, range_end_test
from .sampling import sample

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from .layout import Txn, View

__all__ = [
    "clear_counted",
    "clear_in",
    "compare_and_delete_detailed",
    "compare_and_delete_in",
    "compare_and_swap_detailed",
    "compare_and_swap_in",
    "delete_in",
    "delete_many",
    "delete_range_slice",
    "get_in",
    "get_many",
    "get_marker",
    "get_or_set_in",
    "increment_in",
    "pop_random",
    "put_marker",
    "scan_in",
    "set_in",
    "set_many",
    "size_steps",
    "swap_in",
]


# -- single keys ---------------------------------------------------------------------------


def get_in(txn: Txn, view: View, key: bytes, clock: Callable[[], int]) -> bytes | None:
    if view.expiring:
        return expiry.live_value(txn, view, key, clock())
    return txn.get(key, None, view.data)


def set_in(txn: Txn, view: View, key: bytes, value: bytes, ttl_ms: int | None, clock: Callable[[], int]) -> None:
    if view.expiring or ttl_ms is not None:
        expiry.set_in(txn, view, key, value, ttl_ms, clock())
    elif view.maintain:
        if txn.replace(key, value, view.data) is None:
            index_add(txn, view, key)
    else:
        txn.put(key, value, True, True, False, view.data)


def delete_in(txn: Txn, view: View, key: bytes, clock: Callable[[], int]) -> bool:
    if view.expiring:
        return expiry.delete(txn, view, key, clock())
    if not txn.delete(key, b"", view.data):
        return False
    if view.maintain:
        index_remove(txn, view, key)
    # Its lease goes with it. On an empty leases' database this costs a lookup of
    # its root in the one-page main database (lost in the commit's noise).
    lease = txn.pop(key, view.claims)
    if lease is not None:
        txn.delete(end_key(lease), b"", view.ends)
    return True


def increment_in(txn: Txn, view: View, key: bytes, delta: int, ttl_ms: int | None, clock: Callable[[], int]) -> int:
    if view.expiring or ttl_ms is not None:
        return expiry.increment(txn, view, key, delta, ttl_ms, clock())
    data = view.data
    current = txn.get(key, None, data)
    value, encoded = apply_increment(current, delta)
    txn.put(key, encoded, True, True, False, data)
    if current is None and view.maintain:
        index_add(txn, view, key)
    return value


def get_or_set_in(
    txn: Txn, view: View, key: bytes, value: bytes, ttl_ms: int | None, clock: Callable[[], int]
) -> tuple[bytes, bool]:
    if view.expiring or ttl_ms is not None:
        return expiry.get_or_set(txn, view, key, value, ttl_ms, clock())
    data = view.data
    current = txn.get(key, None, data)
    if current is not None:
        return current, True
    txn.put(key, value, True, True, False, data)
    if view.maintain:
        index_add(txn, view, key)
    return value, False


def swap_in(txn: Txn, view: View, key: bytes, value: bytes, ttl_ms: int | None, clock: Callable[[], int]) -> bytes | None:
    if view.expiring or ttl_ms is not None:
        return expiry.swap(txn, view, key, value, ttl_ms, clock())
    previous = txn.replace(key, value, view.data)
    if previous is None and view.maintain:
        index_add(txn, view, key)
    return previous


def compare_and_swap_in(
    txn: Txn, view: View, key: bytes, old: bytes | None, new: bytes, ttl_ms: int | None, clock: Callable[[], int]
) -> bool:
    if view.expiring or ttl_ms is not None:
        return expiry.compare_and_swap(txn, view, key, old, new, ttl_ms, clock())[0]
    data = view.data
    current = txn.get(key, None, data)
    if current != old:
        return False
    txn.put(key, new, True, True, False, data)
    if current is None and view.maintain:
        index_add(txn, view, key)
    return True


def compare_and_delete_in(txn: Txn, view: View, key: bytes, old: bytes, clock: Callable[[], int]) -> bool:
    if view.expiring:
        return expiry.compare_and_delete(txn, view, key, old, clock())[0]
    data = view.data
    if txn.get(key, None, data) != old:
        return False
    txn.delete(key, b"", data)
    if view.maintain:
        index_remove(txn, view, key)
    lease = txn.pop(key, view.claims)
    if lease is not None:
        txn.delete(end_key(lease), b"", view.ends)
    return True


def compare_and_swap_detailed(
    txn: Txn, view: View, key: bytes, old: bytes | None, new: bytes, ttl_ms: int | None, clock: Callable[[], int]
) -> tuple[bool, bytes | None]:
    if view.expiring or ttl_ms is not None:
        return expiry.compare_and_swap(txn, view, key, old, new, ttl_ms, clock())
    current = txn.get(key, None, view.data)
    if current != old:
        return False, current
    txn.put(key, new, True, True, False, view.data)
    if current is None and view.maintain:
        index_add(txn, view, key)
    return True, current


def compare_and_delete_detailed(
    txn: Txn, view: View, key: bytes, old: bytes, clock: Callable[[], int]
) -> tuple[bool, bytes | None]:
    if view.expiring:
        return expiry.compare_and_delete(txn, view, key, old, clock())
    current = txn.get(key, None, view.data)
    if current != old:
        return False, current
    delete_in(txn, view, key, clock)
    return True, current


# -- the whole store ---------------------------------------------------------------------------


def size_in(txn: Txn, view: View) -> int:
    return txn.stat(view.data)["entries"]


def size_steps(txn: Txn, view: View, clock: Callable[[], int]) -> Generator[None, None, int]:
    """The live entries: the entry count, less the expired ones not purged yet (O(those), in steps)."""
    entries: int = txn.stat(view.data)["entries"]
    if not view.expiring:
        return entries
    expired = yield from expiry.count_expired_steps(txn, view, clock())
    return entries - expired


def clear_in(txn: Txn, view: View, track_keys: bool) -> None:
    for db in (view.data, view.slots, view.slotof, view.expires, view.expiry_ends, view.ranks, view.claims, view.ends):
        txn.drop(db, delete=False)
    state = layout.State.decode(txn.get(layout.STATE_KEY))
    layout.put_state(txn, state.replace(index=VALID if track_keys else NONE, expiring=False))


def clear_counted(txn: Txn, view: View, track_keys: bool, clock: Callable[[], int]) -> int:
    """Clear, and the live entries it removed (O(expired unpurged) to leave those out)."""
    removed: int = txn.stat(view.data)["entries"]
    if view.expiring:
        removed -= sum(1 for _ in expiry.expired_entries(txn, view, clock()))
    clear_in(txn, view, track_keys)
    return removed


def count_in(txn: Txn, view: View, low: bytes, high: bytes | None, clock: Callable[[], int]) -> Generator[None, None, int]:
    """The live keys of ``[low, high)``: the stored ones less the expired ones not purged yet, in steps.

    The stored ones: O(1) for the whole store; with the key index, a read of
    the range if it holds at most ``WALK_FIRST`` (1,024) keys, else two ranks,
    O(log n) (:mod:`~.ranks`); without, a walk, O(k). The expired ones: a
    walk of every expired entry not purged yet (O(those, in the whole store)).
    """
    total = -1
    if view.indexed and (low or high is not None):
        small = count_small(txn, view.data, low, high)
        try:
            total = small if small is not None else count_ranked(txn, view.slotof, view.ranks, low, high)
        except LookupError:  # a damaged rank index: the walk still answers
            total = -1
    if total < 0:
        total = yield from count_between_steps(txn, view.data, low, high)
    if not view.expiring or (high is not None and high <= low):
        return total
    expired = yield from expiry.count_expired_steps(txn, view, clock(), low, high)
    return total - expired


def scan_in(
    txn: Txn, view: View, low: bytes, high: bytes | None, limit: int, clock: Callable[[], int]
) -> tuple[list[tuple[bytes, bytes]], bool]:
    cursor = txn.cursor(view.data)
    if (high is not None and low >= high) or not cursor.set_range(low):
        return [], False
    dead = expiry.dead_test(txn, view, clock())
    wanted = limit + 1 if limit > 0 else -1
    rows: list[tuple[bytes, bytes]] = []
    for row in cursor.iternext():
        if high is not None and row[0] >= high:
            break
        if dead is not None and dead(row[0]):
            continue
        rows.append(row)
        if len(rows) == wanted:
            rows.pop()
            return rows, True
    return rows, False


# -- batches -----------------------------------------------------------------------------------


def get_many(txn: Txn, view: View, keys: list[bytes], clock: Callable[[], int]) -> list[bytes | None]:
    get = txn.get
    data = view.data
    values = [get(key, None, data) for key in keys]
    dead = expiry.dead_test(txn, view, clock())
    if dead is not None:
        values = [None if value is None or dead(key) else value for key, value in zip(keys, values)]
    return values


def set_many(
    txn: Txn, view: View, items: list[tuple[bytes, bytes]], ttl_ms: int | None, clock: Callable[[], int]
) -> None:
    data = view.data
    if view.expiring or ttl_ms is not None:
        expiry.set_many(txn, view, items, ttl_ms, clock())
    elif view.maintain:
        replace = txn.replace
        for key, value in items:
            if replace(key, value, data) is None:
                index_add(txn, view, key)
    else:
        put = txn.put
        for key, value in items:
            put(key, value, True, True, False, data)


def delete_many(txn: Txn, view: View, keys: list[bytes], clock: Callable[[], int]) -> int:
    removed = 0
    for key in keys:
        if delete_in(txn, view, key, clock):
            removed += 1
    return removed


def delete_range_slice(txn: Txn, view: View, prefix: bytes, limit: int, clock: Callable[[], int]) -> tuple[int, bool]:
    """Remove the first keys with ``prefix`` for a few milliseconds, at most ``limit`` (> 0).

    Returns how many live keys (expired ones are removed too, not counted),
    and whether no key with the prefix is left.
    """
    now = clock() if view.expiring else 0
    if view.expiring:
        expiry.purge(txn, view, now, PURGE_STEP)
    dead = expiry.dead_test(txn, view, now)
    deadline = perf_counter() + layout.SLICE_SECONDS
    cursor = txn.cursor(view.data)
    past = range_end_test(prefix)
    claims = view.claims
    leases = has_leases(txn, view)
    maintain = view.maintain
    removed = 0
    done = 0  # removed, expired ones included
    if not cursor.set_range(prefix):
        return 0, True
    while True:
        key = cursor.key()  # after a delete, the next key; b"" past the last one (no key is empty)
        if not key or past(key):
            return removed, True
        if removed == limit or (done and not done & 63 and perf_counter() > deadline):
            return removed, False
        counted = dead is None or not dead(key)
        cursor.delete()
        if maintain:
            index_remove(txn, view, key)
        if leases:
            record = txn.get(key, None, claims)
            if record is not None:
                drop_lease(txn, view, key, record)
        if view.expiring:
            expiry.drop_expiry(txn, view, key)
        removed += counted
        done += 1


def pop_random(txn: Txn, view: View, prefix: bytes, count: int, clock: Callable[[], int]) -> list[tuple[bytes, bytes]]:
    """Remove up to ``count`` keys drawn as ``claim_random`` draws; each with its value."""
    now = clock()
    if view.expiring:
        expiry.purge(txn, view, now, PURGE_STEP)
    keys = sample(txn, view, prefix, count, now, expiry.dead_test(txn, view, now))
    popped = []
    for key in keys:
        value = txn.pop(key, view.data)
        assert value is not None  # drawn from the data in this transaction
        if view.maintain:
            index_remove(txn, view, key)
        record = txn.get(key, None, view.claims)  # a lease that ended
        if record is not None:
            drop_lease(txn, view, key, record)
        if view.expiring:
            expiry.drop_expiry(txn, view, key)
        popped.append((key, value))
    return popped


# -- markers: records of the main database, outside the generations ----------------------------


def get_marker(txn: Txn, _view: View, key: bytes) -> bytes | None:
    return txn.get(key)


def put_marker(txn: Txn, _view: View, key: bytes, value: bytes) -> None:
    txn.put(key, value)
