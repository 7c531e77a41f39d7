"""Random sampling: one key (``random_key``), independent draws, and uniform subsets of the eligible keys.

Functions of one transaction; none writes. For n keys in the store, k with
the prefix, c leases:

* ``random_key`` without a prefix, with the index: two index reads (the last
  slot, a random slot), whatever n (:func:`~.index.random_slot`).
* a range of at most 64 keys is read whole (with the lease keys of the range
  when leases matter).
* a larger prefix range, with the index, for one key (``random_key``):
  random slots until one matches (expected n/k), 64 tries; if they all miss,
  the range is read up to :data:`WINDOW` (4,096) keys. A range that ends
  there is sampled from the keys read; a larger one holds more than
  ``WINDOW`` keys, so each slot matches with probability above WINDOW/n and
  the draws go on, :data:`CHUNK_TRIES` per transaction with a pause between
  (:data:`RETRY`): expected at most n/4,096 draws (244 at 1,000,000 keys),
  each transaction a few milliseconds, and never a walk of the whole range.
  Every branch is uniform over the matching keys of its transaction's
  snapshot, and which branch answers does not depend on which key matches,
  so the answer is uniform.
* for several keys (``random_keys``): random slots raced against a read of
  the range (:func:`_race`): rounds of draws (``64 + 4 * count`` misses
  allowed, doubling), each followed by a read of as many keys of the range,
  until the keys are drawn or the range is read whole: O(min(count * n / k,
  k)), about 6 ms for 10 keys of a tenth of 1,000,000.
* without the index, ``random_key`` walks the range in chunks of 20,000
  keys, a transaction each (:func:`walk_chunk`): O(k).

Sampling the claimable keys (``claim_random``, ``pop_random``) and distinct
keys (``random_keys`` with ``unique``) picks one key at a time, each uniform
among the eligible keys not picked yet, so the set is a uniform subset:

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
  (one lookup), raced against a read of the range as above; once the range
  is read whole, or without the index, the exact fallback takes the keys
  of the range less the lease keys of the range and the ended leases:
  O(k + c). On a nearly exhausted prefix pool every call pays that.

Expiring keys: while the state says the live generation may hold expiries
and some entry is expired, an expired key is one more reason to reject a
draw (one lookup of its expiry), and every read of a range leaves them out;
the whole-store shortcut by set sizes is not taken (it counts entries). A
probe of ``random_key`` whose draws all miss returns :data:`RETRY`, and the
backend falls back to walking the keys after a bounded number of retries,
so a store whose keys are mostly expired still answers, uniformly.
"""

from __future__ import annotations

import enum
import random as _random
from collections.abc import Callable, Iterator
from itertools import islice
from random import random
from typing import TYPE_CHECKING, Final

from .expiry import Dead, dead_test
from .index import WALK, Walk, random_slot
from .leases import expired_keys, expires
from .ranges import SMALL_RANGE, RangeReader, matching, range_keys

if TYPE_CHECKING:
    from collections.abc import Callable

    import lmdb

    from .layout import Txn, View

__all__ = ["CHUNK_TRIES", "RETRY", "REJECTION_TRIES", "WALK_CHUNK", "WINDOW", "Retry", "random_keys", "random_probe",
           "sample", "walk_chunk"]

WALK_CHUNK: Final = 20_000
"""Keys read per transaction when sampling by walking the keys."""

REJECTION_TRIES: Final = 64
"""Random slots tried for one key with the prefix before reading up to :data:`WINDOW` keys of its range."""

WINDOW: Final = 4096
"""Keys of a prefix range read when the random slots of a probe miss: a range that ends there is sampled from them."""

CHUNK_TRIES: Final = 1024
"""Random slots tried per transaction once a probe found the range larger than :data:`WINDOW` (a few ms)."""


class Retry(enum.Enum):
    RETRY = "retry"


RETRY: Final = Retry.RETRY
"""Returned by a probe whose draws missed in a range larger than :data:`WINDOW`: draw again, after a pause."""

