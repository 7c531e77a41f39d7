"""The lease records: their encoding, the ends' index, and reading the ended ones.

Two named databases outside the two generations:

* ``locust_kv.claims``: key -> ``token`` (8 bytes, big-endian),
  ``expires_ms`` (8 bytes, signed) and the owner's bytes;
* ``locust_kv.claim_ends``: end + token (16 bytes) -> key, the same leases
  ordered by their end, so that the ended ones are found in O(log n + ended).

A lease record exists only for a key that exists: every path that removes a
key removes its record (and its end) in the same transaction, ``clear`` drops
both databases and a restore drops them in the transaction that flips the
generations. A record whose end has passed stays until its key is claimed
again or removed. The fencing counter is the record ``locust_kv.claim_token``
of the main database, raised in the claim's own transaction; it survives
clear and restore. The operations on leases are in :mod:`.claims`.
"""

from __future__ import annotations

from struct import Struct
from typing import TYPE_CHECKING, Final

from .layout import TOKEN_KEY

if TYPE_CHECKING:
    from .layout import Txn, View

__all__ = ["END", "LEASE", "OFFSET", "drop_lease", "end_key", "expired_keys", "expires", "has_leases", "next_token"]

LEASE: Final = Struct(">Qq")
"""A lease record's head: token, then the end in Unix milliseconds; the owner follows."""

END: Final = Struct(">QQ")
OFFSET: Final = 1 << 63
"""Added to an end in the ends' keys, so that their byte order is the order of the (signed) ends."""


def end_key(record: bytes) -> bytes:
    """The key of a lease's entry in the ends' database: its end (offset to unsigned), then its token."""
    token, ends = LEASE.unpack_from(record)
    return END.pack(ends + OFFSET, token)


def expires(record: bytes) -> int:
    """A lease record's end, in Unix milliseconds."""
    end: int = LEASE.unpack_from(record)[1]
    return end


def has_leases(txn: Txn, view: View) -> bool:
    return txn.stat(view.claims)["entries"] > 0


def expired_keys(txn: Txn, view: View, now: int, limit: int = -1) -> list[bytes]:
    """The keys whose lease ended (``expires_ms`` <= now), from the ends' database: O(log n + expired).

    At most ``limit`` when > 0.
    """
    cursor = txn.cursor(view.ends)
    if not cursor.first():
        return []
    bound = END.pack(now + 1 + OFFSET, 0)  # every entry below ended at or before now
    keys: list[bytes] = []
    for end, key in cursor.iternext():
        if end >= bound or len(keys) == limit:
            break
        keys.append(key)
    return keys


def drop_lease(txn: Txn, view: View, key: bytes, record: bytes) -> None:
    txn.delete(key, b"", view.claims)
    txn.delete(end_key(record), b"", view.ends)


def next_token(txn: Txn) -> int:
    """The fencing counter's current value (the last token granted)."""
    raw = txn.get(TOKEN_KEY)
    return int.from_bytes(raw, "big") if raw is not None else 0
