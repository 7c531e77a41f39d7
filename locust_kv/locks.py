"""Named locks: a lease on a key of the store, with a fencing token.

A lock is built on the claims machinery and adds no state of its own to any
backend. The lock named ``name`` is the key ``LOCK_PREFIX + name`` of the
store; :meth:`~locust_kv.store.KV.lock` takes it by making sure the key
exists (``get_or_set``) and claiming it (``claim_keys``), two atomic steps
repeated until the claim is granted or the wait runs out. The claim is the
arbiter: however many greenlets, processes and hosts race, one lease on a
key is live at a time, so one holder at a time. A release ends the lease and
removes the key in one atomic step (``complete_claims`` with delete), and
only while the holder's lease is live (its token decides), so a holder whose
lease expired and was taken over can never end the new holder's.

This module holds what the front-end needs beside its methods: the key
naming, the argument checks, the waits between tries, the :class:`Lock`
handle and its optional background renewer. The operations themselves
(``lock``, ``release_lock``, ``renew_lock``, ``lock_status``) are methods of
:class:`~locust_kv.store.KV`, like every other operation, so that they are
checked, mapped to the catalogue and timed in one place. See docs/locks.md.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final

from .backends.base import MAX_KEY_BYTES
from .errors import InvalidArgumentError, InvalidKeyError, KeyTooLongError, KVError, LockLostError, StoreClosedError

if TYPE_CHECKING:
    from types import TracebackType

    from .results import Claim
    from .store import KV

__all__ = ["LOCK_PREFIX", "MAX_LOCK_NAME_BYTES", "Lock", "check_wait", "lock_key", "poll_delays"]

LOCK_PREFIX: Final = "locust_kv:lock:"
"""The prefix of every lock's key: the lock ``name`` is the key ``LOCK_PREFIX + name``.

Reserved: write no data of your own under it (a release deletes its key).
"""

MAX_LOCK_NAME_BYTES: Final = MAX_KEY_BYTES - len(LOCK_PREFIX.encode())
"""The longest lock name, in bytes of UTF-8: its key must fit a key's 511 bytes."""

LOCK_VALUE: Final = b'"lock"'
"""The value of a lock's key: the JSON string ``"lock"``, readable under either serialization."""

POLL_FIRST: Final = 0.002
"""Seconds of the first wait between two tries of a lock held by another."""

POLL_MAX: Final = 0.1
"""The longest wait between two tries: a waiter notices a release within about this."""

_RENEW_FLOOR: Final = 0.001
"""The shortest interval of the background renewer, in seconds."""


def lock_key(name: object) -> bytes:
    """The key of the lock ``name``, as the backends store it.

    Raises InvalidKeyError for a name that is not a non-empty str (or not
    encodable as UTF-8), KeyTooLongError past MAX_LOCK_NAME_BYTES.
    """
    if not isinstance(name, str):
        raise InvalidKeyError(f"lock names must be non-empty str, not {type(name).__name__}")
    if not name:
        raise InvalidKeyError("lock names must be non-empty str, not an empty string")
    try:
        data = str.encode(name)
    except UnicodeEncodeError:
        raise InvalidKeyError("lock name is not encodable as UTF-8") from None
    if len(data) > MAX_LOCK_NAME_BYTES:
        raise KeyTooLongError(f"lock name is longer than {MAX_LOCK_NAME_BYTES} bytes of UTF-8 (its key takes a prefix)")
    return LOCK_PREFIX.encode() + data


def check_wait(wait: object) -> float | None:
    """``lock``'s ``wait``: seconds (int or float, >= 0; 0 is one try), or None (or infinity) to wait for as long as it takes."""
    if wait is None:
        return None
    if isinstance(wait, bool) or not isinstance(wait, (int, float)):
        raise InvalidArgumentError(f"wait must be seconds as a float or int, or None, not {type(wait).__name__}")
    seconds = float(wait)
    if not seconds >= 0:  # NaN fails too
        raise InvalidArgumentError("wait must be 0 or more seconds, or None to wait for as long as it takes")
    return None if math.isinf(seconds) else seconds


def poll_delays() -> Iterator[float]:
    """The waits between tries: doubling from POLL_FIRST up to POLL_MAX, each with jitter (half to all of it).

    The jitter keeps waiters that started together from trying together.
    """
    delay = POLL_FIRST
    while True:
        yield delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret
        delay = min(delay * 2, POLL_MAX)


