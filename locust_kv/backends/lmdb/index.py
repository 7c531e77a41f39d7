"""The key index: a dense array of slots ``0..n-1`` (``slots``), its inverse (``slotof``) and the rank index, per generation.

Only inserting a new key or deleting one touches the index (two or three more
B-tree updates in the same transaction, and the rank index's, see
:mod:`~.ranks`); overwriting a key does not. The
index belongs to the store file: clearing, restoring or creating the store
with ``track_keys=True`` gives it an index, with ``track_keys=False`` none;
while it has one, every writer maintains it, and a rebuild builds it.

Each function is a step of one transaction, ``f(txn, view, ...)``; a damaged
index found on the way is marked ``n`` (none) in the state record, which the
engine adopts when the step ends. The rebuild itself (a slice per
transaction, pauses between) is run by the backend.
"""

from __future__ import annotations

import enum
import os
from random import random
from time import perf_counter
from typing import TYPE_CHECKING, Final

from . import layout
from .layout import NONE, VALID, put_index_status, put_state
from .ranks import append_ranks, rank_add, rank_remove

if TYPE_CHECKING:
    import lmdb

    from .layout import Txn, View

__all__ = ["WALK", "Walk", "count_slots", "index_add", "index_remove", "random_slot", "rebuild_slice", "start_rebuild", "take_over_rebuild"]

class Walk(enum.Enum):
    WALK = "walk"


WALK: Final = Walk.WALK
"""Returned by a sampling probe when only walking the keys can answer."""


def count_slots(slots: lmdb.Cursor[bytes]) -> int:
    """The number of slots (the last one plus one), the cursor left on the last; 0 for an empty index."""
    return int.from_bytes(slots.key(), "big") + 1 if slots.last() else 0


def index_add(txn: Txn, view: View, key: bytes) -> None:
    """Give the new ``key`` the next slot (append to the dense array)."""
    slots = txn.cursor(view.slots)
    slot = count_slots(slots).to_bytes(8, "big")
    if not txn.put(key, slot, True, False, False, view.slotof):
        # Already indexed: only a damaged index can say so. Stop trusting it.
        put_index_status(txn, NONE)
        return
    slots.put(slot, key, False, True, True)
    if not rank_add(txn, view.slotof, view.ranks, key):
        put_index_status(txn, NONE)


def index_remove(txn: Txn, view: View, key: bytes) -> None:
    """Free ``key``'s slot by moving the last key into it (swap-remove)."""
    slot = txn.pop(key, view.slotof)
    if slot is None:
        if view.indexed:  # an unindexed key is normal only while the index is being built
            put_index_status(txn, NONE)
        return
    if not rank_remove(txn, view.ranks, key):
        put_index_status(txn, NONE)
        return
    slots = txn.cursor(view.slots)
    if not slots.last():
        put_index_status(txn, NONE)
        return
    if slots.key() != slot:
        moved = slots.value()
        slots.delete()
        txn.put(slot, moved, True, True, False, view.slots)
        txn.put(moved, slot, True, True, False, view.slotof)
    else:
        slots.delete()


def random_slot(txn: Txn, view: View) -> bytes | None | Walk:
    """A uniform key from the (valid) index; :data:`WALK` if the index has holes."""
    slots = txn.cursor(view.slots)
    if not slots.last():
        return None
    count = int.from_bytes(slots.key(), "big") + 1
    for _ in range(4):
        if slots.set_key(int(random() * count).to_bytes(8, "big")):
            return slots.value()
    return WALK


# -- rebuilding ---------------------------------------------------------------------------


def start_rebuild(txn: Txn, view: View, token: bytes) -> int:
    """Empty the index and mark it as being built by ``token``; the generation it belongs to."""
    for db in (view.slots, view.slotof, view.ranks):
        txn.drop(db, delete=False)
    return put_index_status(txn, token).generation


def take_over_rebuild(txn: Txn, view: View, token: bytes, orphan: bytes) -> int | None:
    """Mark the orphaned build ``orphan`` as this builder's, keeping its partial index; None if it moved on."""
    state = view.state
    if state is None or state.index != orphan:
        return None
    return put_state(txn, state.replace(index=token)).generation


def rebuild_slice(txn: Txn, view: View, token: bytes, owner: int, generation: int, after: bytes | None) -> bytes | None:
    """Index the keys after ``after`` for a few milliseconds; the last key seen, or None when finished."""
    state = view.state
    assert state is not None
    if state.index != token or state.generation != generation or os.getpid() != owner:
        return None  # a clear, a restore or another rebuild took over (or this is a forked copy)
    cursor = txn.cursor(view.data)
    if not (cursor.first() if after is None else cursor.set_range(after + b"\x00")):
        put_index_status(txn, VALID)
        return None
    slots = txn.cursor(view.slots)
    slotof, ranks = view.slotof, view.ranks
    count = count_slots(slots)
    # While no writer has indexed a key past the build, this slice's keys are all above the indexed
    # ones: their ranks are appended once at the end (as a restore's), not counted one search each.
    indexed = txn.cursor(slotof)
    appending: list[bytes] | None = [] if not indexed.last() or indexed.key() < cursor.key() else None
    before = count
    deadline = perf_counter() + layout.SLICE_SECONDS
    put = txn.put
    last: bytes | None = None
    for n, key in enumerate(cursor.iternext(keys=True, values=False), 1):
        slot = count.to_bytes(8, "big")
        if put(key, slot, True, False, False, slotof):
            slots.put(slot, key, False, True, True)
            count += 1
            if appending is not None:
                appending.append(key)
            elif not rank_add(txn, slotof, ranks, key):
                put_index_status(txn, NONE)
                return None
        if not n & 255 and perf_counter() > deadline:
            last = key
            break
    if appending and not append_ranks(txn, ranks, appending, before):
        put_index_status(txn, NONE)
        return None
    if last is None:
        put_index_status(txn, VALID)
    return last