REJECTIONS: Final = 64
"""Rejected slot draws allowed, plus 4 per wanted key, before the exact fallback."""

ENDED_READ: Final = 1024
"""Ended leases read to sample the whole store exactly by set sizes; with more, the claimable keys are
at least that many and random slots find them (see :func:`sample`)."""

_LARGE: Final = [b""] * (SMALL_RANGE + 1)
"""Stands for a range known to be larger than ``SMALL_RANGE`` (never read)."""

_random_float = _random.random
_sample = _random.sample


# ---------------------------------------------------------------------------
# One key.


def random_probe(
    txn: Txn, view: View, prefix: bytes, tries: int, clock: Callable[[], int]
) -> bytes | None | Walk | Retry:
    """Sample in one short read; :data:`~.index.WALK` when only walking the keys can answer.

    With a prefix: a range of at most ``SMALL_RANGE`` keys is read whole;
    else ``tries`` random slots, kept when they match; if they all miss, the
    range is read up to :data:`WINDOW` keys and, if it ends there, sampled
    from them; else :data:`RETRY` (the range holds more than ``WINDOW`` keys).
    Expired keys never match; without a prefix, ``tries`` draws that all
    find expired keys answer :data:`RETRY` too.
    """
    dead = dead_test(txn, view, clock()) if view.expiring else None
    if not prefix:
        if not view.indexed:
            return WALK
        if dead is None:
            return random_slot(txn, view)
        for _ in range(tries):
            slot = random_slot(txn, view)
            if slot is None or slot is WALK or not dead(slot):
                return slot
        return RETRY
    # A small prefix range: read it whole.
    cursor = txn.cursor(view.data)
    if not cursor.set_range(prefix):
        return None
    found = cursor.iternext(keys=True, values=False)
    head = list(islice(found, SMALL_RANGE + 1))
    head = head[: matching(head, prefix)]
    if len(head) <= SMALL_RANGE:
        if dead is not None:
            head = [key for key in head if not dead(key)]
        return head[int(random() * len(head))] if head else None
    if not view.indexed:
        return WALK
    # Uniform over the index, kept only when it has the prefix: uniform over the prefix.
    slots = txn.cursor(view.slots)
    if not slots.last():
        return WALK  # keys without slots: a damaged index
    count = int.from_bytes(slots.key(), "big") + 1
    for _ in range(tries):
        if slots.set_key(int(random() * count).to_bytes(8, "big")):
            key = slots.value()
            if key.startswith(prefix) and (dead is None or not dead(key)):
                return key
    # Every draw missed: a bounded read of the range (``found`` is past the head, all of it matching).
    more = list(islice(found, WINDOW + 1 - len(head)))
    head += more[: matching(more, prefix)]
    if len(head) <= WINDOW:
        if dead is not None:
            head = [key for key in head if not dead(key)]
        return head[int(random() * len(head))] if head else None
    return RETRY


def walk_chunk(
    txn: Txn, view: View, prefix: bytes, after: bytes | None, clock: Callable[[], int]
) -> tuple[list[bytes], bytes | None, bool]:
    """Up to :data:`WALK_CHUNK` matching keys after ``after``, the live ones; the last key read; whether they were the last ones.

    Reads in doubling steps, so a short prefix range costs about its own size.
    """
    cursor = txn.cursor(view.data)
    if not cursor.set_range(prefix if after is None else after + b"\x00"):
        return [], None, True
    keys, done = _walk_keys(cursor, prefix)
    last = keys[-1] if keys else None
    dead = dead_test(txn, view, clock()) if view.expiring else None
    if dead is not None:
        keys = [key for key in keys if not dead(key)]
    return keys, last, done


def _walk_keys(cursor: lmdb.Cursor[bytes], prefix: bytes) -> tuple[list[bytes], bool]:
    keys: list[bytes] = []
    step = SMALL_RANGE
    found = cursor.iternext(keys=True, values=False)
    while len(keys) < WALK_CHUNK:
        wanted = min(step, WALK_CHUNK - len(keys))
        got = list(islice(found, wanted))
        count = matching(got, prefix)
        keys += got[:count]
        if count < len(got) or len(got) < wanted:
            return keys, True
        step *= 2
    return keys, False


