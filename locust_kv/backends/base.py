"""The backend interface: what a store engine must do, in bytes.

A backend holds one store's data. Every method is one atomic operation with
respect to every other call on the same store, from any greenlet, thread or
process that shares it. Keys and values are ``bytes``; the front-end
(:class:`locust_kv.store.KV`) has already validated and serialized them.

A backend raises only :class:`locust_kv.errors.KVError` subclasses. The
engine's own exceptions are mapped in one table inside the backend module,
with the cause chained.

The contract suite in ``tests/test_contract.py`` runs unchanged against every
backend; a new backend is done when it passes.

This module is over 500 lines: it is the whole backend contract, one
abstract method per operation with the docstring that states its rule
(expiries and leases included), and the few helpers every backend shares;
a backend's author reads it in one place.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Any, ClassVar, Final, Literal, NamedTuple, Protocol

from ..errors import InvalidOptionsError, ValueParseError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_KEY_BYTES",
    "SCOPES",
    "Backend",
    "BackendSpec",
    "BackupReader",
    "ClaimRecord",
    "MAX_BATCH",
    "MAX_CLAIM_TTL_MS",
    "MAX_EXPIRY_TTL_MS",
    "PURGE_STEP",
    "Batch",
    "MAX_OWNER_BYTES",
    "Scope",
    "MAX_QUOTA",
    "apply_increment",
    "check_quota",
    "prefix_end",
    "quota_message",
    "reject_unknown",
]

Scope = Literal["process", "host", "network"]
"""Who shares a store: the processes that can reach the same data.

- ``"process"``: one process only (memory). A Locust run of several
  processes cannot use it.
- ``"host"``: every process on one host (disk). A run whose workers are on
  other hosts cannot use it; the plugin proves each worker sees it.
- ``"network"``: every process that reaches the server (redis).
"""

SCOPES: Final[tuple[Scope, ...]] = ("process", "host", "network")

MAX_KEY_BYTES = 511
"""The longest key, in bytes of UTF-8, on every backend (LMDB's limit), so
that any store's snapshot restores into any other."""

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

MAX_BATCH: Final = 100_000
"""The most keys, items or draws one batch call takes (``get_many``, ``claim_random`` with a count...)."""

MAX_CLAIM_TTL_MS: Final = 7 * 24 * 3600 * 1000
"""The longest lease, in milliseconds: a week. Longer is InvalidArgumentError at the front-end."""

MAX_EXPIRY_TTL_MS: Final = 10 * 365 * 24 * 3600 * 1000
"""The longest time to live of a key, in milliseconds: ten years. Longer is InvalidArgumentError at the front-end."""

PURGE_STEP: Final = 16
"""How many expired entries a write may remove on its way (its own atomic step), so that a
store whose keys expire sheds them without a purger; ``purge_expired`` takes larger steps."""

Batch = tuple[list[tuple[bytes, bytes]], list[int] | None]
"""A slice of a backup or a restore: the entries ``(key, value)`` ascending by key and, when
any of them expires, each one's expiry in Unix milliseconds (0: none), else None."""

MAX_OWNER_BYTES: Final = 256
"""The longest claim owner, in bytes of UTF-8."""


class ClaimRecord(NamedTuple):
    """A lease a backend granted: the entry at the moment of the claim, and the lease.

    ``token`` is the store's fencing counter after this claim: it grows with
    every claim of any key of the store (so with every claim of this key),
    never repeats, and survives restarts of the store's processes (not a
    ``clear`` or ``restore`` of a memory store, which has no other life).
    ``expires_ms`` is the lease's end in Unix milliseconds of the backend's
    clock.
    """

    key: bytes
    value: bytes
    token: int
    expires_ms: int


def wall_clock_ms() -> int:
    """Now, in Unix milliseconds: the clock every process of one host shares."""
    return int(time.time() * 1000)


def apply_increment(current: bytes | None, delta: int) -> tuple[int, bytes]:
    """The counter after adding ``delta`` to the stored ``current`` bytes.

    A missing value counts as 0. The stored value may be decimal text, a JSON
    integer (the same bytes) or a JSON string holding a decimal. Returns the
    new value and its decimal-text encoding. Raises ValueParseError, before
    anything is written, for any other stored value and for a result outside
    signed 64-bit.
    """
    if current is None:
        value = delta
    elif current.isdigit():  # the common case: ASCII digits only
        value = int(current) + delta
    else:
        value = _parse_counter(current) + delta
    if INT64_MIN <= value <= INT64_MAX:
        return value, b"%d" % value
    raise ValueParseError("increment result is outside signed 64-bit range; nothing was written")


def _parse_counter(stored: bytes) -> int:
    text = stored
    if len(text) >= 2 and text[0] == 0x22 and text[-1] == 0x22:  # a JSON string: "42"
        text = text[1:-1]
    digits = text[1:] if text[:1] == b"-" else text
    # bytes.isdigit() is ASCII-only; int() alone would also take "1_000", " 7 " and "+7".
    if not digits.isdigit():
        raise ValueParseError("stored value is not an integer counter")
    return int(text)


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key that starts with ``prefix``.

    None when there is no such key (an empty prefix, or one of only 0xff bytes).
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))


