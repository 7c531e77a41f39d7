"""The claims (leases) operations: claim, release, complete, renew, and their counts.

Each function is one step ``op(txn, view, ...)`` that the engine runs in one
LMDB transaction (map growth, the state record, restore gating, error
mapping); none of them yields, so a step is atomic. The records are described
in :mod:`.leases`; the random claims draw as :mod:`.sampling` describes.

An expired key (:mod:`.expiry`) is absent here too: it cannot be claimed, its
lease is not live (release, complete and renew fail for it, ``read_lease``
answers None) and the counts leave it and its lease out.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

from ..base import ClaimRecord
from .expiry import dead_test, expired_entries, is_dead
from .layout import TOKEN_KEY
from .leases import END, LEASE, OFFSET, drop_lease, end_key, expired_keys, has_leases, next_token
from .leases import expires as lease_end
from .ranges import all_steps, count_range_steps
from .sampling import sample

if TYPE_CHECKING:
    from .layout import Txn, View

__all__ = ["allocation_stats", "claim_keys", "claim_random", "complete_claims", "read_lease", "renew_claims", "stats"]


def _grant(
    txn: Txn, view: View, keys: list[bytes], values: list[bytes], ttl_ms: int, owner: bytes, now: int
) -> list[ClaimRecord]:
    """Write a new lease on each of ``keys`` (existing, claimable, distinct) and raise the counter once."""
    token = next_token(txn)
    expires = now + ttl_ms
    claims = view.claims
    ends = view.ends
    pack = LEASE.pack
    end_of = END.pack
    granted = []
    put = txn.put
    replace = txn.replace
    delete = txn.delete
    for key, value in zip(keys, values):
        token += 1
        ended = replace(key, pack(token, expires) + owner, claims)
        if ended is not None:
            delete(end_key(ended), b"", ends)
        put(end_of(expires + OFFSET, token), key, True, True, False, ends)
        granted.append(ClaimRecord(key, value, token, expires))
    if granted:
        put(TOKEN_KEY, token.to_bytes(8, "big"))
    return granted


def claim_keys(
    txn: Txn, view: View, keys: list[bytes], ttl_ms: int, owner: bytes, clock: Callable[[], int]
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
        if value is None or (view.expiring and is_dead(txn, view, key, now)):
            continue
        record = get(key, None, claims)
        if record is not None and lease_end(record) > now:
            continue
        take.append(key)
        values.append(value)
        slots.append(i)
    results: list[ClaimRecord | None] = [None] * len(keys)
    for i, granted in zip(slots, _grant(txn, view, take, values, ttl_ms, owner, now)):
        results[i] = granted
    return results


def claim_random(
    txn: Txn, view: View, prefix: bytes, count: int, ttl_ms: int, owner: bytes,
    clock: Callable[[], int],
) -> list[ClaimRecord]:
    """Leases on up to ``count`` keys drawn uniformly among the claimable keys with ``prefix``."""
    now = clock()
    get = txn.get
    data = view.data
    dead = dead_test(txn, view, now) if view.expiring else None
    found = [(key, get(key, None, data)) for key in sample(txn, view, prefix, count, now, dead)]
    rows = [(key, value) for key, value in found if value is not None]  # always all of them
    return _grant(txn, view, [key for key, _ in rows], [value for _, value in rows], ttl_ms, owner, now)


def _live_lease(txn: Txn, view: View, key: bytes, token: int, now: int) -> bytes | None:
    """The record of the live lease ``(key, token)``, or None."""
    record = txn.get(key, None, view.claims)
    if record is None:
        return None
    held, expires = LEASE.unpack_from(record)
    if held != token or expires <= now or (view.expiring and is_dead(txn, view, key, now)):
        return None
    return record


def complete_claims(
    txn: Txn,
    view: View,
    refs: list[tuple[bytes, int]],
    delete: bool,
    clock: Callable[[], int],
    remove_key: Callable[[Txn, View, bytes, Callable[[], int]], bool],
) -> list[bool]:
    """End each live lease; with ``delete``, remove its key with ``remove_key`` (which drops the lease too)."""
    now = clock()
    results = []
    for key, token in refs:
        record = _live_lease(txn, view, key, token, now)
        if record is None:
            results.append(False)
            continue
        if not (delete and remove_key(txn, view, key, clock)):
            drop_lease(txn, view, key, record)
        results.append(True)
    return results


def renew_claims(
    txn: Txn, view: View, refs: list[tuple[bytes, int]], ttl_ms: int, clock: Callable[[], int]
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
        txn.put(key, LEASE.pack(token, expires) + record[LEASE.size :], True, True, False, view.claims)
        txn.put(END.pack(expires + OFFSET, token), key, True, True, False, view.ends)
        results.append(expires)
    return results


def read_lease(txn: Txn, view: View, key: bytes, clock: Callable[[], int]) -> tuple[int, int, bytes] | None:
    """``(token, expires_ms, owner)`` of the live lease on ``key``, or None: one lookup."""
    record = txn.get(key, None, view.claims)
    if record is None:
        return None
    token, expires = LEASE.unpack_from(record)
    now = clock()
    if expires <= now or (view.expiring and is_dead(txn, view, key, now)):
        return None
    return token, expires, record[LEASE.size :]


def _lease_counts(txn: Txn, view: View, prefix: bytes, now: int) -> Generator[None, None, tuple[int, int]]:
    """``(live, ended)`` leases on live keys with ``prefix``: O(ended) without a prefix, O(leases of the range) with one;
    plus O(expired keys not purged yet) while keys expire."""
    if not has_leases(txn, view):
        return 0, 0
    expired = expired_keys(txn, view, now)
    if not prefix:
        live, ended = txn.stat(view.claims)["entries"] - len(expired), len(expired)
    else:
        ended = sum(1 for key in expired if key.startswith(prefix))
        held = yield from count_range_steps(txn, view.claims, prefix)
        live = held - ended
    # The leases on expired keys went with them.
    get = txn.get
    claims = view.claims
    for key in expired_entries(txn, view, now):
        if key.startswith(prefix) and (record := get(key, None, claims)) is not None:
            if lease_end(record) <= now:
                ended -= 1
            else:
                live -= 1
    return live, ended


def allocation_stats(
    txn: Txn, view: View, prefix: bytes, clock: Callable[[], int]
) -> Generator[None, None, tuple[int, int, int, int]]:
    """``(total, claimable, claimed, expired)``: O(ended leases) without a prefix, O(k + leases of the range) with one.

    In steps (the engine pauses between them, in the same transaction).
    """
    now = clock()
    total = yield from count_range_steps(txn, view.data, prefix)
    if view.expiring:
        total -= sum(1 for key in expired_entries(txn, view, now) if key.startswith(prefix))
    claimed, expired = yield from _lease_counts(txn, view, prefix, now)
    return total, total - claimed, claimed, expired


def stats(
    txn: Txn, view: View, clock: Callable[[], int], used_pages: int, page_size: int
) -> dict[str, int]:
    """The store's counters: O(1), and O(ended leases) for the lease counts."""
    now = clock()
    claims, expired = all_steps(_lease_counts(txn, view, b"", now))
    keys = txn.stat(view.data)["entries"]
    if view.expiring:
        keys -= sum(1 for _ in expired_entries(txn, view, now))
    return {
        "keys": keys,
        "bytes": used_pages * page_size,
        "claims": claims,
        "expired_claims": expired,
    }
