"""The memory backend's expiries: which keys expire, and when, in deadline order.

Kept beside the data by :class:`locust_kv.backends.memory.MemoryBackend`
under its lock. This module knows nothing of values, the key index or the
leases: it only answers "when does this key expire" and "which keys are due",
and the backend removes the entries it is told are due.

``at`` maps a key to its expiry (absolute Unix ms of the backend's clock), in
the same shards as the values (a million-key dict stalls the process at each
resize); ``deadlines`` holds ``(expiry, key)`` for the same keys, sorted, so
that the keys due at ``now`` are a prefix of it: counting them is one
bisection, removing k of them is O(k). ``earliest`` is a lower bound of every
expiry (exact after each purge): while it is after now no entry has expired,
and a read need not look its key's expiry up (a second dict lookup, at a
million keys mostly cache misses, cost as much as the read itself).
``horizon`` is the same bound in seconds of ``time.time()``, so that a read on
the wall clock compares it with a float it reads inline, no call and no
conversion (the two cost another 80 ns); -1.0 when the store runs on another
clock (a test's fake one), so that the check always sends the read on.

A store with no expiry at all has no :class:`Expiries` (the backend keeps
None), so that its reads pay one ``is None`` test and nothing else.
"""

from __future__ import annotations

from typing import TypeVar

from sortedcontainers import SortedList

__all__ = ["NEVER", "Expiries", "pop_front"]

_T = TypeVar("_T")

NEVER = 2**63
"""Later than any expiry: ``earliest`` when no key expires."""


class Expiries:
    """The expiries of one store's entries: ``at`` (key -> expiry, sharded) and ``deadlines`` (sorted ``(expiry, key)``)."""

    __slots__ = ("at", "deadlines", "earliest", "horizon", "wall")

    def __init__(self, shards: int, wall: bool) -> None:
        self.at: list[dict[bytes, int]] = [{} for _ in range(shards)]
        self.deadlines: SortedList[tuple[int, bytes]] = SortedList()
        self.wall = wall
        # At or before every expiry: lowered by put, made exact by take_due, left by drop (still a lower bound).
        self.earliest = NEVER
        self.horizon = -1.0
        self._move(NEVER)

    def on_wall_clock(self, wall: bool) -> None:
        """Whether the backend's clock is the wall clock (``horizon`` means something only then)."""
        self.wall = wall
        self._move(self.earliest)

    def _move(self, earliest: int) -> None:
        self.earliest = earliest
        # (earliest - 1) / 1000 rounds by far less than the millisecond taken off:
        # horizon > t implies earliest > t * 1000, so nothing has expired at t.
        self.horizon = (earliest - 1) / 1000 if self.wall else -1.0

    def put(self, key: bytes, shard: int, at: int) -> None:
        """``key`` (in ``shard``) expires at ``at``, replacing any earlier expiry: O(log n)."""
        table = self.at[shard]
        old = table.get(key)
        if old is not None:
            if old == at:
                return
            self.deadlines.remove((old, key))
        table[key] = at
        self.deadlines.add((at, key))
        if at < self.earliest:
            self._move(at)

    def drop(self, key: bytes, shard: int) -> bool:
        """Forget ``key``'s expiry; whether it had one: O(log n)."""
        old = self.at[shard].pop(key, None)
        if old is None:
            return False
        self.deadlines.remove((old, key))
        return True

    def due(self, now: int) -> int:
        """How many keys have expired at ``now`` (expiry <= now): one bisection, O(log n)."""
        if self.earliest > now:
            return 0
        deadlines = self.deadlines
        if not deadlines or deadlines[0][0] > now:
            return 0
        return deadlines.bisect_left((now + 1,))  # every (at, key) with at <= now sorts before (now + 1,)

    def take_due(self, now: int, limit: int | None) -> list[bytes]:
        """Forget the expiries of up to ``limit`` (None: all) keys due at ``now``, earliest first; those keys, in O(k)."""
        count = self.due(now)
        if limit is not None:
            count = min(count, limit)
        if count <= 0:
            return []
        deadlines = self.deadlines
        keys = [key for _, key in pop_front(deadlines, count)]
        self._move(deadlines[0][0] if deadlines else NEVER)
        at = self.at
        shards = len(at)
        for key in keys:
            del at[hash(key) % shards][key]
        return keys

    def __len__(self) -> int:
        return len(self.deadlines)


def pop_front(order: SortedList[_T], count: int) -> list[_T]:
    """Remove and return the first ``count`` (<= len) items of ``order``, in O(count + sublists), through SortedList's internals.

    ``del order[:count]`` deletes one item at a time (each O(log n)) unless
    the slice is an eighth of the list, when it rebuilds the rest: O(n).
    Here whole sublists go at once and at most one is cut; the positional
    index is dropped (rebuilt when next needed, as after any ``add``).
    """
    lists, maxes = order._lists, order._maxes
    taken: list[_T] = []
    while count > 0 and lists:
        first = lists[0]
        if len(first) <= count:
            taken += first
            count -= len(first)
            del lists[0]
            del maxes[0]
        else:
            taken += first[:count]
            del first[:count]  # the sublist's max, its last item, stays
            count = 0
    order._len -= len(taken)
    del order._index[:]
    return taken