MAX_QUOTA: Final = 2**53
"""The largest ``max_keys`` or ``max_bytes``: the largest integer a Lua number (a redis script's) holds exactly."""


def check_quota(name: str, value: object) -> int | None:
    """A store's ``max_keys`` or ``max_bytes`` option: None (no limit) for None or 0, else an int in ``[1, MAX_QUOTA]``.

    Raises InvalidOptionsError for anything else (bools, floats, negatives included).
    """
    if value is None:
        return None
    if type(value) is not int:
        raise InvalidOptionsError(f"{name} must be an int (0 or None: no limit), not {type(value).__name__}")
    if not 0 <= value <= MAX_QUOTA:
        raise InvalidOptionsError(f"{name} must be between 1 and {MAX_QUOTA} (0 or None: no limit)")
    return value or None


def quota_message(what: str, limit: int) -> str:
    """QuotaExceededError's text: the limit, never the key (Locust groups failures by it)."""
    unit = "keys" if what == "max_keys" else "bytes"
    return f"the write would take the store past its quota of {what}={limit} {unit}; nothing was written"


def reject_unknown(kind: str, options: dict[str, Any]) -> None:
    """Raise InvalidOptionsError naming the options a backend does not know."""
    if options:
        names = ", ".join(sorted(options))
        raise InvalidOptionsError(f"unknown option(s) for the {kind} backend: {names}")


class BackendSpec(Protocol):
    """A backend's validated options: what its module's ``configure(**options)`` returns.

    Every backend module has ``configure(**options) -> BackendSpec``; it
    validates every option (``track_keys`` included), rejects unknown ones
    with :func:`reject_unknown`, and does no I/O that cannot survive a fork.
    """

    kind: str
    """The backend's name, as given to ``open_kv(backend=...)``."""

    scope: Scope
    """Who shares the store; see :data:`Scope`."""

    @property
    def identity(self) -> Hashable:
        """Equal for two specs that denote the same store (same kind and place)."""

    def describe(self) -> dict[str, Any]:
        """The options as plain values, for people and for the Locust UI; never a secret."""

    def create(self) -> Backend:
        """A backend on this store. Must be safe to call before a fork; may do I/O (connect)."""


class BackupReader(abc.ABC):
    """A read of the whole store for a backup, in key order, in batches.

    ``point_in_time`` says whether every batch comes from one moment. The
    reader holds whatever gate or snapshot it needs until ``close``.
    """

    point_in_time: bool = True

    @abc.abstractmethod
    def batches(self, batch_size: int) -> Iterator[Batch]:
        """Every live entry, ascending by key, ``batch_size`` at a time, with the expiries (see :data:`Batch`).

        An entry already expired when its batch is read is left out.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the reader; writers blocked by it may go on."""


