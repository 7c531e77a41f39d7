"""The store file's layout: the records of the main database, the named databases, the state record and its view.

The main (unnamed) database holds the format version, the *state*, the
markers and the claims' fencing counter; ten named databases hold the data in
two generations (0 and 1), and two more, ``locust_kv.claims`` and
``locust_kv.claim_ends``, the leases by key and by end (see
:mod:`~locust_kv.backends.lmdb.claims`; created on open when a store made
before claims lacks them):

* ``locust_kv.data.<g>``: key -> value, the user's entries.
* ``locust_kv.slots.<g>``: slot (8-byte big-endian) -> key, a dense array
  ``0..n-1`` of every key, so that ``random_key()`` is one lookup.
* ``locust_kv.slotof.<g>``: key -> slot, to swap-remove a deleted key.
* ``locust_kv.expires.<g>``: key -> its expiry (8-byte big-endian Unix ms),
  only for the entries that expire (see :mod:`~locust_kv.backends.lmdb.expiry`).
* ``locust_kv.expiry_ends.<g>``: expiry (8 bytes) -> key, sorted duplicates,
  the same expiries in deadline order, so that purging finds the expired
  entries first (created on open when a store made before expiries lacks them).
* ``locust_kv.ranks.<g>``: the rank index, counts of the indexed keys between
  fences, so that ``count(start, end)`` is O(log n) (see
  :mod:`~locust_kv.backends.lmdb.ranks`; part of the key index, kept with
  ``slots`` and ``slotof``; created on open when a store made before ranks
  lacks it, which then rebuilds its key index, see ``Engine._open_databases``).

The state, ``b"<g>:<index>:<restorer>"``, names the live generation, the
index status (``v`` valid, ``n`` none, ``b<pid>.<token>`` being rebuilt by
that process; older files may hold ``b<token>``) and the pid of a process
replacing the dataset (0 when none); ``b"<g>:<index>:<restorer>:e<floor>"``
says that the live generation has held an expiry since it was last cleared
or restored, and that none of its expiries is earlier than ``floor`` (Unix
ms): while the clock is before it, reads skip the expiry lookups. A write
that sets an earlier expiry lowers the floor in its transaction, and
``purge_expired`` raises it to the earliest expiry left. A store that never
used expiries keeps the three fields, and its operations skip every expiry
lookup. Every transaction reads it first and
compares it with what this process last saw (a :class:`View`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, cast

from ...errors import BucketNotFoundError

if TYPE_CHECKING:
    import lmdb
    from lmdb import _Database as Db
    from lmdb import _StatDict as StatDict

    Txn = lmdb.Transaction[bytes]
    """A transaction of the store (values as bytes)."""
    Generation = tuple[Db, Db, Db, Db, Db, Db]
    """One generation's databases: data, slots, slotof, expires, expiry_ends, ranks."""

__all__ = [
    "BUILDING",
    "CLAIMS_DB",
    "CLOSED_VIEW",
    "DB_NAMES",
    "ENDS_DB",
    "EXPIRING",
    "EXPIRY_DB_NAMES",
    "FORMAT",
    "FORMAT_KEY",
    "MARKER_PREFIX",
    "MAX_DBS",
    "NONE",
    "NO_STATE",
    "PAGE_SIZE",
    "RANKLESS_FORMAT",
    "RANKS_DB_NAMES",
    "SLICE_SECONDS",
    "STATE_KEY",
    "TOKEN_KEY",
    "VALID",
    "State",
    "View",
    "data_pages",
    "put_index_status",
    "put_state",
]

FORMAT_KEY: Final = b"locust_kv.format"
FORMAT: Final = b"2"
"""The store file's format: 2 since the rank index. Releases before it read only 1, so they refuse a
file of this release (``DiskStoreOpenError``) instead of writing to it without keeping its ranks."""
RANKLESS_FORMAT: Final = b"1"
"""The format before the rank index: such a file is upgraded when this release first opens it."""
STATE_KEY: Final = b"locust_kv.state"
MARKER_PREFIX: Final = b"locust_kv.marker."
DB_NAMES: Final = tuple(
    (b"locust_kv.data.%d" % g, b"locust_kv.slots.%d" % g, b"locust_kv.slotof.%d" % g) for g in (0, 1)
)
EXPIRY_DB_NAMES: Final = tuple((b"locust_kv.expires.%d" % g, b"locust_kv.expiry_ends.%d" % g) for g in (0, 1))
"""Each generation's expiries: key -> expiry, and expiry -> key (sorted duplicates)."""
RANKS_DB_NAMES: Final = tuple(b"locust_kv.ranks.%d" % g for g in (0, 1))
"""Each generation's rank index (see :mod:`~locust_kv.backends.lmdb.ranks`)."""
MAX_DBS: Final = 16  # 14 used: twelve of the generations, the leases and their ends

CLAIMS_DB: Final = b"locust_kv.claims"
"""The leases' database: key -> lease record; one for the store, outside the generations."""

ENDS_DB: Final = b"locust_kv.claim_ends"
"""The leases by end: end (8 bytes) + token (8 bytes) -> key, so that ended leases are found in O(log n + ended)."""

TOKEN_KEY: Final = b"locust_kv.claim_token"
"""The fencing counter's record in the main database (8 bytes, big-endian): survives clear and restore."""

VALID: Final = b"v"
NONE: Final = b"n"
BUILDING: Final = b"b"  # followed by the builder's pid, a dot and its token
EXPIRING: Final = b"e"
"""The state record's fourth field: the live generation may hold expiries; after it, their floor."""

NO_EXPIRY: Final = 2**62
"""The floor of a generation whose expiries were all purged: later than any expiry a write can set."""

PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")

SLICE_SECONDS = 0.004
"""How long one transaction of long work (a rebuild, a prefix delete) runs before it commits and pauses.
Read at each slice as ``layout.SLICE_SECONDS``, so that a test may shorten it."""


@dataclass(frozen=True, slots=True)
class State:
    """The decoded state record."""

    generation: int
    index: bytes
    restorer: int
    expiring: bool = False
    """Whether the live generation may hold expiries (set by the first expiry, reset by clear and restore)."""
    floor: int = 0
    """With ``expiring``: no expiry of the live generation is earlier (Unix ms; 0: unknown). Lowered in
    the transaction that sets an earlier expiry, raised by ``purge_expired``: while the clock is before
    it, nothing has expired, and reads skip every expiry lookup."""

    def replace(
        self,
        *,
        index: bytes | None = None,
        restorer: int | None = None,
        expiring: bool | None = None,
        floor: int | None = None,
    ) -> State:
        """This state with its index status, its restorer, its expiry flag or its floor replaced."""
        return State(
            self.generation,
            self.index if index is None else index,
            self.restorer if restorer is None else restorer,
            self.expiring if expiring is None else expiring,
            self.floor if floor is None else floor,
        )

    @classmethod
    def decode(cls, raw: bytes | None) -> State:
        if raw is None:
            raise BucketNotFoundError("the disk store's state record is missing (a foreign or damaged file)")
        try:
            fields = raw.split(b":")
            expiring, floor = False, 0
            if len(fields) == 4:
                last = fields.pop()
                expiring = last[:1] == EXPIRING
                floor = int(last[1:]) if expiring and len(last) > 1 else 0
            generation, index, restorer = fields
            state = cls(int(generation), index, int(restorer), expiring, floor)
        except ValueError:
            raise BucketNotFoundError("the disk store's state record is damaged") from None
        if state.generation not in (0, 1):
            raise BucketNotFoundError("the disk store's state record is damaged")
        return state

    def encode(self) -> bytes:
        if self.expiring:
            return b"%d:%s:%d:%s%d" % (self.generation, self.index, self.restorer, EXPIRING, self.floor)
        return b"%d:%s:%d" % (self.generation, self.index, self.restorer)

    @property
    def maintained(self) -> bool:
        """Whether writers keep the index up to date (valid, or being built)."""
        return self.index == VALID or self.index.startswith(BUILDING)


def data_pages(stat: StatDict) -> int:
    """The pages of one database, from its ``txn.stat``: with the page size, the measure of a disk store's ``max_bytes``."""
    return stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]


def put_state(txn: Txn, state: State) -> State:
    """Write ``state`` as the store's state record; the engine adopts it when the step ends (``Engine._run``)."""
    txn.put(STATE_KEY, state.encode())
    return state


def put_index_status(txn: Txn, index: bytes) -> State:
    """Set the index status of the state record, as this transaction sees it."""
    return put_state(txn, State.decode(txn.get(STATE_KEY)).replace(index=index))


NO_STATE: Final = object()
"""Never equal to a state record: forces the slow path until a view is adopted."""


class View:
    """What one state record means for an operation: which databases, which index work.

    Immutable, and swapped as a whole, so that a thread never pairs one
    state with another state's databases. ``raw``, ``writable`` and
    ``fillable`` are what the fast paths compare the state record with:
    reads, writes that free data, writes that add data. ``data``, ``slots``,
    ``slotof``, ``expires``, ``expiry_ends`` and ``ranks`` are the live generation's databases.
    """

    __slots__ = (
        "claims", "data", "ends", "expires", "expiring", "expiry_ends", "fillable", "floor", "generations", "indexed",
        "maintain", "ranks", "raw", "slotof", "slots", "state", "writable",
    )

    raw: object
    state: State | None
    writable: object
    fillable: object
    data: Db
    slots: Db
    slotof: Db
    expires: Db
    expiry_ends: Db
    ranks: Db
    expiring: bool
    """Whether the live generation may hold expiries (the state's flag): False skips every expiry lookup."""
    floor: int
    """The state's floor of the expiries: while the clock is before it, none has expired."""
    claims: Db
    ends: Db
    generations: tuple[Generation, ...]
    """Both generations' databases (for a restore, which fills the other one)."""
    maintain: bool
    indexed: bool

    def __init__(
        self,
        raw: object,
        state: State | None,
        dbs: tuple[Generation, ...],
        at_limit: bool = False,
        claims: tuple[Db, Db] | None = None,
    ) -> None:
        self.raw = raw
        self.state = state
        self.generations = dbs
        absent = cast("Db", None)  # a closed view: never used, its raw matches no state record
        self.claims, self.ends = claims if claims is not None else (absent, absent)
        if state is None:
            self.writable = NO_STATE
            self.fillable = NO_STATE
            self.data = self.slots = self.slotof = self.expires = self.expiry_ends = self.ranks = absent
            self.maintain = self.indexed = self.expiring = False
            self.floor = 0
            return
        # Writes go ahead while the store has this state, unless it names a restorer.
        self.writable = raw if state.restorer == 0 else NO_STATE
        # Writes that add data take the fast path too, unless the map is at its limit:
        # then they go through the engine's run loop, which keeps the reserve for deletes.
        self.fillable = NO_STATE if at_limit else self.writable
        self.data, self.slots, self.slotof, self.expires, self.expiry_ends, self.ranks = dbs[state.generation]
        self.expiring = state.expiring
        self.floor = state.floor if state.expiring else 0
        self.maintain = state.maintained
        self.indexed = state.index == VALID


CLOSED_VIEW: Final = View(NO_STATE, None, ())