class Lock:
    """A held named lock, from :meth:`KV.lock <locust_kv.store.KV.lock>`; a context manager that releases it on exit.

    Attributes:
        name: the lock's name.
        key: its key in the store (``LOCK_PREFIX + name``).
        token: the fencing token of this holding: it grows with every
            claim of the store, so a later holder of the lock always has a
            larger one. Pass it to the system under test when it must refuse
            a stale holder's writes.
        owner: the holder's label (the Locust user by default with the plugin).
        ttl: the lease's duration in seconds, used by ``renew`` and the
            background renewer.
        expires_at: the lease's end in Unix seconds (the server's clock on
            redis), as of the last grant or renewal.
        auto_renew: whether a background renewer keeps the lease alive.
        released: True once ``release`` ran (whether or not the lease was still live).
        lost: True once this holder learnt that its lease had ended before
            it released it (a renewal or the release found it gone).

    ``with kv.lock(...) as lock:`` releases on exit. When the block completes
    and the lease was lost meanwhile, the exit raises LockLostError: the work
    done inside may have overlapped another holder's. When the block raises,
    its exception goes on unchanged and ``lost`` tells whether the lease had
    ended.
    """

    __slots__ = (
        "_claim", "_ending", "_kv", "_renewer", "auto_renew", "expires_at", "key", "lost", "name",
        "owner", "released", "token", "ttl",
    )  # fmt: skip

    def __init__(self, kv: KV, name: str, claim: Claim, ttl: float) -> None:
        self._kv = kv
        self._claim = claim
        self._ending = False
        self._renewer: _Renewer | None = None
        self.name = name
        self.key = claim.key
        self.token = claim.token
        self.owner = claim.owner
        self.ttl = ttl
        self.expires_at = claim.expires_at
        self.auto_renew = False
        self.released = False
        self.lost = False

    def release(self) -> None:
        """Release the lock (``kv.release_lock(lock)``); a second call does nothing. Raises LockLostError when the lease had ended."""
        self._kv.release_lock(self)

    def renew(self, ttl: float | None = None) -> Lock:
        """Extend the lease to now + ``ttl`` (default: the lock's ``ttl``); ``kv.renew_lock(lock, ttl)``."""
        return self._kv.renew_lock(self, ttl)

    def __enter__(self) -> Lock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc_type is None:
            self._kv.release_lock(self)
            return
        try:
            self._kv.release_lock(self)
        except KVError:
            pass  # the block's own exception goes on; ``lost`` says whether the lease had ended

    def __repr__(self) -> str:
        state = "lost" if self.lost else "released" if self.released else "held"
        return f"<Lock {self.name!r} token={self.token} owner={self.owner!r} {state}>"

    # -- used by the front-end ---------------------------------------------------------

    def _start_renewer(self, renew: Callable[[], object]) -> None:
        self.auto_renew = True
        self._renewer = _Renewer(self, renew)

    def _stop_renewer(self) -> None:
        renewer = self._renewer
        if renewer is not None:
            self._renewer = None
            renewer.stop()


class _Renewer:
    """Renews one lock every third of its ttl until stopped, or until the lease is lost or the store closed.

    A daemon thread: under Locust (which monkey-patches ``threading`` with
    gevent) that is a greenlet, which runs whenever the users wait; without
    patching it is an OS thread, which runs whatever the holder does (every
    backend is safe across threads). ``renew`` is the front-end's renewal
    without the reporting wrapper: background renewals are not a user's
    load, so ``--kv-report`` does not time them. A renewal that fails for
    another reason (a server unreachable for a moment) is tried again at the
    next tick; if the lease ends meanwhile, the holder learns it at release.
    """

    def __init__(self, lock: Lock, renew: Callable[[], object]) -> None:
        self._stopped = threading.Event()
        threading.Thread(target=self._run, args=(lock, renew), name="locust_kv lock renewer", daemon=True).start()

    def _run(self, lock: Lock, renew: Callable[[], object]) -> None:
        while not self._stopped.wait(max(lock.ttl / 3, _RENEW_FLOOR)):
            try:
                renew()
            except (LockLostError, StoreClosedError):
                return
            except KVError:
                continue

    def stop(self) -> None:
        self._stopped.set()