# ---------------------------------------------------------------------------
# Several keys.


def _draw(slots: lmdb.Cursor[bytes], total: int) -> bytes | None:
    """The key at a uniform random slot (None at a hole, which only a damaged index has)."""
    if slots.set_key(int(_random_float() * total).to_bytes(8, "big")):
        return slots.value()
    return None


def sample(
    txn: Txn, view: View, prefix: bytes, count: int, now: int | None, dead: Dead | None = None
) -> list[bytes]:
    """Up to ``count`` distinct keys with ``prefix``, a uniform subset of the eligible ones.

    Eligible: every key when ``now`` is None, else the keys with no lease
    live at ``now``; never a key for which ``dead`` is true (expired). Fewer
    only when fewer are eligible. See the module docstring for the costs.
    """
    if count <= 0:
        return []
    records = txn.stat(view.claims)["entries"] if now is not None else 0
    leases = records > 0
    entries = txn.stat(view.data)["entries"]
    if prefix or entries <= SMALL_RANGE:
        head = range_keys(txn, view.data, prefix, SMALL_RANGE + 1)
    else:
        head = _LARGE
    if len(head) <= SMALL_RANGE:
        if dead is not None:
            head = [key for key in head if not dead(key)]
        if leases:
            assert now is not None
            get = txn.get
            claims = view.claims
            found = [get(key, None, claims) for key in head]
            head = [key for key, record in zip(head, found) if record is None or expires(record) <= now]
        return _sample(head, min(count, len(head)))
    if not leases:
        return _sample_all(txn, view, prefix, count, dead)
    assert now is not None
    if not prefix and dead is None:
        ended = expired_keys(txn, view, now, ENDED_READ + 1)
        if len(ended) <= ENDED_READ:
            return _sample_claimable(txn, view, count, ended, entries - records)
    return _sample_claimable_in_range(txn, view, prefix, count, now, dead)


def _sample_all(txn: Txn, view: View, prefix: bytes, count: int, dead: Dead | None) -> list[bytes]:
    """A uniform subset of the live keys with ``prefix``: random slots raced against a read of the range (see :func:`_race`)."""
    pool = RangeReader(txn, view.data, prefix, dead)
    picked, chosen = _draw_racing(txn, view, pool, prefix, count, dead, None)
    if len(picked) == count:
        return picked
    keys = pool.read_all()
    if chosen:
        keys = [key for key in keys if key not in chosen]
    return picked + _sample(keys, min(count - len(picked), len(keys)))


def _draw_racing(
    txn: Txn,
    view: View,
    pool: RangeReader,
    prefix: bytes,
    count: int,
    dead: Dead | None,
    accept: Callable[[bytes], bool] | None,
) -> tuple[list[bytes], set[bytes]]:
    """Up to ``count`` distinct live keys with ``prefix`` (and ``accept``-ed) from random index slots, raced
    against the read of the range by ``pool`` (see :func:`_race`): all of them, or fewer when the read
    ended first and the caller samples the rest exactly. Returns the keys and their set."""
    picked: list[bytes] = []
    chosen: set[bytes] = set()
    if not view.indexed:
        return picked, chosen
    slots = txn.cursor(view.slots)
    if not slots.last():
        return picked, chosen
    total = int.from_bytes(slots.key(), "big") + 1
    for budget in _race(pool, count):
        misses = 0
        while len(picked) < count and misses < budget:
            key = _draw(slots, total)
            if (
                key is not None
                and key.startswith(prefix)
                and key not in chosen
                and (accept is None or accept(key))
                and (dead is None or not dead(key))
            ):
                chosen.add(key)
                picked.append(key)
                continue
            misses += 1
        if len(picked) == count:
            break
    return picked, chosen


