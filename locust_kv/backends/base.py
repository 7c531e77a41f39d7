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
"""

from __future__ import annotations

import abc
from collections.abc import Hashable, Iterator
from typing import Any, ClassVar, Final, Literal, Protocol

from ..errors import InvalidOptionsError, ValueParseError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_KEY_BYTES",
    "SCOPES",
    "Backend",
    "BackendSpec",
    "BackupReader",
    "Scope",
    "apply_increment",
    "prefix_end",
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
    def batches(self, batch_size: int) -> Iterator[list[tuple[bytes, bytes]]]:
        """Every entry, ascending by key, ``batch_size`` at a time."""

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

    @abc.abstractmethod
    def get(self, key: bytes) -> bytes | None:
        """The value stored at ``key``, or None when absent."""

    @abc.abstractmethod
    def set(self, key: bytes, value: bytes) -> None:
        """Store ``value`` at ``key``."""

    @abc.abstractmethod
    def delete(self, key: bytes) -> bool:
        """Remove ``key``; True if it existed."""

    @abc.abstractmethod
    def exists(self, key: bytes) -> bool:
        """Whether ``key`` is stored."""

    @abc.abstractmethod
    def increment_by(self, key: bytes, delta: int) -> int:
        """Add ``delta`` to the counter at ``key`` with :func:`apply_increment`; the new value."""

    @abc.abstractmethod
    def get_or_set(self, key: bytes, value: bytes) -> tuple[bytes, bool]:
        """The stored value and True if ``key`` exists; else store ``value`` and return it and False."""

    @abc.abstractmethod
    def swap(self, key: bytes, value: bytes) -> bytes | None:
        """Store ``value``; the previous value, or None when absent."""

    @abc.abstractmethod
    def compare_and_swap(self, key: bytes, old: bytes | None, new: bytes) -> bool:
        """Store ``new`` if the stored value equals ``old`` (``old`` None: if absent)."""

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
    def scan(self, prefix: bytes, start: bytes, limit: int) -> tuple[list[tuple[bytes, bytes]], bool]:
        """Entries whose key starts with ``prefix`` and is >= ``start``, ascending.

        At most ``limit`` entries (all of them when ``limit`` <= 0). The flag
        says whether another matching key follows the last one returned.
        """

    @abc.abstractmethod
    def random_key(self, prefix: bytes) -> bytes | None:
        """A key chosen uniformly among those starting with ``prefix``; None when none does."""

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
    def replace_all(self, batches: Iterator[list[tuple[bytes, bytes]]]) -> int:
        """Replace the whole dataset with the entries of ``batches``, all or nothing.

        Writers fail with RestoreInProgressError meanwhile. If iterating
        ``batches`` raises, the live data is left exactly as it was and the
        exception propagates. Returns the number of entries stored.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the engine's resources; the backend is not used afterwards."""