class Backend(abc.ABC):
    """One store's data. See the module docstring for the contract."""

    kind: ClassVar[str]
    """The backend's name in options and errors: ``"memory"``, ``"disk"``, ``"redis"``."""

    scope: ClassVar[Scope]
    """Who shares the store; see :data:`Scope`."""

    location: str = ""
    """Where the data lives, for people: a path, or a description."""

    max_keys: int | None = None
    """This handle's quota of entries, None for none. Writes that would pass it
    raise QuotaExceededError, checked inside their own atomic step; removing
    keys and leases is never refused (docs/quotas.md)."""

    max_bytes: int | None = None
    """This handle's quota of data, measured as ``stats()["bytes"]``, None for none."""

    @abc.abstractmethod
    def get(self, key: bytes) -> bytes | None:
        """The value stored at ``key``, or None when absent."""

    @abc.abstractmethod
    def set(self, key: bytes, value: bytes, ttl_ms: int | None = None) -> None:
        """Store ``value`` at ``key``; it expires ``ttl_ms`` from now, or never when None (an earlier expiry is dropped)."""

    @abc.abstractmethod
    def delete(self, key: bytes) -> bool:
        """Remove ``key``; True if it existed."""

    @abc.abstractmethod
    def exists(self, key: bytes) -> bool:
        """Whether ``key`` is stored."""

    @abc.abstractmethod
    def increment_by(self, key: bytes, delta: int, ttl_ms: int | None = None) -> int:
        """Add ``delta`` to the counter at ``key`` with :func:`apply_increment`; the new value.

        ``ttl_ms`` applies only when the call creates the key (absent or
        expired): it then expires ``ttl_ms`` from now. A live counter keeps
        its expiry, or its lack of one (a fixed window, as INCR then EXPIRE NX).
        """

    @abc.abstractmethod
    def get_or_set(self, key: bytes, value: bytes, ttl_ms: int | None = None) -> tuple[bytes, bool]:
        """The stored value and True if ``key`` exists; else store ``value`` and return it and False.

        ``ttl_ms`` applies only when it stores; a hit changes nothing, expiry included.
        """

    @abc.abstractmethod
    def swap(self, key: bytes, value: bytes, ttl_ms: int | None = None) -> bytes | None:
        """Store ``value``, with ``ttl_ms`` as :meth:`set`; the previous value, or None when absent."""

    @abc.abstractmethod
    def compare_and_swap(self, key: bytes, old: bytes | None, new: bytes, ttl_ms: int | None = None) -> bool:
        """Store ``new`` if the stored value equals ``old`` (``old`` None: if absent).

        When it stores, the expiry is set as :meth:`set` sets it (None: none);
        when it does not, nothing changes.
        """

    @abc.abstractmethod
    def compare_and_delete(self, key: bytes, old: bytes) -> bool:
        """Delete ``key`` if its stored value equals ``old``."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Remove every key."""

    @abc.abstractmethod
    def size(self) -> int:
        """The number of keys."""

    @abc.abstractmethod
    def scan(self, low: bytes, high: bytes | None, offset: int, limit: int) -> tuple[list[tuple[bytes, bytes]], bool]:
        """Entries whose key is in the byte range ``[low, high)``, ascending, the first ``offset`` of them skipped.

        ``high`` None: no upper bound. An empty range (``high`` <= ``low``)
        holds nothing. ``offset`` >= 0. At most ``limit`` entries (all of them
        when ``limit`` <= 0). The flag says whether another key of the range
        follows the last one returned. The front-end turns a prefix, the
        ``start``/``end`` bounds and a cursor into the one range.
        """

    @abc.abstractmethod
    def random_key(self, prefix: bytes) -> bytes | None:
        """A key chosen uniformly among those starting with ``prefix``; None when none does."""

    # -- claims (leases) ------------------------------------------------------
    #
    # A claim is a lease on one existing key: while it lasts, no other claim
    # (and no pop) takes that key. Every other operation ignores claims: a
    # claimed key can be read, written, scanned and sampled by random_key as
    # before. Removing the key (delete, compare_and_delete, delete_many,
    # delete_prefix, pop, complete_claims with delete, clear, restore) ends
    # its lease at once; a later claim of a key of the same name is a new
    # lease with a new token. A lease whose end has passed (``expires_ms`` <=
    # now) is free: another claimer may take the key, and the old holder's
    # release, complete and renew fail for it. Claims are not data: never
    # counted by size/count, never backed up or restored.
    #
    # A reference to a lease is ``(key, token)``; the token decides, so a
    # holder whose lease was taken over can never act on the new holder's.

    clock: Callable[[], int] = staticmethod(wall_clock_ms)
    """Now in Unix milliseconds, for leases and expiring keys: the one clock
    of every process on the host. Tests replace it on an instance with a fake
    clock. A backend with a server uses the server's clock and ignores this
    (``server_clock`` True)."""

    server_clock: ClassVar[bool] = False
    """True when leases expire by a server's clock, not :attr:`clock`."""

    @abc.abstractmethod
    def claim_keys(self, keys: list[bytes], ttl_ms: int, owner: bytes) -> list[ClaimRecord | None]:
        """Claim each of ``keys`` that exists and has no live lease, in one atomic operation.

        One result per key, in order: the new lease, or None for a key that
        is absent or held. A key given twice is claimed once (None the
        second time). ``ttl_ms`` >= 1; ``owner`` is kept for people only.
        """

    @abc.abstractmethod
    def claim_random(self, prefix: bytes, count: int, ttl_ms: int, owner: bytes) -> list[ClaimRecord]:
        """Claim up to ``count`` distinct keys starting with ``prefix`` that have no live lease, in one atomic operation.

        The keys are drawn uniformly at random among the claimable ones
        (every subset of the claimable keys of that size is equally likely),
        in no particular order. Fewer when fewer are claimable; none when
        none is.
        """

    @abc.abstractmethod
    def release_claims(self, refs: list[tuple[bytes, int]]) -> list[bool]:
        """End each live lease ``(key, token)`` without touching its key, in one atomic operation.

        One flag per ref: False when that lease is not live any more
        (expired, released, completed, taken over, or its key removed).
        """

    @abc.abstractmethod
    def complete_claims(self, refs: list[tuple[bytes, int]], delete: bool) -> list[bool]:
        """End each live lease, and with ``delete`` remove its key, in one atomic operation; flags as in release_claims."""

    @abc.abstractmethod
    def renew_claims(self, refs: list[tuple[bytes, int]], ttl_ms: int) -> list[int | None]:
        """Move the end of each live lease to now + ``ttl_ms``, keeping its token, in one atomic operation.

        One result per ref: the new ``expires_ms``, or None when the lease is not live.
        """

    @abc.abstractmethod
    def read_lease(self, key: bytes) -> tuple[int, int, bytes] | None:
        """The live lease on ``key`` as ``(token, expires_ms, owner)``, or None when none is live, read atomically.

        A lease whose end has passed is not live (None), even before another
        claimer takes the key. Changes nothing.
        """

    @abc.abstractmethod
    def allocation_stats(self, prefix: bytes) -> tuple[int, int, int, int]:
        """``(total, claimable, claimed, expired)`` for the keys starting with ``prefix``, read atomically.

        ``total`` keys; ``claimed`` of them hold a live lease; ``claimable``
        = total - claimed; ``expired`` of the claimable ones still carry a
        lease whose end has passed (a holder that never came back).
        """

    # -- expiring keys ------------------------------------------------------------
    #
    # An entry may carry an expiry: a point in Unix milliseconds of the
    # backend's clock (:attr:`clock`; the server's on redis). From that point
    # on (expiry <= now) the entry is absent for every operation at once,
    # whether or not anything has removed it yet: get and get_many return
    # None, exists False; size, count, stats, scan, scan_keys, random_key(s),
    # claims, pops, allocation_stats and backups do not see it; writes treat
    # the key as absent (get_or_set stores, compare_and_swap with old None
    # stores, increment_by starts from 0 and applies its ttl, delete returns
    # False, a lease on it ends). Only the rules of each write say what
    # happens to an expiry (see each method); compare_and_delete, delete and
    # the claims never change one. A removed entry's expiry goes with it.
    #
    # Expired entries are removed in bounded steps: each write may remove up
    # to PURGE_STEP of them in its own atomic step, and purge_expired removes
    # more. Quotas (max_keys, max_bytes) may count an expired entry until it
    # is removed; a write refused by a quota first removes expired entries
    # (a bounded number) and checks again.

    @abc.abstractmethod
    def expire(self, key: bytes, ttl_ms: int) -> bool:
        """Make the live entry at ``key`` expire ``ttl_ms`` (>= 1) from now, replacing any expiry; False when absent."""

    @abc.abstractmethod
    def persist(self, key: bytes) -> bool:
        """Drop the expiry of the live entry at ``key``; True when it had one, False when it had none or is absent."""

    @abc.abstractmethod
    def expiry(self, key: bytes) -> tuple[bool, int | None]:
        """``(exists, remaining_ms)`` of ``key``, read atomically: remaining_ms >= 1, or None when the entry never expires (or is absent)."""

    @abc.abstractmethod
    def purge_expired(self, limit: int) -> int:
        """Remove up to ``limit`` (>= 1) entries whose expiry has passed, in one short atomic step; how many it removed.

        Never needed for correctness (expired entries are already absent);
        it frees their room. The front-end calls it in a loop with pauses.
        """

    # -- more single-call operations --------------------------------------------

    @abc.abstractmethod
    def compare_and_swap_detailed(
        self, key: bytes, old: bytes | None, new: bytes, ttl_ms: int | None = None
    ) -> tuple[bool, bytes | None]:
        """As :meth:`compare_and_swap`; also the value stored before the call (None when absent)."""

    @abc.abstractmethod
    def compare_and_delete_detailed(self, key: bytes, old: bytes) -> tuple[bool, bytes | None]:
        """As :meth:`compare_and_delete`; also the value stored before the call (None when absent)."""

    @abc.abstractmethod
    def count(self, low: bytes, high: bytes | None) -> int:
        """The number of keys in ``[low, high)`` (as :meth:`scan`): O(log n) or better where the engine keeps counts (the backend says its cost)."""

    @abc.abstractmethod
    def random_keys(self, prefix: bytes, count: int, unique: bool) -> list[bytes]:
        """``count`` keys starting with ``prefix``, each drawn uniformly, read atomically.

        ``unique``: distinct keys (a uniform subset), fewer when fewer match.
        Else ``count`` independent draws (repeats possible); empty when none matches.
        """

    @abc.abstractmethod
    def pop_random(self, prefix: bytes, count: int) -> list[tuple[bytes, bytes]]:
        """Remove up to ``count`` distinct keys starting with ``prefix`` that have no live lease, in one atomic operation.

        Chosen as ``claim_random`` chooses; returns each removed key with its value.
        """

    @abc.abstractmethod
    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        """The value of each key (None when absent), read at one moment."""

    @abc.abstractmethod
    def set_many(self, items: list[tuple[bytes, bytes]], ttl_ms: int | None = None) -> None:
        """Store every item, all or nothing, in one atomic operation (a key given twice: the last value).

        Every item gets the same expiry, as :meth:`set` gives it.
        """

    @abc.abstractmethod
    def delete_many(self, keys: list[bytes]) -> int:
        """Remove every key, in one atomic operation; how many existed (a key given twice counts once)."""

    @abc.abstractmethod
    def delete_prefix(self, prefix: bytes, limit: int) -> tuple[int, bool]:
        """Remove keys starting with ``prefix`` in ascending order: at most ``limit`` (all when <= 0).

        Runs as a sequence of short atomic steps, never one long one: other
        calls interleave between steps, so the whole is not atomic. Returns
        how many were removed and whether no key with the prefix remained
        after the last step.
        """

    def scan_keys(self, low: bytes, high: bytes | None, offset: int, limit: int) -> tuple[list[bytes], bool]:
        """As :meth:`scan`, keys only."""
        rows, more = self.scan(low, high, offset, limit)
        return [key for key, _ in rows], more

    @abc.abstractmethod
    def stats(self) -> dict[str, int]:
        """Counters of the whole store, read atomically where the backend can.

        ``keys``: the number of keys; ``bytes``: the data, as ``max_bytes``
        measures it (memory and redis: keys plus values; disk: the pages of
        the live entries' database times the page size); ``claims``: live
        leases; ``expired_claims``: leases past their end on keys that
        still exist.
        """

    def rebuild_key_list(self) -> None:  # noqa: B027 - a no-op unless the backend keeps a separate index
        """Rebuild the index ``random_key`` uses from the data.

        Only a backend whose index can fall behind its data needs this; the
        default does nothing.
        """

    @abc.abstractmethod
    def read_marker(self, name: bytes) -> bytes | None:
        """The marker ``name``, or None when it was never written.

        Markers are small records beside the data, outside the key space:
        never counted, listed, sampled, cleared, backed up or restored. The
        Locust plugin keeps its run token in one, so that each worker proves
        it sees the store the master prepared.
        """

    @abc.abstractmethod
    def write_marker(self, name: bytes, value: bytes) -> None:
        """Store ``value`` as the marker ``name``, visible at once to every process sharing the store."""

    @abc.abstractmethod
    def begin_backup(self, allow_concurrent_writes: bool) -> BackupReader:
        """Start reading the whole store for a backup.

        With ``allow_concurrent_writes`` False the reader is point in time;
        a backend that cannot give that without stopping writers makes them
        fail with BackupInProgressError until the reader closes. A second
        backup while one runs raises BackupInProgressError.
        """

    @abc.abstractmethod
    def replace_all(self, batches: Iterator[Batch]) -> int:
        """Replace the whole dataset with the entries of ``batches``, all or nothing.

        An entry whose expiry (Unix ms) is at or before the backend's clock
        when its batch arrives is skipped; the others keep their expiry.
        Writers fail with RestoreInProgressError meanwhile. If iterating
        ``batches`` raises, the live data is left exactly as it was and the
        exception propagates. Returns the number of entries stored.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the engine's resources; the backend is not used afterwards."""
