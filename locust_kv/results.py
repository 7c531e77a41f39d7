"""Result types returned by the store. Each is a named tuple, so it unpacks."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = [
    "AllocationStats",
    "BackupSummary",
    "Claim",
    "ClaimBatch",
    "CompareAndDeleteResult",
    "CompareAndSwapResult",
    "DeletePrefixResult",
    "Entry",
    "GetOrSetResult",
    "KeyScanPage",
    "LockStatus",
    "Lookup",
    "RestoreSummary",
    "ScanPage",
    "StoreStats",
    "SwapResult",
]


class Entry(NamedTuple):
    """One key and its value, as returned by ``scan`` and ``list``."""

    key: str
    value: Any


class ScanPage(NamedTuple):
    """One page of a prefix scan.

    ``cursor`` resumes strictly after the page's last key; it is ``""`` and
    ``done`` is True when no matching key follows the page.
    """

    entries: list[Entry]
    cursor: str
    done: bool


class GetOrSetResult(NamedTuple):
    """Result of ``get_or_set``: ``loaded`` is True when the key existed and nothing was written."""

    value: Any
    loaded: bool


class SwapResult(NamedTuple):
    """Result of ``swap``: the previous value (None when absent) and whether there was one."""

    previous: Any
    loaded: bool


class BackupSummary(NamedTuple):
    """Result of ``backup``.

    ``best_effort`` is True when the snapshot may mix states from different
    moments (concurrent writes were allowed); ``warning`` then says why.
    """

    total_entries: int
    bytes_written: int
    best_effort: bool
    warning: str


class RestoreSummary(NamedTuple):
    """Result of ``restore``: how many entries the store holds afterwards, and how many of the snapshot's
    were left out because they had expired."""

    total_entries: int
    expired_skipped: int = 0


class KeyScanPage(NamedTuple):
    """One page of ``scan_keys``: keys only, with the same cursors as ``scan``."""

    keys: list[str]
    cursor: str
    done: bool


class CompareAndSwapResult(NamedTuple):
    """Result of ``compare_and_swap_detailed``.

    ``reason`` is ``"swapped"`` or ``"mismatch"``. ``existed`` says whether
    the key was stored before the call; ``current`` is the value it held
    when the swap did not happen (None when it was absent or swapped).
    """

    swapped: bool
    reason: str
    existed: bool
    current: Any


class CompareAndDeleteResult(NamedTuple):
    """Result of ``compare_and_delete_detailed``: ``reason`` is ``"deleted"`` or ``"mismatch"``; as CompareAndSwapResult."""

    deleted: bool
    reason: str
    existed: bool
    current: Any


class Lookup(NamedTuple):
    """One key of ``get_many``: its value (None when absent) and whether it was found."""

    key: str
    value: Any
    found: bool


class DeletePrefixResult(NamedTuple):
    """Result of ``delete_prefix``: keys removed, and whether none with the prefix was left."""

    deleted: int
    done: bool


class Claim(NamedTuple):
    """A lease on one entry, from ``claim_key``, ``claim_random`` and their batch forms.

    ``value`` is the entry's value when it was claimed. ``token`` is a
    fencing token: it grows with every claim of the store, so a newer lease
    on the same key always has a larger one; pass it to the system under
    test to refuse a stale holder. ``expires_at`` is the lease's end in Unix
    seconds (the server's clock on redis). Pass the Claim itself back to
    ``release_claim``, ``complete_claim`` and ``renew_claim``.
    """

    key: str
    value: Any
    token: int
    owner: str
    expires_at: float


class LockStatus(NamedTuple):
    """What ``lock_status`` read of a named lock, at one moment.

    ``held`` is True while a live lease holds the lock; then ``owner`` is
    the holder's label, ``token`` its fencing token and ``expires_at`` the
    lease's end in Unix seconds (the server's clock on redis). When the lock
    is free the three are None.
    """

    name: str
    held: bool
    owner: str | None
    token: int | None
    expires_at: float | None


class ClaimBatch(NamedTuple):
    """Result of the batch lease operations: the leases acted on, and those no longer held.

    ``done`` holds the claims released or completed, or, for
    ``renew_claims``, the renewed claims with their new ``expires_at``;
    ``lost`` those that were not live any more (see ClaimLostError).
    """

    done: list[Claim]
    lost: list[Claim]


class AllocationStats(NamedTuple):
    """Result of ``allocation_stats(prefix)``: pool health for leases.

    ``total`` keys start with the prefix; ``claimed`` of them hold a live
    lease; ``claimable`` = total - claimed; ``expired`` of the claimable
    ones carry a lease that ran out without being released (a holder that
    never came back).
    """

    total: int
    claimable: int
    claimed: int
    expired: int


class StoreStats(NamedTuple):
    """Result of ``stats()``.

    ``keys``, ``bytes`` (the data as the ``max_bytes`` quota measures it:
    key plus value bytes on memory and redis, the pages of the entries'
    database on disk; see docs/quotas.md), ``claims`` (live leases) and
    ``expired_claims`` describe the whole store; ``operations`` counts this
    process's calls per operation on the store, since it was opened, over
    every handle. ``max_keys`` and ``max_bytes`` are the quota this handle
    enforces, None when it has none: ``keys`` and ``bytes`` are the usage
    against them.
    """

    keys: int
    bytes: int
    claims: int
    expired_claims: int
    operations: dict[str, int]
    max_keys: int | None = None
    max_bytes: int | None = None
