"""The operations on entries, as steps: ``op(txn, view, ...)``, one LMDB transaction each, never yielding.

The engine runs them (:meth:`~.engine.Engine._read`, :meth:`~.engine.Engine._write`);
the backend's inlined fast paths call the single-key ones directly. Every
path that adds a key gives it an index slot while the index is maintained
(:func:`~.index.index_add`); every path that removes one frees its slot and
drops its lease (:func:`delete_in`).
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING

from ..base import apply_increment
from . import layout
from .index import index_add, index_remove
from .layout import NONE, VALID, put_index_status
from .leases import drop_lease, end_key, has_leases
from .ranges import range_end_test
from .sampling import sample

if TYPE_CHECKING:
    from collections.abc import Callable

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
    "size_in",
    "swap_in",
]


# -- single keys ---------------------------------------------------------------------------


def get_in(txn: Txn, view: View, key: bytes) -> bytes | None:
    return txn.get(key, None, view.data)


def set_in(txn: Txn, view: View, key: bytes, value: bytes) -> None:
    if view.maintain:
        if txn.replace(key, value, view.data) is None:
            index_add(txn, view, key)
    else:
        txn.put(key, value, True, True, False, view.data)


def delete_in(txn: Txn, view: View, key: bytes) -> bool:
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


def increment_in(txn: Txn, view: View, key: bytes, delta: int) -> int:
    data = view.data
    current = txn.get(key, None, data)
    value, encoded = apply_increment(current, delta)
    txn.put(key, encoded, True, True, False, data)
    if current is None and view.maintain:
        index_add(txn, view, key)
    return value


def get_or_set_in(txn: Txn, view: View, key: bytes, value: bytes) -> tuple[bytes, bool]:
    data = view.data
    current = txn.get(key, None, data)
    if current is not None:
        return current, True
    txn.put(key, value, True, True, False, data)
    if view.maintain:
        index_add(txn, view, key)
    return value, False


def swap_in(txn: Txn, view: View, key: bytes, value: bytes) -> bytes | None:
    previous = txn.replace(key, value, view.data)
    if previous is None and view.maintain:
        index_add(txn, view, key)
    return previous


def compare_and_swap_in(txn: Txn, view: View, key: bytes, old: bytes | None, new: bytes) -> bool:
    data = view.data
    current = txn.get(key, None, data)
    if current != old:
        return False
    txn.put(key, new, True, True, False, data)
    if current is None and view.maintain:
        index_add(txn, view, key)
    return True


def compare_and_delete_in(txn: Txn, view: View, key: bytes, old: bytes) -> bool:
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


def compare_and_swap_detailed(txn: Txn, view: View, key: bytes, old: bytes | None, new: bytes) -> tuple[bool, bytes | None]:
    current = txn.get(key, None, view.data)
    if current != old:
        return False, current
    txn.put(key, new, True, True, False, view.data)
    if current is None and view.maintain:
        index_add(txn, view, key)
    return True, current


def compare_and_delete_detailed(txn: Txn, view: View, key: bytes, old: bytes) -> tuple[bool, bytes | None]:
    current = txn.get(key, None, view.data)
    if current != old:
        return False, current
    delete_in(txn, view, key)
    return True, current


# -- the whole store ---------------------------------------------------------------------------


def size_in(txn: Txn, view: View) -> int:
    return txn.stat(view.data)["entries"]


def clear_in(txn: Txn, view: View, track_keys: bool) -> None:
    for db in (view.data, view.slots, view.slotof, view.claims, view.ends):
        txn.drop(db, delete=False)
    put_index_status(txn, VALID if track_keys else NONE)


def clear_counted(txn: Txn, view: View, track_keys: bool) -> int:
    removed: int = txn.stat(view.data)["entries"]
    clear_in(txn, view, track_keys)
    return removed


def scan_in(txn: Txn, view: View, low: bytes, high: bytes | None, limit: int) -> tuple[list[tuple[bytes, bytes]], bool]:
    cursor = txn.cursor(view.data)
    if (high is not None and low >= high) or not cursor.set_range(low):
        return [], False
    wanted = limit + 1 if limit > 0 else -1
    rows: list[tuple[bytes, bytes]] = []
    for row in cursor.iternext():
        if high is not None and row[0] >= high:
            break
        rows.append(row)
        if len(rows) == wanted:
            rows.pop()
            return rows, True
    return rows, False


# -- batches -----------------------------------------------------------------------------------


def get_many(txn: Txn, view: View, keys: list[bytes]) -> list[bytes | None]:
    get = txn.get
    data = view.data
    return [get(key, None, data) for key in keys]


def set_many(txn: Txn, view: View, items: list[tuple[bytes, bytes]]) -> None:
    data = view.data
    if view.maintain:
        replace = txn.replace
        for key, value in items:
            if replace(key, value, data) is None:
                index_add(txn, view, key)
    else:
        put = txn.put
        for key, value in items:
            put(key, value, True, True, False, data)


def delete_many(txn: Txn, view: View, keys: list[bytes]) -> int:
    removed = 0
    for key in keys:
        if delete_in(txn, view, key):
            removed += 1
    return removed


def delete_range_slice(txn: Txn, view: View, prefix: bytes, limit: int) -> tuple[int, bool]:
    """Remove the first keys with ``prefix`` for a few milliseconds, at most ``limit`` (> 0).

    Returns how many, and whether no key with the prefix is left.
    """
    deadline = perf_counter() + layout.SLICE_SECONDS
    cursor = txn.cursor(view.data)
    past = range_end_test(prefix)
    claims = view.claims
    leases = has_leases(txn, view)
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
            index_remove(txn, view, key)
        if leases:
            record = txn.get(key, None, claims)
            if record is not None:
                drop_lease(txn, view, key, record)
        removed += 1


def pop_random(txn: Txn, view: View, prefix: bytes, count: int, clock: Callable[[], int]) -> list[tuple[bytes, bytes]]:
    """Remove up to ``count`` keys drawn as ``claim_random`` draws; each with its value."""
    keys = sample(txn, view, prefix, count, clock())
    popped = []
    for key in keys:
        value = txn.pop(key, view.data)
        assert value is not None  # drawn from the data in this transaction
        if view.maintain:
            index_remove(txn, view, key)
        record = txn.get(key, None, view.claims)  # a lease that ended
        if record is not None:
            drop_lease(txn, view, key, record)
        popped.append((key, value))
    return popped


# -- markers: records of the main database, outside the generations ----------------------------


def get_marker(txn: Txn, _view: View, key: bytes) -> bytes | None:
    return txn.get(key)


def put_marker(txn: Txn, _view: View, key: bytes, value: bytes) -> None:
    txn.put(key, value)