def _race(pool: RangeReader, count: int) -> Iterator[int]:
    """The miss budgets of the rounds of random draws, each round followed by a read of as many keys of the range.

    Random slots find a key of a range of k among n keys in n/k draws; reading
    the range costs k. Neither is known in advance, so the two race: a round
    allows ``64 + 4 * count`` missed draws, then that many more keys of the
    range are read, and each round doubles. The drawing stops when it has
    its keys, or when the range is read whole (the exact fallback then
    samples from it): at most about three times the cheaper of the two, so
    a call is bounded by O(min(count * n / k, k)), never a walk of a range
    much larger than the draws it would take. Whether a round ends depends
    only on how many draws missed, not on which keys were drawn, so the
    keys stay a uniform subset.
    """
    budget = REJECTIONS + 4 * count
    while True:
        yield budget
        pool.read(budget)
        if pool.done:
            return
        budget *= 2


def _sample_claimable_in_range(
    txn: Txn, view: View, prefix: bytes, count: int, now: int, dead: Dead | None
) -> list[bytes]:
    """A uniform subset of the claimable keys with ``prefix``: random slots checked against their lease
    (and their expiry), raced against a read of the range (see :func:`_race`), else exact."""
    get = txn.get
    claims = view.claims

    def free(key: bytes) -> bool:
        return (record := get(key, None, claims)) is None or expires(record) <= now

    pool = RangeReader(txn, view.data, prefix, dead)
    picked, chosen = _draw_racing(txn, view, pool, prefix, count, dead, free)
    if len(picked) == count:
        return picked
    # Exact: the range less its live leases (keys only: no lease record is decoded).
    ended = [key for key in expired_keys(txn, view, now) if key.startswith(prefix)]
    held = set(range_keys(txn, view.claims, prefix)).difference(ended)
    held |= chosen
    keys = [key for key in pool.read_all() if key not in held]
    return picked + _sample(keys, min(count - len(picked), len(keys)))


def _sample_claimable(
    txn: Txn, view: View, count: int, ended: list[bytes], free: int
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
    budget = min(REJECTIONS + 4 * count * -(-total // max(free, 1)), max(REJECTIONS, total // 2))
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
            while budget > 0 and slots is not None and total:
                key = _draw(slots, total)
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


def random_keys(
    txn: Txn, view: View, prefix: bytes, count: int, unique: bool, clock: Callable[[], int]
) -> list[bytes]:
    """``count`` live keys with ``prefix``: a uniform subset (``unique``) or independent uniform draws.

    Costs: a range of at most 64 keys is read whole; otherwise, with the
    index, random slots (expected n/k per draw for k of n keys matching),
    and O(k) (every key of the range) without it or when draws keep missing.
    """
    dead = dead_test(txn, view, clock()) if view.expiring else None
    if unique:
        return sample(txn, view, prefix, count, None, dead)
    if count <= 0:
        return []
    head = range_keys(txn, view.data, prefix, SMALL_RANGE + 1)
    if len(head) <= SMALL_RANGE:
        if dead is not None:
            head = [key for key in head if not dead(key)]
        return [head[int(_random_float() * len(head))] for _ in range(count)] if head else []
    drawn: list[bytes] = []
    pool = RangeReader(txn, view.data, prefix, dead)
    if view.indexed:
        slots = txn.cursor(view.slots)
        if slots.last():
            total = int.from_bytes(slots.key(), "big") + 1
            for budget in _race(pool, count):
                misses = 0
                while len(drawn) < count and misses < budget:
                    if slots.set_key(int(_random_float() * total).to_bytes(8, "big")):
                        key = slots.value()
                        if key.startswith(prefix) and (dead is None or not dead(key)):
                            drawn.append(key)
                            continue
                    misses += 1
                if len(drawn) == count:
                    return drawn
    keys = pool.read_all()
    if not keys:
        return drawn  # every key of the range expired: no draw can find one
    return drawn + [keys[int(_random_float() * len(keys))] for _ in range(count - len(drawn))]
