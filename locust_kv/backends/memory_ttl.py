"""The memory backend's expiries: which keys expire, and when, in deadline order.

Kept beside the data by :class:`locust_kv.backends.memory.MemoryBackend`
under its lock. This module knows nothing of values, the key index or the
leases: it only answers "when does this key expire" and "which keys are due",
and the backend removes the entries it is told are due.

``at`` maps a key to its expiry (absolute Unix ms of the backend's clock), in
the same shards as the values (a million-key dict stalls the process at each
resize); ``deadlines`` holds ``(expiry, key)`` for the same keys, sorted, so
that the keys due at ``now`` are a prefix of it: counting them is one
bisection, removing k of them is O(k).

A store with no expiry at all has no :class:`Expiries` (the backend keeps
None), so that its reads pay one ``is None`` test and nothing else.
"""

from __future__ import annotations

from typing import TypeVar

from sortedcontainers import SortedList

__all__ = ["Expiries", "pop_front"]

_T = TypeVar("_T")


class Expiries:
    """The expiries of one store's entries: ``at`` (key -> expiry, sharded) and ``deadlines`` (sorted ``(expiry, key)``)."""

    __slots__ = ("at", "deadlines")

    def __init__(self, shards: int) -> None:
        self.at: list[dict[bytes, int]] = [{} for _ in range(shards)]
        self.deadlines: SortedList[tuple[int, bytes]] = SortedList()

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

    def drop(self, key: bytes, shard: int) -> bool:
        """Forget ``key``'s expiry; whether it had one: O(log n)."""
        old = self.at[shard].pop(key, None)
        if old is None:
            return False
        self.deadlines.remove((old, key))
        return True

    def due(self, now: int) -> int:
        """How many keys have expired at ``now`` (expiry <= now): one bisection, O(log n)."""
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
        keys = [key for _, key in pop_front(self.deadlines, count)]
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
